//go:build linux && cgo

package memif

/*
#include "cgo_helpers.h"
*/
import "C"

import (
	"fmt"
	"runtime"
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
// and returns a MEMIFGO_FP result.

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

// ownClaims counts ownership changes so far (tests: the steady state
// claims nothing).
func ownClaims() uint64 { return uint64(C.memifgo_own_claims()) }

// ownForceFence makes the fast side fence instead of relying on membarrier,
// if no burst ran yet (tests run the fallback in a child process).
func ownForceFence() bool { return C.memifgo_own_force_fence() != 0 }
