//go:build linux && cgo

package memif

/*
#include "cgo_helpers.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// Queue ownership (own.h): a burst takes no lock. Each queue is owned by
// one OS thread; the owner's bursts enter C directly and C checks, with no
// atomic read-modify-write, that the thread still owns the queue and the
// link is up. Another thread's burst (another goroutine, or the same one
// moved to another thread) is turned back at once and claims the queue
// under the queue's mutex, which waits for the owner's burst in flight. A
// disconnect takes every mutex, bars the guard and waits for the bursts
// inside (downLink); a control call that changes queue state revokes
// ownership under the mutexes (revokeAll).
//
// The pattern for a hot method (and any new one):
//
//	l, q, err := c.hotRx(op, qid) // or hotTx: the live link, no lock
//	... argument checks, no unlock to remember ...
//	r, err := c.burst(op, l, q, func(claim C.int) C.uint64_t {
//		return C.memifgo_xxx(l.h, l.guard, C.uint16_t(qid), ..., claim)
//	})
//
// and in C the entry point wraps its body in MEMIFGO_OWNED (cgo_helpers.h)
// and returns a MEMIFGO_FP result. A call on two queues at once (a fused
// forward) uses burst2 and MEMIFGO_OWNED2: the thread owns both.

// Codes a hot C entry point returns instead of running.
const (
	ownSlow   = C.MEMIFGO_OWN_SLOW
	ownDown   = C.MEMIFGO_OWN_DOWN
	ownNested = C.MEMIFGO_OWN_NESTED
	ownNoMem  = C.MEMIFGO_OWN_NOMEM
)

// errNestedBurst matches ErrInvalArg: a burst (or BufferRequeue) called from
// inside a burst's callback (an ExternalBufferOffsetter), which libmemif
// cannot take on the thread already in the middle of one.
var errNestedBurst = fmt.Errorf("burst from inside a burst's callback: %w", ErrInvalArg)

var nestedErrs = func() (t [opCount]*Error) {
	for op := range t {
		t[op] = &Error{Op: hotOps[op], Err: errNestedBurst}
	}
	return t
}()

func ownCode(r C.uint64_t) uint16 { return uint16(r >> 32) }

// burst runs call, a hot C entry point on queue q of link l: as the queue's
// owner first (claim 0: no lock); when this thread is not the owner, again
// under the queue's mutex with claim 1, which makes it the owner. It returns
// the call's result, or the error that kept the call out of C.
func (c *Conn) burst(op int, l *link, q *queue, call func(claim C.int) C.uint64_t) (C.uint64_t, error) {
	r := call(0)
	runtime.KeepAlive(l) // its guard is freed with it (AddCleanup)
	q.pace()
	if ownCode(r)&^3 != ownSlow {
		return r, nil
	}
	return c.burstSlow(op, l, q, r, call)
}

func (c *Conn) burstSlow(op int, l *link, q *queue, r C.uint64_t, call func(claim C.int) C.uint64_t) (C.uint64_t, error) {
	if ownCode(r) == ownSlow {
		q.mu.Lock()
		if l.down.Load() {
			q.mu.Unlock()
			return 0, c.downErr(op)
		}
		r = call(1)
		q.mu.Unlock()
		runtime.KeepAlive(l)
	}
	return c.ownErr(op, r)
}

// burst2 is burst for a call on two different queues at once (a fused
// forward; in C, MEMIFGO_OWNED2): q of link l and q2 of link l2, which may
// be the same link.
func (c *Conn) burst2(op int, l *link, q *queue, l2 *link, q2 *queue, call func(claim C.int) C.uint64_t) (C.uint64_t, error) {
	r := call(0)
	runtime.KeepAlive(l)
	runtime.KeepAlive(l2)
	q.pace()
	if ownCode(r)&^3 != ownSlow {
		return r, nil
	}
	if ownCode(r) == ownSlow {
		a, b := q, q2
		if lockAfter(l, q, l2, q2) {
			a, b = b, a
		}
		a.mu.Lock()
		b.mu.Lock()
		if !l.down.Load() && !l2.down.Load() {
			r = call(1)
		} else {
			r = C.uint64_t(ownDown) << 32
		}
		b.mu.Unlock()
		a.mu.Unlock()
		runtime.KeepAlive(l)
		runtime.KeepAlive(l2)
	}
	return c.ownErr(op, r)
}

// lockAfter reports whether q of l locks after q2 of l2 in the one order
// every path takes queue mutexes in: by link, then rx before tx by index
// (lockAll's order), so burst2 and disconnects never wait in a cycle.
func lockAfter(l *link, q *queue, l2 *link, q2 *queue) bool {
	if l != l2 {
		return uintptr(unsafe.Pointer(l)) > uintptr(unsafe.Pointer(l2))
	}
	return l.lockRank(q) > l.lockRank(q2)
}

// lockRank is q's place in lockAll's order.
func (l *link) lockRank(q *queue) int {
	size := unsafe.Sizeof(queue{})
	if len(l.rx) > 0 {
		if d := uintptr(unsafe.Pointer(q)) - uintptr(unsafe.Pointer(&l.rx[0])); d < uintptr(len(l.rx))*size {
			return int(d / size)
		}
	}
	return len(l.rx) + int((uintptr(unsafe.Pointer(q))-uintptr(unsafe.Pointer(&l.tx[0])))/size)
}

// ownErr is the error of an own code in r (own.h), nil for a call that ran.
func (c *Conn) ownErr(op int, r C.uint64_t) (C.uint64_t, error) {
	switch ownCode(r) {
	case ownDown:
		return 0, c.downErr(op)
	case ownNested:
		return 0, nestedErrs[op]
	case ownNoMem:
		return 0, hotErrs[op][ErrNoMem]
	}
	return r, nil
}

// hotRx returns the live link and its rx queue qid, or why there is none.
// Nothing is locked: c.burst decides.
func (c *Conn) hotRx(op int, qid uint16) (*link, *queue, error) {
	if c == nil {
		return nil, nil, nilConnErr(hotOps[op])
	}
	l := c.link.Load()
	if l == nil {
		return nil, nil, c.downErr(op)
	}
	if int(qid) >= len(l.rx) {
		return nil, nil, qidErr(hotOps[op], qid, len(l.rx))
	}
	return l, &l.rx[qid], nil
}

// hotTx is hotRx for tx queue qid.
func (c *Conn) hotTx(op int, qid uint16) (*link, *queue, error) {
	if c == nil {
		return nil, nil, nilConnErr(hotOps[op])
	}
	l := c.link.Load()
	if l == nil {
		return nil, nil, c.downErr(op)
	}
	if int(qid) >= len(l.tx) {
		return nil, nil, qidErr(hotOps[op], qid, len(l.tx))
	}
	return l, &l.tx[qid], nil
}

// downErr is the error of a burst on a link that is down.
func (c *Conn) downErr(op int) error {
	if c.deleted.Load() {
		return &Error{Op: hotOps[op], Err: ErrDeleted}
	}
	return hotErrs[op][ErrDisconnected]
}

// quiesce bars every burst from the link's queues (down) or takes their
// ownership away, and waits for the bursts in C. The caller holds every
// queue mutex (lockAll). false: the caller is itself inside a burst.
func (l *link) quiesce(down bool) bool {
	d := C.int(0)
	if down {
		d = 1
	}
	return C.memifgo_guard_quiesce(l.guard, d) == 0
}

// ownProbe runs the test probe (cgo_helpers.h) on rx queue qid, and tx
// queue qid too when both, through burst or burst2.
func (c *Conn) ownProbe(qid uint16, both bool) error {
	l, q, err := c.hotRx(opRx, qid)
	if err != nil {
		return err
	}
	call := func(claim C.int) C.uint64_t {
		b := C.int(0)
		if both {
			b = 1
		}
		return C.memifgo_own_probe(l.guard, C.uint16_t(qid), b, claim)
	}
	if both {
		_, q2, err := c.hotTx(opRx, qid)
		if err != nil {
			return err
		}
		_, err = c.burst2(opRx, l, q, l, q2, call)
		return err
	}
	_, err = c.burst(opRx, l, q, call)
	return err
}

// ownProbeCount reads a probe counter of the live link (tests).
func (c *Conn) ownProbeCount(tx bool, qid uint16) uint64 {
	l := c.link.Load()
	if l == nil {
		return 0
	}
	t := C.int(0)
	if tx {
		t = 1
	}
	defer runtime.KeepAlive(l)
	return uint64(C.memifgo_own_probe_count(l.guard, t, C.uint16_t(qid)))
}

// ownClaims counts ownership changes so far (tests: the steady state
// claims nothing).
func ownClaims() uint64 { return uint64(C.memifgo_own_claims()) }

// ownForceFence makes the fast side fence instead of relying on membarrier,
// if no burst ran yet (tests run the fallback in a child process).
func ownForceFence() bool { return C.memifgo_own_force_fence() != 0 }
