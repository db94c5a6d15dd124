//go:build linux && cgo

package memif

import (
	"context"
	"sync"
	"time"
)

// sender is the descriptor scratch of Endpoint.Send for one queue: it lives
// as long as the Endpoint (not a link), so a Send racing a link-down never
// touches freed memory; the link's own queue lock keeps the rings mapped
// for the length of each burst.
type sender struct {
	mu   sync.Mutex
	bufs *Buffers
}

// Send copies packets into tx queue qid of the current link from any
// goroutine (a bridge's other Endpoint, for example): packet i is
// data[offs[i]:offs[i+1]], as in Conn.CopyTx, chained when longer than the
// buffer size. While the ring is full it waits (yielding) up to wait, or
// until ctx ends; packets not sent then are dropped and counted
// (Drops.RingFull, and ErrNoBufRing; with the link down, Drops.LinkDown
// and ErrDisconnected). It returns the packets sent. Sends on one queue
// are serialized with each other and with the queue's handler, one burst
// at a time.
func (e *Endpoint) Send(ctx context.Context, qid int, data []byte, offs []int32, wait time.Duration) (sent int, err error) {
	np := len(offs) - 1
	if np <= 0 {
		return 0, nil
	}
	st := e.counters(qid)
	l, up := e.Link()
	if !up {
		st.dropLinkDown.Add(uint64(np))
		return 0, &Error{Op: "Endpoint.Send", Err: ErrDisconnected}
	}
	if qid < 0 || qid >= l.TxQueues {
		return 0, qidErr("Endpoint.Send", uint16(min(max(qid, 0), 0xffff)), l.TxQueues)
	}
	s := e.sender(qid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bufs == nil || s.bufs.Cap() < l.TxRingSize {
		if s.bufs != nil {
			s.bufs.Free()
		}
		if s.bufs, err = NewBuffers(max(l.TxRingSize, 1)); err != nil {
			return 0, err
		}
	}
	sent, err = copyOut(e.conn, qid, s.bufs, data, offs, st, wait, ctx, nil)
	if err == errRingFull {
		err = &Error{Op: "Endpoint.Send", Err: ErrNoBufRing}
	}
	return sent, err
}

func (e *Endpoint) sender(qid int) *sender {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.senderLocked(qid)
}

func (e *Endpoint) senderLocked(qid int) *sender { return nth(&e.senders, qid) }

// freeSenders releases Send's scratch once nothing can send any more.
func (e *Endpoint) freeSenders() {
	e.mu.Lock()
	ss := e.senders
	e.mu.Unlock()
	for _, s := range ss {
		s.mu.Lock()
		if s.bufs != nil {
			s.bufs.Free()
			s.bufs = nil
		}
		s.mu.Unlock()
	}
}
