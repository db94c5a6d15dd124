//go:build linux && cgo

package memif

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"time"
)

// session is one link-up..link-down of an Endpoint: its queues and the
// handler goroutines serving them.
type session struct {
	link   Link
	queues []*Queue
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	spare  *spares // the Endpoint's: the queues' batches go back there
}

// startSession runs in OnConnect on the loop goroutine: reads the
// negotiated link, prepares every queue (batches sized from the link,
// eventfd waiters, rx mode) and starts one handler goroutine per queue.
func (e *Endpoint) startSession(c *Conn) (*session, error) {
	d, err := c.Details()
	if err != nil {
		return nil, err
	}
	if len(d.RxQueues) == 0 || len(d.TxQueues) == 0 {
		return nil, fmt.Errorf("memif: peer negotiated %d rx and %d tx queues", len(d.RxQueues), len(d.TxQueues))
	}
	s := &session{spare: &e.spare, link: Link{
		Master:     c.IsMaster(),
		RxQueues:   len(d.RxQueues),
		TxQueues:   len(d.TxQueues),
		RxRingSize: int(d.RxQueues[0].RingSize),
		TxRingSize: int(d.TxQueues[0].RingSize),
		BufferSize: int(d.TxQueues[0].BufferSize),
	}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			s.free()
		}
	}()
	for qid := range max(s.link.RxQueues, s.link.TxQueues) {
		q, err := e.newQueue(c, s, qid)
		if err != nil {
			return nil, err
		}
		s.queues = append(s.queues, q)
	}
	ok = true
	for _, q := range s.queues {
		s.wg.Add(1)
		go e.serve(s, q)
	}
	return s, nil
}

// newQueue prepares queue qid for a handler; control calls are made here,
// on the loop goroutine, never from the handler.
func (e *Endpoint) newQueue(c *Conn, s *session, qid int) (*Queue, error) {
	q := &Queue{id: qid, c: c, sess: s, st: e.counters(qid), mode: e.cfg.Mode, spin: e.cfg.SpinTime,
		recheck: e.cfg.Recheck, headroom: c.args.RxHeadroom}
	if qid < s.link.RxQueues {
		var err error
		if q.rx, err = s.spare.get(qid, spareRx, min(e.cfg.Batch, max(s.link.RxRingSize, 1))); err != nil {
			return nil, err
		}
		if e.cfg.Mode == WaitPoll {
			if err := c.SetRxMode(RxModePolling, uint16(qid)); err != nil {
				q.free()
				return nil, err
			}
		} else {
			// Ask for interrupts explicitly: the slave laid out the rings
			// and one that polls (gomemif) may have masked ours.
			err := c.SetRxMode(RxModeInterrupt, uint16(qid))
			var efd int
			if err == nil {
				efd, err = c.QueueEventFD(uint16(qid))
			}
			if err == nil {
				q.w, err = newWaiter(efd)
			}
			if err != nil {
				q.free()
				return nil, err
			}
		}
	}
	if qid < s.link.TxQueues {
		// A whole ring's batch: every packet fits, on a master too (see
		// BufferAlloc).
		var err error
		if q.tx, err = NewBuffers(max(s.link.TxRingSize, 1)); err != nil {
			q.free()
			return nil, err
		}
	}
	return q, nil
}

// serve runs the handler on q until the session ends; failures are
// counted and the handler starts again.
func (e *Endpoint) serve(s *session, q *Queue) {
	defer s.wg.Done()
	if e.cfg.Mode == WaitPoll {
		// A polling queue keeps a core busy anyway: on its own thread it
		// is spared the scheduler's hand-offs around every cgo call and
		// yield (measured: about twice the packet rate of examples/loopback).
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	backoff := time.Millisecond
	for {
		err := runHandler(e.handler, s.ctx, q)
		q.release()
		if s.ctx.Err() != nil || err == nil {
			return
		}
		if errors.Is(err, ErrDisconnected) {
			<-s.ctx.Done() // the link went down under the handler; cancel follows
			return
		}
		q.st.handlerErrors.Add(1)
		e.report(fmt.Errorf("memif: queue %d handler: %w", q.id, err))
		t := time.NewTimer(backoff)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, time.Second)
	}
}

// runHandler turns a handler panic into an error.
func runHandler(h Handler, ctx context.Context, q *Queue) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &CallbackError{Callback: "Handler", Panic: p, Stack: debug.Stack()}
		}
	}()
	return h(ctx, q)
}

// stop cancels the handlers, wakes their waits and waits until every one
// returned: then no view of the session is reachable and libmemif may
// unmap. Runs in OnDisconnect on the loop goroutine.
func (s *session) stop() {
	s.cancel()
	for _, q := range s.queues {
		if q.w != nil {
			q.w.kick()
		}
	}
	s.wg.Wait()
	s.free()
}

func (s *session) free() {
	if s.cancel != nil {
		s.cancel()
	}
	for _, q := range s.queues {
		q.free()
	}
}
