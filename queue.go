//go:build linux && cgo

package memif

import (
	"context"
	"errors"
	"runtime"
	"time"
)

// Queue is one queue pair (rx and tx queue of the same id) of a live link,
// handed to a Handler. It is used by that handler's goroutine only and
// dies with the link: views (Rx().Data) are valid until the next Receive
// and never after the handler returns.
type Queue struct {
	id       int
	c        *Conn
	sess     *session
	st       *queueCounters
	mode     WaitMode
	spin     time.Duration // WaitAdaptive's wait in C before parking
	recheck  time.Duration
	headroom uint16

	rx   *Buffers // received batch; nil if the peer gave no rx queue of this id
	held int      // buffers of rx still lent to the handler (refilled by the next Receive)
	cut  bool     // a chain cut seen by a Receive that returned no packets: the next batch's ChainCut
	w    *waiter  // nil in WaitPoll mode

	tx    *Buffers   // descriptor scratch for Flush, a whole ring
	ztx   *Buffers   // zero-copy tx batch (Alloc, Send), made on first use
	rxAt  []*Buffers // rxAt[i] is Rx() from i on (Echo), made on first use
	fwd   *Buffers   // Forward's rx batch (its pending packets), made on first use
	fwdTo fwdTarget  // Forward's last target queue
	data  []byte     // staged packets, back to back
	offs  []int32    // packet i is data[offs[i]:offs[i+1]]
}

var (
	errRingFull = &Error{Op: "Queue.Flush", Err: ErrNoBufRing}
	errNoTx     = errors.New("memif: the peer gave this queue id no tx queue")
)

// ID is the queue id.
func (q *Queue) ID() int { return q.id }

// Link is what the peers negotiated for this link.
func (q *Queue) Link() Link { return q.sess.link }

// Receive gives back the previous batch and waits (per the Endpoint's
// WaitMode) for the next: n buffers in Rx(), at least one (on a queue id
// the peer gave no rx queue, it only waits for the end). A packet longer
// than the buffer size arrives as a chain (Rx().HasNext; Rx().ChainCut:
// the guard dropped the rest of one the last batch ended in). It returns
// ctx's error when ctx ends, and the link's ended context's error when the
// link goes down.
func (q *Queue) Receive(ctx context.Context) (n int, err error) { return q.receive(ctx, true) }

// receive is Receive; count false leaves the rx counters to the caller.
func (q *Queue) receive(ctx context.Context, count bool) (n int, err error) {
	if q.rx == nil { // the peer gave fewer rx queues: nothing ever arrives here
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-q.sess.ctx.Done():
			return 0, q.sess.ctx.Err()
		}
	}
	if q.fwd != nil && q.fwd.Pending() > 0 {
		q.fwdDrop(q.fwdDown()) // Forward's oldest buffers go first
	}
	foreign := ctx.Done() != q.sess.ctx.Done()
	// WaitAdaptive waits in C in short slices with a yield between: a
	// goroutine in C keeps its P, so a long wait there would hold up the
	// goroutines queued on that P (the peer's handler woken from its park,
	// say) until the runtime's monitor hands the P off; measured, that
	// doubled the round trip. Only the last slice consumes the eventfd
	// before its last look at the ring, so the park after it loses no
	// wake-up. WaitPoll (a thread of its own) waits SpinTime per call and
	// checks its contexts in between; WaitInterrupt does not spin.
	// A cut seen by empty bursts stays pending on the Queue until a batch
	// carries it (ChainCut), also across a Receive that returns early.
	slices := 0
	for {
		spin, noarm := time.Duration(0), false
		switch q.mode {
		case WaitAdaptive:
			spin, noarm = waitSlice(q.spin, slices)
		case WaitPoll: // never parks: no eventfd read after each spin
			spin, noarm = q.spin, true
		}
		n, _, err = q.c.refillRxWait(uint16(q.id), q.held, q.headroom, q.rx, q.rx.Cap(), spin, noarm)
		if err != nil {
			q.held = 0
			if e := q.sess.ctx.Err(); e != nil {
				return 0, e
			}
			return 0, err
		}
		q.held = n
		q.cut = q.cut || q.rx.ChainCut() // over the empty bursts before this batch
		if n > 0 {
			q.rx.meta.cut, q.cut = q.cut, false
			if count {
				q.countRx(n)
			}
			return n, nil
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := q.sess.ctx.Err(); err != nil {
			return 0, err
		}
		if q.mode == WaitPoll {
			continue
		}
		if noarm {
			slices++
			runtime.Gosched()
			continue
		}
		slices = 0
		q.park(ctx, foreign)
	}
}

// waitSlice is the next wait in C of a waiting receive that spins for
// total before it parks, after slices of them: at most one slice, and
// noarm (leave the eventfd) on all but the last, so the park after the
// last loses no wake-up.
func waitSlice(total time.Duration, slices int) (spin time.Duration, noarm bool) {
	left := total - time.Duration(slices)*spinSlice
	return min(left, spinSlice), left > spinSlice
}

// park waits on the queue's eventfd (counted), ended also by ctx when it
// is not the session's (foreign).
func (q *Queue) park(ctx context.Context, foreign bool) {
	q.st.parks.Add(1)
	if foreign {
		q.w.parkCtx(ctx, q.recheck)
	} else {
		q.w.park(q.recheck)
	}
}

// spinSlice is the longest WaitAdaptive waits in C before yielding.
const spinSlice = 5 * time.Microsecond

// Release gives the last batch back to the ring now instead of at the next
// Receive (before a pause, or the handler's end, so the peer sees its
// buffers consumed); its views die here.
func (q *Queue) Release() error {
	if q.rx == nil || q.held == 0 {
		return nil
	}
	n := q.held
	q.held = 0
	return q.c.RefillQueue(uint16(q.id), n, q.headroom)
}

// countRx adds one burst to the counters: plain loads per buffer, one
// atomic add per counter per burst.
func (q *Queue) countRx(n int) {
	var pkts, bytes uint64
	for i := range q.rx.b[:n] {
		d := &q.rx.b[i]
		bytes += uint64(d.len)
		if !q.rx.HasNext(i) {
			pkts++
		}
	}
	q.st.rxPackets.Add(pkts)
	q.st.rxBytes.Add(bytes)
}

// Rx is the batch the last Receive filled: Data(i), Len(i), HasNext(i) for
// i < n. Its views live until the next Receive or the handler's return.
func (q *Queue) Rx() *Buffers { return q.rx }

// Stage returns n bytes (1..65535) for the next packet to send, in Go
// memory the Queue reuses; Flush copies the staged packets into the tx
// ring. The slice is valid until Flush. It returns nil for a size outside
// 1..65535 (counted as a DropOversize).
func (q *Queue) Stage(n int) []byte {
	if n < 1 || n > 0xffff {
		q.st.dropOversize.Add(1)
		return nil
	}
	if len(q.offs) == 0 {
		q.offs = append(q.offs, 0)
	}
	start := len(q.data)
	q.data = append(q.data, make([]byte, n)...) // no allocation once the buffer has grown
	q.offs = append(q.offs, int32(start+n))
	return q.data[start : start+n : start+n]
}

// Append stages a copy of p (see Stage).
func (q *Queue) Append(p []byte) {
	if b := q.Stage(len(p)); b != nil {
		copy(b, p)
	}
}

// Staged is the number of packets waiting for Flush.
func (q *Queue) Staged() int { return max(len(q.offs)-1, 0) }

// Flush sends every staged packet (chained when longer than the buffer
// size), one cgo crossing per ring's worth. While the tx ring is full it
// waits for the peer (yielding), counting RingFull once per wait; packets
// still staged when ctx ends or the link goes down are dropped (counted as
// Drops.RingFull, or Drops.LinkDown when a burst finds the link down). It
// returns the packets sent.
func (q *Queue) Flush(ctx context.Context) (int, error) { return q.flush(ctx, -1) }

// FlushWait is Flush waiting at most d for ring space: what the ring cannot
// take by then is dropped (Drops.RingFull) and the error is ErrNoBufRing.
func (q *Queue) FlushWait(ctx context.Context, d time.Duration) (int, error) { return q.flush(ctx, d) }

// FlushNow is Flush without waiting: packets the tx ring cannot take now
// are dropped (Drops.RingFull), with a nil error.
func (q *Queue) FlushNow() (int, error) {
	n, err := q.flush(nil, 0)
	if err == errRingFull {
		err = nil // dropped by design, counted
	}
	return n, err
}

// flush sends the staged packets, waiting for ring space up to wait
// (negative: until ctx or the link ends).
func (q *Queue) flush(ctx context.Context, wait time.Duration) (sent int, err error) {
	np := q.Staged()
	if np == 0 {
		return 0, nil
	}
	if q.tx == nil {
		q.st.dropLinkDown.Add(uint64(np))
		q.resetStage()
		return 0, errNoTx
	}
	sent, err = copyOut(q.c, q.id, q.tx, q.data, q.offs, q.st, wait, ctx, q.sess.ctx)
	q.resetStage()
	return sent, err
}

// copyOut sends data[offs[i]:offs[i+1]] on tx queue qid with CopyTx, a
// ring's worth per crossing, counting what it sends and drops. While the
// ring is full it yields and retries, up to wait (negative: no limit) or
// until ctx or stop ends (either may be nil); what is left then is
// dropped with errRingFull or the context's error.
func copyOut(c *Conn, qid int, bufs *Buffers, data []byte, offs []int32, st *queueCounters,
	wait time.Duration, ctx, stop context.Context) (sent int, err error) {
	np := len(offs) - 1
	full := false
	var deadline time.Time
	for sent < np {
		var n int
		n, err = c.CopyTx(uint16(qid), bufs, data, offs[sent:min(np, sent+MaxBurst)+1])
		sent += n
		if err != nil && !errors.Is(err, ErrNoBufRing) {
			st.dropLinkDown.Add(uint64(np - sent))
			break
		}
		err = nil
		if n > 0 {
			full = false
			continue
		}
		if !full {
			st.ringFull.Add(1)
			full = true
			deadline = time.Now().Add(wait)
		}
		if wait >= 0 && !time.Now().Before(deadline) {
			err = errRingFull
		} else if ctx != nil && ctx.Err() != nil {
			err = ctx.Err()
		} else if stop != nil && stop.Err() != nil {
			err = stop.Err()
		}
		if err != nil {
			st.dropRingFull.Add(uint64(np - sent))
			break
		}
		runtime.Gosched()
	}
	st.txPackets.Add(uint64(sent))
	st.txBytes.Add(uint64(offs[sent] - offs[0]))
	return sent, err
}

func (q *Queue) resetStage() {
	q.data = q.data[:0]
	q.offs = q.offs[:0]
}

// release ends a handler's use of the queue: the received batch goes back
// to the ring, staged packets are dropped.
func (q *Queue) release() {
	q.Release() // fails harmlessly once the link is down
	q.fwdDrop(q.fwdDown())
	if n := q.Staged(); n > 0 {
		q.st.dropLinkDown.Add(uint64(n))
		q.resetStage()
	}
}

// free releases the queue's C memory and fd once no handler runs: a view
// kept by mistake then fails to index instead of reading unmapped memory.
func (q *Queue) free() {
	if q.w != nil {
		q.w.close()
		q.w = nil
	}
	q.sess.spare.put(q.id, spareRx, q.rx) // a Batch or Slice of it may exist
	q.sess.spare.put(q.id, spareTx, q.ztx)
	q.tx.Free() // internal: no Batch or Slice
	q.fwd.Free()
}

// Alloc takes tx buffers for count packets of size bytes each (chained when
// longer than the buffer size) into Tx(), from index 0: write the packets in
// place (zero-copy), then Send. It returns the buffers taken, fewer when
// the ring is full (then with a nil error: the peer has not freed them yet).
// Views of Tx() are valid until Send.
func (q *Queue) Alloc(count, size int) (int, error) {
	if q.tx == nil {
		return 0, errNoTx
	}
	if q.ztx == nil {
		var err error
		if q.ztx, err = q.sess.spare.get(q.id, spareTx, q.tx.Cap()); err != nil {
			return 0, err
		}
	}
	if size < 0 || size > 0xffff {
		return 0, argErr("Queue.Alloc", "size", "%d is outside 0..65535", size)
	}
	n, err := q.c.BufferAlloc(uint16(q.id), q.ztx, count, uint16(size))
	if errors.Is(err, ErrNoBufRing) {
		if n == 0 {
			q.st.ringFull.Add(1)
		}
		err = nil
	}
	return n, err
}

// Tx is the batch Alloc filled: write Data(i) for i < n, then Send(n).
func (q *Queue) Tx() *Buffers { return q.ztx }

// Send transmits Tx()[0:n] (whole packets from Alloc) and returns the
// packets sent; the views die here.
func (q *Queue) Send(n int) (int, error) {
	if n == 0 {
		return 0, nil
	}
	if q.ztx == nil {
		return 0, errNoTx
	}
	var pkts, bytes uint64
	for i := range q.ztx.b[:n] {
		bytes += uint64(q.ztx.b[i].len)
		if !q.ztx.HasNext(i) {
			pkts++
		}
	}
	sent, err := q.c.TxBurst(uint16(q.id), q.ztx, n)
	if sent == n {
		q.st.txPackets.Add(pkts)
		q.st.txBytes.Add(bytes)
		return int(pkts), err
	}
	q.st.dropLinkDown.Add(pkts)
	return 0, err
}

// Echo sends received buffers Rx()[i:i+count] back out of this queue
// without copying (memif_buffer_enq_tx, then memif_tx_burst): a slave's
// zero-copy responder. Only a slave can (a master's rx buffers belong to
// its slave); count whole packets (no chain cut). It returns the buffers
// sent, fewer when the ring is full (then a nil error). The views stay
// readable until the next Receive.
func (q *Queue) Echo(i, count int) (int, error) {
	if q.rx == nil || q.tx == nil {
		return 0, errNoTx
	}
	if i < 0 || count < 0 || i+count > q.held {
		return 0, argErr("Queue.Echo", "range", "[%d, %d) is outside the %d buffers received", i, i+count, q.held)
	}
	if count == 0 {
		return 0, nil
	}
	if q.rxAt == nil {
		q.rxAt = make([]*Buffers, q.rx.Cap())
	}
	b := q.rxAt[i]
	if b == nil {
		b = q.rx.Slice(i, q.rx.Cap())
		q.rxAt[i] = b
	}
	n, err := q.c.BufferEnqTx(uint16(q.id), b, count)
	if n == 0 {
		if errors.Is(err, ErrNoBufRing) {
			q.st.ringFull.Add(1)
			err = nil
		}
		return 0, err
	}
	var pkts, bytes uint64
	for j := range n {
		bytes += uint64(b.Len(j))
		if !b.HasNext(j) {
			pkts++
		}
	}
	if _, err := q.c.TxBurst(uint16(q.id), b, n); err != nil && !errors.Is(err, ErrIntWrite) {
		q.st.dropLinkDown.Add(pkts)
		return 0, err
	}
	q.st.txPackets.Add(pkts)
	q.st.txBytes.Add(bytes)
	return n, nil
}
