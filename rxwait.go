//go:build linux && cgo

package memif

/*
#cgo noescape memifgo_copy_rx_wait
#include "cgo_helpers.h"
*/
import "C"

import (
	"time"
)

// Waiting receives (spin.h): the wait for the next burst happens inside C,
// watching the ring's producer index, so a receiver crosses cgo once per
// burst it gets instead of once per empty poll, and makes no syscall while
// it spins (memif_rx_burst reads the eventfd at every empty poll).

// MaxSpin is the longest one waiting receive spins: a disconnect waits for
// the queue, so a longer spin asked for is cut to this.
const MaxSpin = time.Millisecond

func boolArg(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// spinArg is spin as C's budget in ns, within 0..MaxSpin.
func spinArg(spin time.Duration) C.uint64_t { return C.uint64_t(min(max(spin, 0), MaxSpin)) }

// guardEventFDs gives guard g the rx queues' eventfds, which the waiting
// receives consume (in OnConnect, inside libmemif).
func (c *Conn) guardEventFDs(g C.uintptr_t) { C.memifgo_guard_efds(g, handleArg(c)) }

// RefillRxBurstWait is RefillRxBurst that, when the ring is empty, waits
// inside C up to spin (at most MaxSpin) for the next burst, in one cgo
// crossing. n is 0 only when spin passed with nothing received; then the
// queue's eventfd (QueueEventFD) was consumed before the ring was looked at
// a last time, so any packet published later signals it anew: a caller may
// park on it with no wake-up lost. (memif_rx_burst reads the eventfd after
// finding the ring empty, which can swallow the signal of a packet
// published in between.) That holds when the ring layout was verified at
// connect, as with libmemif, VPP and DPDK peers; otherwise it polls
// memif_rx_burst for spin and a parked caller needs a timeout. If the link
// goes down during the wait it returns ErrDisconnected at once.
func (c *Conn) RefillRxBurstWait(qid uint16, refill int, headroom uint16, bufs *Buffers, count int, spin time.Duration) (n int, more bool, err error) {
	return c.refillRxWait(qid, refill, headroom, bufs, count, spin, false)
}

// refillRxWait is RefillRxBurstWait; noarm leaves the eventfd alone when
// the spin ends empty (for a caller that spins on rather than parks).
func (c *Conn) refillRxWait(qid uint16, refill int, headroom uint16, bufs *Buffers, count int, spin time.Duration, noarm bool) (n int, more bool, err error) {
	return c.refillRx(qid, refill, headroom, bufs, count, spin, true, noarm)
}

// CopyRxWait is CopyRx that, when the ring is empty, waits inside C up to
// spin (at most MaxSpin) for packets, in one cgo crossing; n is 0 only when
// spin passed with nothing received, and then a caller may park on the
// queue's eventfd with no wake-up lost (see RefillRxBurstWait).
func (c *Conn) CopyRxWait(qid uint16, bufs *Buffers, dst []byte, offs []int32, spin time.Duration) (n int, more bool, err error) {
	return c.copyRx(qid, bufs, dst, offs, spin, true)
}

// guardKick signals every rx eventfd of guard g's link, which went down
// (OnDisconnect, while libmemif still holds them open): a reader parked on
// one wakes and its next burst fails.
func guardKick(g C.uintptr_t) { C.memifgo_guard_kick(g) }

// rearmRx runs after OnInterrupt returned for rx queue qid, on the
// callback's thread: a signal libmemif's read swallowed while the callback
// received is given back (memifgo_rx_rearm), so no packet waits in the ring
// for the next one. In polling mode no signal is expected and none is
// given back.
func (c *Conn) rearmRx(qid uint16) {
	l := c.link.Load()
	if l == nil || int(qid) >= len(l.rx) {
		return
	}
	q := &l.rx[qid]
	q.mu.Lock() // keeps the ring mapped (a disconnect takes it)
	defer q.mu.Unlock()
	if !l.down.Load() && !q.polling.Load() {
		C.memifgo_rx_rearm(l.guard, C.uint16_t(qid))
	}
}
