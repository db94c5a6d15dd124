//go:build linux && cgo

package memif

/*
#cgo noescape memifgo_copy_rx_wait
#include "cgo_helpers.h"
*/
import "C"

import (
	"math"
	"time"
	"unsafe"
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
	if err := bufs.checkCount(hotOps[opRefillRx], count); err != nil {
		return 0, false, err
	}
	if refill < 0 || refill > 0xffff {
		return 0, false, argErr(hotOps[opRefillRx], "refill", "%d is outside 0..65535", refill)
	}
	l, q, err := c.hotRx(opRefillRx, qid)
	if err != nil {
		return 0, false, err
	}
	if bufs.meta.session != l {
		refill = 0 // those buffers belonged to a session that ended; the new one starts full
	}
	r, err := c.burst(opRefillRx, l, q, func(claim C.int) C.uint64_t {
		return C.memifgo_refill_rx_wait(l.h, l.guard, C.uint16_t(qid), C.uint16_t(refill), C.uint16_t(headroom),
			batchArg(bufs), C.uint16_t(count), spinArg(spin), boolArg(noarm), claim)
	})
	if err != nil {
		return 0, false, err
	}
	bufs.meta.session = l
	n, code := unpack(r)
	if code == int64(ErrNoBuf) {
		return n, true, nil
	}
	return n, false, hotErr(opRefillRx, code)
}

// CopyRxWait is CopyRx that, when the ring is empty, waits inside C up to
// spin (at most MaxSpin) for packets, in one cgo crossing; n is 0 only when
// spin passed with nothing received, and then a caller may park on the
// queue's eventfd with no wake-up lost (see RefillRxBurstWait).
func (c *Conn) CopyRxWait(qid uint16, bufs *Buffers, dst []byte, offs []int32, spin time.Duration) (n int, more bool, err error) {
	if err := bufs.checkCount(opNameCopyRx, 0); err != nil {
		return 0, false, err
	}
	if len(offs) < 2 {
		return 0, false, argErr(opNameCopyRx, "offs", "%d entries cannot describe a packet (need 2 or more)", len(offs))
	}
	l, q, err := c.hotRx(opRefillRx, qid)
	if err != nil {
		return 0, false, err
	}
	seg := l.bufferSize // as CopyRx
	if seg == 0 {
		seg = 0xffff
	}
	if uint64(len(dst)) < uint64(seg) {
		return 0, false, argErr(opNameCopyRx, "dst", "%d bytes cannot hold one %d-byte buffer", len(dst), seg)
	}
	r, err := c.burst(opRefillRx, l, q, func(claim C.int) C.uint64_t {
		return C.memifgo_copy_rx_wait(l.h, l.guard, C.uint16_t(qid), batchArg(bufs), C.uint32_t(len(bufs.b)),
			C.uint16_t(c.args.RxHeadroom), (*C.uint8_t)(unsafe.Pointer(&dst[0])), C.uint32_t(min(len(dst), math.MaxInt32)),
			(*C.int32_t)(unsafe.Pointer(&offs[0])), C.uint32_t(min(len(offs)-1, MaxBurst)), C.uint32_t(seg), spinArg(spin), claim)
	})
	if err != nil {
		return 0, false, err
	}
	n, _, code, flags := unpackFP(r)
	more = flags&(fpMore|fpPartial) != 0
	switch {
	case code != 0:
		return n, more, hotErr(opRefillRx, code)
	case flags&fpBig != 0:
		return n, more, errOversized
	case flags&fpPartial != 0:
		return n, more, errPartialChain
	}
	return n, more, nil
}
