package memif

import (
	"runtime"
	"sync/atomic"
	"time"
)

// A goroutine that polls a queue never blocks, so Go's sysmon sees it run
// on one scheduling tick for 10 ms and preempts it: a signal, or, when the
// goroutine is inside a burst's cgo call, its P taken away and handed back
// on return. Each such event also drops sysmon back to waking every 20 us
// for a millisecond or more. With every CPU polling (2 workers on 2 vCPUs)
// those wake-ups run on the workers' CPUs: about 4 000 context switches a
// second and 6 % of a CPU in sysmon alone (BENCHMARKS.md, "Session 5").
// Yielding a little more often than sysmon's limit keeps it asleep.
//
// Each yield costs a locked thread (LockOSThread) a hand-off of its P and
// back, two thread wake-ups: on this VM a 1-thread loop ran 4-5 % slower
// yielding every 7-8 ms and 6 % every 4 ms, so the period sits just under
// sysmon's 10 ms. Between two looks at the clock go paceCheck bursts or
// paceWait of waits inside C, whichever first: a yield comes at most
// paceEvery plus paceWait (or paceCheck slow bursts) after the last one.
const (
	paceCheck = 32                   // burst weights between two looks at the clock
	paceEvery = 7 * time.Millisecond // yield at least this often, under sysmon's 10 ms
	paceWait  = 2 * time.Millisecond // waiting in C this long is paceCheck weights
	paceSlice = paceWait / paceCheck // one weight of a wait inside C
)

// pacer counts a queue's bursts with plain loads and stores, not an atomic
// add: the owner thread is the only writer on the hot path (own.h), and a
// lost count only delays a yield by one check.
type pacer struct {
	bursts  atomic.Uint32 // weighted: 1 per burst, 1 more per paceSlice of wait
	checked atomic.Uint32 // bursts at the last look at the clock
	yielded atomic.Int64  // monotonic ns of the last yield
}

// pace runs after every hot burst: one increment, and every paceCheck
// weights a clock read; runtime.Gosched when paceEvery has passed.
func (p *pacer) pace() {
	n := p.bursts.Load() + 1
	p.bursts.Store(n)
	if n-p.checked.Load() < paceCheck {
		return
	}
	p.checked.Store(n)
	now := int64(time.Since(paceEpoch))
	if now-p.yielded.Load() < int64(paceEvery) {
		return
	}
	p.yielded.Store(now)
	paceYield()
}

// weigh adds a wait of up to spin inside C to the count (after a burst
// that came back empty, so waited): a wait of MaxSpin weighs half a look
// at the clock.
func (p *pacer) weigh(spin time.Duration) {
	if w := min(max(spin, 0), MaxSpin) / paceSlice; w > 0 {
		p.bursts.Store(p.bursts.Load() + uint32(w))
	}
}

// paceYield is runtime.Gosched; tests count the calls.
var paceYield = runtime.Gosched

// paceEpoch makes time.Since a monotonic reading (no wall clock).
var paceEpoch = time.Now()
