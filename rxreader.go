//go:build linux && cgo

package memif

/*
#include "cgo_helpers.h"
*/
import "C"

import (
	"errors"
	"os"
	"runtime"
	"time"
)

// RxReader reads one rx queue one packet at a time, for code that wants a
// packet, not a burst (gopacket's PacketDataSource is built on it, in the
// memifpacket module). It receives in bursts underneath (RefillRxBurstWait:
// one cgo crossing per burst, not per packet) and allocates nothing per
// packet.
// One goroutine at a time uses a reader; make one per queue.
type RxReader struct {
	c        *Conn
	qid      uint16
	headroom uint16
	b        *Buffers
	n, i     int    // the current burst is b[0:n]; the next packet starts at i
	chain    []byte // chained packets reassembled here, reused
	partial  bool   // chain holds the start of a packet the next burst continues
	oversize bool   // dropping a chain longer than MaxPacket
	copied   bool   // the last packet returned is in chain (Go memory)
	drops    uint64
	timeout  time.Duration
	recheck  time.Duration
	parks    uint64        // times Next parked (tests)
	spin     time.Duration // watching the ring in C before a park (tests lower it)

	w        *waiter // parks on the queue's eventfd in session wSession
	wSession *link   // (a new session has new eventfds)
}

// MaxPacket is the longest packet libmemif can allocate (its sizes are
// uint16); a longer chain from the peer is dropped.
const MaxPacket = 0xffff

// ErrTimeout is returned by RxReader.Next and TxWriter.WritePacket when
// their timeout passes. It has Timeout() true, as a net.Error (gopacket's
// PacketSource then retries), and matches os.ErrDeadlineExceeded.
var ErrTimeout error = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string        { return "memif: timed out" }
func (timeoutError) Timeout() bool        { return true }
func (timeoutError) Temporary() bool      { return true }
func (timeoutError) Is(target error) bool { return target == os.ErrDeadlineExceeded }

// ErrClosed is returned by an RxReader or TxWriter used after Close.
var ErrClosed = errors.New("memif: reader or writer closed")

// Waiting for packets: the waiting receive watches the ring inside C for
// DefaultSpinTime, in slices with a yield between (a peer that is sending
// refills the ring within microseconds), as an Endpoint's WaitAdaptive;
// the last slice consumes the eventfd before its last look, so the reader
// then parks on the queue's eventfd (Go's netpoller, no thread held) with
// no wake-up lost. A link going down kicks the eventfd (OnDisconnect). In
// polling mode (SetRxMode: no interrupts) the park lasts one slice.
const rxPollSlice = time.Millisecond

// NewRxReader reads rx queue qid of c, receiving up to batch buffers per
// burst (1..MaxBurst; 32 to 256 are typical). Close it when done: it holds
// the buffers of its last burst.
func NewRxReader(c *Conn, qid uint16, batch int) (*RxReader, error) {
	if c == nil {
		return nil, nilErr("NewRxReader", "connection")
	}
	b, err := NewBuffers(batch)
	if err != nil {
		return nil, err
	}
	return &RxReader{c: c, qid: qid, headroom: c.args.RxHeadroom, b: b, recheck: DefaultRecheck, spin: DefaultSpinTime}, nil
}

// SetRecheck bounds one park on the queue's eventfd (0: DefaultRecheck), as
// EndpointConfig.Recheck: a safety net, needed only where the ring layout
// could not be verified (see RefillRxBurstWait).
func (r *RxReader) SetRecheck(d time.Duration) {
	if d <= 0 {
		d = DefaultRecheck
	}
	r.recheck = d
}

// SetTimeout bounds how long Next waits for a packet; it then returns
// ErrTimeout. Zero (the default) waits until a packet arrives or the link
// goes down.
func (r *RxReader) SetTimeout(d time.Duration) { r.timeout = d }

// Drops counts packets the reader discarded: chains longer than MaxPacket,
// chains cut by a link going down, and chains whose rest the descriptor
// guard dropped (Buffers.ChainCut).
func (r *RxReader) Drops() uint64 { return r.drops }

// Next returns the next packet on the queue, waiting for one (see
// SetTimeout). The slice is valid only until the next call to Next,
// AppendNext or Close, and never after the link goes down: a packet in one
// buffer is a view into shared memory (zero-copy, see [Buffers]); a
// chained packet is reassembled into a buffer the reader reuses. Use
// AppendNext for a copy that is safe against the link going down.
//
// When the link is down Next returns the error of the burst (ErrDisconnected,
// or ErrDeleted once the Conn is deleted); after a reconnect it reads the
// new session.
func (r *RxReader) Next() ([]byte, error) {
	if r.b == nil {
		return nil, ErrClosed
	}
	var deadline time.Time
	slices := 0
	for {
		for r.i < r.n {
			p, ok, err := r.take()
			if ok || err != nil {
				return p, err
			}
		}
		spin, noarm := waitSlice(r.spin, slices)
		n, _, err := r.c.refillRxWait(r.qid, r.n, r.headroom, r.b, r.b.Cap(), spin, noarm)
		r.n, r.i = n, 0
		if r.b.ChainCut() && r.partial { // the guard dropped its rest
			r.drops++
			r.partial, r.oversize = false, false
		}
		if err != nil {
			r.lost()
			return nil, err
		}
		if n > 0 {
			slices = 0
			continue
		}
		if r.timeout > 0 {
			now := time.Now()
			if deadline.IsZero() {
				deadline = now.Add(r.timeout)
			} else if !now.Before(deadline) {
				return nil, ErrTimeout
			}
		}
		if noarm {
			slices++
			runtime.Gosched()
			continue
		}
		slices = 0
		r.park(deadline)
	}
}

// AppendNext appends the next packet to dst (see Next for waiting and
// errors). Unlike Next's view, the copy is made while the link cannot go
// down, so it is safe whatever the peer or the control path do.
func (r *RxReader) AppendNext(dst []byte) ([]byte, error) {
	p, err := r.Next()
	if err != nil {
		return dst, err
	}
	if r.copied {
		return append(dst, p...), nil
	}
	q, err := r.hold()
	if err != nil {
		return dst, err
	}
	dst = append(dst, p...)
	q.mu.Unlock()
	return dst, nil
}

// take returns the packet at r.i: ok is false when it is a chain that
// continues in the next burst (its start is kept in r.chain).
func (r *RxReader) take() (p []byte, ok bool, err error) {
	end, size := r.b.PacketEnd(r.i, r.n)
	more := r.b.HasNext(end - 1)
	if !r.partial && !more && end == r.i+1 {
		r.i, r.copied = end, false
		return r.b.Data(end - 1), true, nil
	}
	if !r.partial {
		r.chain, r.oversize = r.chain[:0], false
	}
	if r.oversize || len(r.chain)+size > MaxPacket {
		r.oversize = true // drop the whole chain, however long the peer makes it
	} else {
		q, err := r.hold()
		if err != nil {
			return nil, false, err
		}
		for j := r.i; j < end; j++ {
			r.chain = append(r.chain, r.b.Data(j)...)
		}
		q.mu.Unlock()
	}
	r.i, r.partial = end, more
	if more {
		return nil, false, nil
	}
	if r.oversize {
		r.drops++
		return nil, false, nil
	}
	r.copied = true
	return r.chain, true, nil
}

// hold locks the queue of the session the current burst came from, so that
// shared memory can be read while the link cannot go down (a disconnect
// takes every queue lock before libmemif unmaps). The caller unlocks.
func (r *RxReader) hold() (*queue, error) {
	l := r.b.meta.session
	if l != nil {
		q := &l.rx[r.qid]
		q.mu.Lock()
		if !l.down.Load() {
			return q, nil
		}
		q.mu.Unlock()
	}
	r.n, r.i = 0, 0
	r.partial, r.oversize = false, false
	r.drops++ // the packet being read
	return nil, r.c.downErr(opRefillRx)
}

// lost forgets a chain the link cut.
func (r *RxReader) lost() {
	if r.partial && !r.oversize {
		r.drops++
	}
	r.partial, r.oversize = false, false
}

// park waits for the queue's interrupt, up to the recheck (one slice in
// polling mode, or when the eventfd is not known yet) or the deadline. The
// caller's last waiting receive consumed the eventfd and found the ring
// empty after.
func (r *RxReader) park(deadline time.Time) {
	l := r.b.meta.session
	if l != r.wSession || r.w == nil {
		r.closeWaiter()
		r.w, r.wSession = r.c.queueWaiterNoWait(l, r.qid), l
	}
	r.parks++
	wait := r.recheck
	if r.w == nil || l.rx[r.qid].polling.Load() {
		wait = rxPollSlice
	}
	if !deadline.IsZero() {
		wait = min(wait, max(time.Until(deadline), 0))
	}
	if r.w == nil {
		time.Sleep(wait)
		return
	}
	r.w.park(wait)
}

func (r *RxReader) closeWaiter() {
	if r.w != nil {
		r.w.close()
		r.w = nil
	}
}

// queueWaiterNoWait is a waiter on rx queue qid's eventfd of session l, or
// nil if the control path is busy: a reader must never wait for the socket
// lock, which an OnDisconnect waiting for the reader to stop would hold.
// Under that lock the eventfd is l's and open; the waiter's duplicate keeps
// it open after libmemif closes its own, so a kick at link down still
// reaches a reader that parks after it.
func (c *Conn) queueWaiterNoWait(l *link, qid uint16) *waiter {
	s := c.sock
	if l == nil || !s.mu.TryLock() {
		return nil
	}
	defer s.mu.Unlock()
	if s.h == nil || c.deleted.Load() || c.link.Load() != l || int(qid) >= len(l.rx) {
		return nil
	}
	fd := C.int(-1)
	if C.memif_get_queue_efd(c.h, C.uint16_t(qid), &fd) != 0 || fd < 0 {
		return nil
	}
	w, err := newWaiter(int(fd))
	if err != nil {
		return nil
	}
	return w
}

// Close gives the buffers of the last burst back to the ring (unless the
// link went down since) and frees the reader's batch. Later calls return
// ErrClosed.
func (r *RxReader) Close() error {
	if r.b == nil {
		return nil
	}
	var err error
	if r.n > 0 {
		// A zero-count burst refills atomically with the session check
		// (RefillRxBurst drops a refill from an ended session).
		if _, _, err = r.c.RefillRxBurst(r.qid, r.n, r.headroom, r.b, 0); errors.Is(err, ErrDisconnected) || errors.Is(err, ErrDeleted) {
			err = nil
		}
	}
	r.b.Free()
	r.b, r.n, r.i = nil, 0, 0
	r.closeWaiter()
	return err
}
