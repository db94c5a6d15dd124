package memif

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestPace: a queue yields on every paceCheck-th burst once paceEvery has
// passed since its last yield, and never in between. The clock is set, not
// waited for: "long ago" and "in the future" hold on any machine.
func TestPace(t *testing.T) {
	yields := 0
	paceYield = func() { yields++ }
	defer func() { paceYield = runtime.Gosched }()

	var q queue
	q.yielded.Store(-int64(time.Hour)) // last yield long ago
	for i := 1; i < paceCheck; i++ {
		q.pace()
	}
	assert.Zero(t, yields, "no look at the clock before the %dth burst", paceCheck)
	q.pace()
	assert.Equal(t, 1, yields, "the %dth burst yields: the last yield was an hour ago", paceCheck)

	q.yielded.Store(int64(time.Since(paceEpoch) + time.Hour)) // last yield "now", as far as pace can tell
	for i := 0; i < 10*paceCheck; i++ {
		q.pace()
	}
	assert.Equal(t, 1, yields, "no yield within paceEvery of the last")

	q.yielded.Store(-int64(time.Hour))
	for i := 0; i < paceCheck; i++ {
		q.pace()
	}
	assert.Equal(t, 2, yields, "a yield again once paceEvery has passed")
}

// TestPaceWeighsWaits: a burst that may wait MaxSpin inside C weighs as
// many bursts as fill paceWait's share of it, so a queue that spins in C
// still looks at the clock every paceWait (sysmon's limit is 10 ms;
// paceCheck waits of 1 ms would be 32 ms).
func TestPaceWeighsWaits(t *testing.T) {
	yields := 0
	paceYield = func() { yields++ }
	defer func() { paceYield = runtime.Gosched }()

	var q queue
	q.yielded.Store(-int64(time.Hour))
	calls := 0
	for yields == 0 {
		q.weigh(MaxSpin)
		q.pace()
		calls++
	}
	assert.LessOrEqual(t, time.Duration(calls)*MaxSpin, paceWait+MaxSpin,
		"waits of %v reach the clock within paceWait", MaxSpin)
	q.weigh(-time.Second) // nothing: a negative or zero wait weighs nothing extra
	q.weigh(0)
	assert.Equal(t, q.checked.Load(), q.bursts.Load())
}
