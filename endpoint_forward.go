//go:build linux && cgo

package memif

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"time"
)

// Forward moves what arrives on this queue to tx queue txq of to's link
// (another Endpoint, or this one for a hairpin) with Conn.Forward: one cgo
// crossing per burst, each packet copied once, no allocation. It waits for
// packets as Receive does and returns once some were sent or dropped (or
// ctx or the link ends, as Receive).
//
// While to's tx ring is full the packets wait in this queue (and, once
// its batch is full, in the ring: the peer is held back) for up to wait
// (negative: no limit), then they are dropped (drops.RingFull); packets
// arriving while to's link is down are dropped at once (drops.LinkDown).
// drops.Oversize counts this queue's buffers Forward dropped: descriptors
// the guard refused, packets beyond 65535 bytes or to's whole ring, chains longer than the
// batch. Counters: this queue's RxPackets, RxBytes and Drops.Oversize, and
// to's queue txq's TxPackets, TxBytes, Drops.RingFull and Drops.LinkDown
// (a packet dropped is in Drops only, once: the rest of a chain whose start
// was dropped as RingFull or LinkDown goes uncounted). Do not mix Forward and
// Receive on one queue within a burst: each gives the other's buffers
// back first.
func (q *Queue) Forward(ctx context.Context, to *Endpoint, txq int, wait time.Duration) (sent int, drops Drops, err error) {
	if to == nil || txq < 0 || txq > 0xffff {
		return 0, drops, argErr("Queue.Forward", "target", "nil Endpoint or tx queue %d outside 0..65535", txq)
	}
	if q.rx == nil {
		_, err = q.Receive(ctx) // nothing arrives here: wait for the end
		return 0, drops, err
	}
	if err := q.Release(); err != nil {
		return 0, drops, err
	}
	if q.fwd == nil {
		if q.fwd, err = NewBuffers(q.rx.Cap()); err != nil {
			return 0, drops, err
		}
	}
	foreign := ctx.Done() != q.sess.ctx.Done()
	full, slices := false, 0
	var deadline time.Time
	for {
		t, fresh := q.target(to, txq) // once per pass: fresh says a Tx error is no stale read
		tst, l := t.st, t.link
		if l == nil || txq >= l.TxQueues {
			if k := q.fwdDrop(&tst.dropLinkDown); k > 0 || sent > 0 {
				drops.LinkDown += k
				return sent, drops, nil
			}
			if err := q.receiveDown(ctx); err != nil {
				return sent, drops, err
			}
			continue // forwarded if to came up meanwhile, else dropped
		}
		s := t.s
		s.mu.Lock()
		if s.bufs == nil || s.bufs.Cap() < l.TxRingSize {
			if s.bufs != nil {
				s.bufs.Free()
			}
			if s.bufs, err = NewBuffers(max(l.TxRingSize, 1)); err != nil {
				s.mu.Unlock()
				return 0, drops, err
			}
		}
		// The wait for A's next burst happens in C, as Receive's, holding
		// to's tx queue: never longer than a slice (other forwarders and
		// Flush may share that queue). Only the last slice of WaitAdaptive
		// consumes the eventfd before its last look, so the park after it
		// loses no wake-up; WaitPoll never parks.
		spin, noarm := time.Duration(0), false
		switch q.mode {
		case WaitAdaptive:
			spin, noarm = waitSlice(q.spin, slices)
		case WaitPoll:
			spin, noarm = min(q.spin, spinSlice), true
		}
		n, d, more, ferr := q.c.forwardWait(uint16(q.id), to.conn, uint16(txq), q.fwd, s.bufs, spin, noarm)
		var bytes uint64
		if n > 0 {
			bytes = sentBytes(s.bufs, n)
		}
		s.mu.Unlock()
		if n+d > 0 {
			q.st.rxPackets.Add(uint64(n))
			q.st.rxBytes.Add(bytes)
			tst.txPackets.Add(uint64(n))
			tst.txBytes.Add(bytes)
			drops.Oversize += uint64(d)
			q.st.dropOversize.Add(uint64(d))
		}
		sent += n
		if errors.Is(ferr, ErrIntWrite) {
			ferr = nil // sent; only the peer's wake-up failed (it polls again)
		}
		if ferr != nil {
			var fe *ForwardError
			if errors.As(ferr, &fe) && fe.Tx && errors.Is(ferr, ErrDisconnected) {
				drops.LinkDown += q.fwdDrop(&tst.dropLinkDown) // to went down
				t.link = nil                                   // read it again
				continue
			}
			if fe != nil && fe.Tx && !fresh { // to's link as kept: read it again first (to closed?)
				t.link = nil
				continue
			}
			if e := q.sess.ctx.Err(); e != nil {
				return sent, drops, e
			}
			return sent, drops, ferr
		}
		if n > 0 || d > 0 {
			return sent, drops, nil
		}
		if waitsForB(q.fwd) { // to's ring is full
			if !full {
				full = true
				tst.ringFull.Add(1)
				deadline = time.Now().Add(wait)
			} else if wait >= 0 && !time.Now().Before(deadline) {
				drops.RingFull += q.fwdDrop(&tst.dropRingFull)
				return sent, drops, nil
			}
		}
		if err := ctx.Err(); err != nil {
			return sent, drops, err
		}
		if err := q.sess.ctx.Err(); err != nil {
			return sent, drops, err
		}
		if more || full { // no wait happened: packets wait in A or for to
			slices = 0
			runtime.Gosched()
			continue
		}
		if noarm {
			slices++
			runtime.Gosched()
			continue
		}
		slices = 0
		q.park(ctx, foreign) // as Receive: A's interrupt wakes it
	}
}

// waitsForB reports whether packets Forward left pending in rx wait for
// the target (its ring is full), not only an open chain for its rest from
// A, which Forward waits for on A.
func waitsForB(rx *Buffers) bool {
	for i := range rx.Pending() {
		if !rx.HasNext(i) {
			return true
		}
	}
	return false
}

// sentBytes is the bytes of the first pkts packets of tx (what Forward
// sent, from B's descriptors: plain loads, no shared memory).
func sentBytes(tx *Buffers, pkts int) (bytes uint64) {
	for i := range tx.b {
		bytes += uint64(tx.b[i].len)
		if !tx.HasNext(i) {
			if pkts--; pkts == 0 {
				break
			}
		}
	}
	return bytes
}

// fwdDrop gives up the packets Forward left pending, counted in ctr (if
// not nil), and returns how many.
func (q *Queue) fwdDrop(ctr *atomic.Uint64) uint64 {
	if q.fwd == nil || q.fwd.Pending() == 0 {
		return 0
	}
	k, _ := q.c.ForwardDrop(uint16(q.id), q.fwd) // fails only with this link down: then they are gone anyway
	if ctr != nil {
		ctr.Add(uint64(k))
	}
	return uint64(k)
}

// fwdTarget is what Queue.Forward needs of its target's tx queue, kept
// from burst to burst so that a burst takes no lock of the target's: the
// counters and the Send scratch live as long as the Endpoint; the link is
// the one of session sess, checked per burst with one atomic load.
type fwdTarget struct {
	ep   *Endpoint
	txq  int
	sess uint64         // ep.sessions when link was read
	link *Link          // nil: the target was down (read again each burst)
	st   *queueCounters // the queue's counters
	s    *sender        // its Send scratch, which Forward shares
}

// target returns Forward's target, read again (under the target's lock,
// once; fresh) when it is another queue, was down, or has had a new
// session since. A link that went down without a new session is seen by
// the burst (an error on B's side), which clears link.
func (q *Queue) target(to *Endpoint, txq int) (t *fwdTarget, fresh bool) {
	t = &q.fwdTo
	if t.ep != to || t.txq != txq || t.link == nil || t.sess != to.sessions.Load() {
		*t = to.txTarget(txq)
		fresh = true
	}
	return t, fresh
}

// txTarget reads Forward's target tx queue qid under one lock. The link and
// the session count are read together: a connect counts its session
// before it publishes its link, and the link before it was cleared by then,
// so a link is never paired with a later session's count.
func (e *Endpoint) txTarget(qid int) fwdTarget {
	e.mu.Lock()
	defer e.mu.Unlock()
	return fwdTarget{ep: e, txq: qid, sess: e.sessions.Load(), link: e.link,
		st: e.countersLocked(qid), s: e.senderLocked(qid)}
}

// fwdDown is the LinkDown counter of Forward's last target, if any.
func (q *Queue) fwdDown() *atomic.Uint64 {
	if q.fwdTo.st == nil {
		return nil
	}
	return &q.fwdTo.st.dropLinkDown
}

// receiveDown waits for the next burst while the target is down and hands
// it to Forward's batch as pending (Receive's buffers are the oldest
// unrefilled, as Forward's pending ones must be): forwarded if the target
// came up meanwhile, else dropped and counted (ForwardDrop also has the
// guard drop the rest of a chain the burst cut).
func (q *Queue) receiveDown(ctx context.Context) error {
	n, err := q.receive(ctx, false) // Forward counts what it forwards
	if err != nil {
		return err
	}
	copy(q.fwd.b[:n], q.rx.b[:n])
	q.fwd.meta.session, q.fwd.meta.pend = q.rx.meta.session, n
	q.held = 0
	return nil
}
