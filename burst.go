//go:build linux && cgo

package memif

/*
#include "cgo_helpers.h"
*/
import "C"

import (
	"fmt"
	"time"
	"unsafe"
)

// The hot path: one cgo crossing per burst, no allocation, no lock: each
// method enters C through c.burst (own.go), which keeps a disconnect from
// unmapping a ring under a burst and two threads off one queue.

// Hot-path operations, indexing hotErrs.
const (
	opRx = iota
	opRefillRx
	opRefill
	opTx
	opAlloc
	opEnqTx
	opCount
)

var hotOps = [opCount]string{"memif_rx_burst", "memif_refill_queue+memif_rx_burst",
	"memif_refill_queue", "memif_tx_burst", "memif_buffer_alloc", "memif_buffer_enq_tx"}

// hotErrs holds one prebuilt error per operation and code, so returning an
// error (ring full, disconnected) allocates nothing.
var hotErrs = func() (t [opCount][errMax + 1]*Error) {
	for op := range t {
		for code := range t[op] {
			t[op][code] = &Error{Op: hotOps[op], Err: Errno(code)}
		}
	}
	return t
}()

func hotErr(op int, code int64) error {
	if code == 0 {
		return nil
	}
	if code > 0 && code <= int64(errMax) {
		return hotErrs[op][code]
	}
	return &Error{Op: hotOps[op], Err: Errno(code)}
}

// unpack splits a memifgo_* result (MEMIFGO_PACK) into count and error code.
func unpack(r C.uint64_t) (int, int64) { return int(r & 0xffff), int64(r >> 32 & 0xffff) }

// setCut records a receive's ChainCut.
func (b *Buffers) setCut(r C.uint64_t) { b.meta.cut = r>>48&C.MEMIFGO_FP_CUT != 0 }

// RxBurst wraps memif_rx_burst: receive up to count buffers from rx queue
// qid into bufs[0:n]. more reports libmemif's MEMIF_ERR_NOBUF: the batch
// filled up and more packets wait (not an error; the n buffers are valid).
// Give the buffers back with RefillQueue (or use RefillRxBurst). Views:
// see [Buffers]. A buffer the peer described outside its regions or buffer
// size is dropped with the rest of its packet (counted in DescriptorStats) and
// not in bufs[0:n]; refilling n still gives its ring slot back. When that
// packet began in an earlier burst (a chain), bufs.ChainCut reports it:
// drop the start that burst returned.
func (c *Conn) RxBurst(qid uint16, bufs *Buffers, count int) (n int, more bool, err error) {
	if err := bufs.checkCount(hotOps[opRx], count); err != nil {
		return 0, false, err
	}
	l, q, err := c.hotRx(opRx, qid)
	if err != nil {
		return 0, false, err
	}
	r, err := c.burst(opRx, l, q, func(claim C.int) C.uint64_t {
		return C.memifgo_rx_burst(l.h, l.guard, C.uint16_t(qid), batchArg(bufs), C.uint16_t(count), claim)
	})
	if err != nil {
		bufs.meta.cut = false // no receive ran: the last one's cut was reported
		return 0, false, err
	}
	return received(opRx, bufs, l, r)
}

// received is a receive's result: bufs now holds views of link l, and
// ErrNoBuf means more packets are pending, not failure.
func received(op int, bufs *Buffers, l *link, r C.uint64_t) (n int, more bool, err error) {
	bufs.meta.session = l
	n, code := unpack(r)
	bufs.setCut(r)
	if code == int64(ErrNoBuf) {
		return n, true, nil
	}
	return n, false, hotErr(op, code)
}

// RefillRxBurst gives back refill buffers of rx queue qid (memif_refill_queue
// with headroom) and receives the next burst (memif_rx_burst) in one cgo
// crossing: the fast receive loop. The views of the previous burst die here.
// RefillRxBurstWait also waits for the burst, inside C.
func (c *Conn) RefillRxBurst(qid uint16, refill int, headroom uint16, bufs *Buffers, count int) (n int, more bool, err error) {
	return c.refillRx(qid, refill, headroom, bufs, count, 0, false, false)
}

// refillRx is RefillRxBurst, or with wait the waiting receive (rxwait.go).
func (c *Conn) refillRx(qid uint16, refill int, headroom uint16, bufs *Buffers, count int, spin time.Duration, wait, noarm bool) (n int, more bool, err error) {
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
		if wait {
			return C.memifgo_refill_rx_wait(l.h, l.guard, C.uint16_t(qid), C.uint16_t(refill), C.uint16_t(headroom),
				batchArg(bufs), C.uint16_t(count), spinArg(spin), boolArg(noarm), claim)
		}
		return C.memifgo_refill_rx_burst(l.h, l.guard, C.uint16_t(qid), C.uint16_t(refill), C.uint16_t(headroom),
			batchArg(bufs), C.uint16_t(count), claim)
	})
	if err != nil {
		bufs.meta.cut = false // no receive ran: the last one's cut was reported
		return 0, false, err
	}
	n, more, err = received(opRefillRx, bufs, l, r)
	if wait && n == 0 {
		q.weigh(spin) // it waited in C
	}
	return n, more, err
}

// RefillQueue wraps memif_refill_queue: give count received buffers of rx
// queue qid back to the ring, data starting headroom bytes into each buffer.
// RefillAll refills the whole ring. Views of those buffers die here. count
// is buffers the bursts returned: ring slots of dropped bad buffers among
// and right after them go back too. On a master the binding moves the ring
// tail itself (libmemif's master refill loses count at the 16-bit wrap).
func (c *Conn) RefillQueue(qid uint16, count int, headroom uint16) error {
	if count < 0 || count > 0xffff {
		return argErr(hotOps[opRefill], "count", "%d is outside 0..65535", count)
	}
	l, q, err := c.hotRx(opRefill, qid)
	if err != nil {
		return err
	}
	if !c.args.IsMaster && uint32(headroom) >= l.bufferSize { // a master's refill ignores headroom
		return argErr(hotOps[opRefill], "headroom", "%d leaves no room in %d-byte buffers", headroom, l.bufferSize)
	}
	r, err := c.burst(opRefill, l, q, func(claim C.int) C.uint64_t {
		return C.memifgo_refill_queue(l.h, l.guard, C.uint16_t(qid), C.uint16_t(count), C.uint16_t(headroom), claim)
	})
	if err != nil {
		return err
	}
	_, code := unpack(r)
	return hotErr(opRefill, code)
}

// RefillAll is the RefillQueue count that refills the whole ring.
const RefillAll = refillWholeRing

// BufferAlloc wraps memif_buffer_alloc: take count packets' worth of free
// tx buffers of tx queue qid, each size bytes (chained when size exceeds the
// buffer size), into bufs from index 0. n counts buffers, not packets. A
// full ring returns the buffers it got with ErrNoBufRing. Write through
// Data, then TxBurst. On a master the slave chose the buffer lengths: unless
// the batch holds a whole ring, allocation stops early (a short n, no error)
// when the batch could not hold one more packet cut in 64-byte buffers (see
// masterSegment). A
// master can allocate only once the slave has refilled its ring, shortly
// after OnConnect.
func (c *Conn) BufferAlloc(qid uint16, bufs *Buffers, count int, size uint16) (n int, err error) {
	if err := bufs.checkCount(hotOps[opAlloc], count); err != nil {
		return 0, err
	}
	l, q, err := c.hotTx(opAlloc, qid)
	if err != nil {
		return 0, err
	}
	worst := 0
	if c.args.IsMaster && len(bufs.b) < int(l.txRingSize[qid]) {
		// Segment lengths are the slave's choice: bound packet by packet.
		seg := l.masterSegment()
		if worst = max((int(size)+seg-1)/seg, 1); worst > len(bufs.b) {
			return 0, argErr(hotOps[opAlloc], "size", "a %d-byte packet may take %d buffers here, the batch has %d (a batch of the ring size, %d, always fits)",
				size, worst, len(bufs.b), l.txRingSize[qid])
		}
	} else if err := l.checkAllocFits(qid, len(bufs.b), count, size); err != nil {
		return 0, err
	}
	r, err := c.burst(opAlloc, l, q, func(claim C.int) C.uint64_t {
		return C.memifgo_buffer_alloc(l.h, l.guard, C.uint16_t(qid), batchArg(bufs), C.uint16_t(len(bufs.b)),
			C.uint16_t(count), C.uint16_t(size), C.uint16_t(worst), claim)
	})
	if err != nil {
		return 0, err
	}
	n, code := unpack(r)
	bufs.meta.session = l
	for i := range bufs.caps[:n] {
		bufs.caps[i] = uint32(bufs.b[i].len) // SetLen may shrink, never grow past this
	}
	if code == codeBadDesc {
		return n, errBadDescAlloc
	}
	return n, hotErr(opAlloc, code)
}

// TxBurst wraps memif_tx_burst: send bufs[0:count] (from BufferAlloc or
// BufferEnqTx, in order) on tx queue qid. Their views die here. bufs[0] must
// be the oldest allocated and unsent buffer of the queue, and count at most
// the unsent allocations: otherwise (a batch sent twice, an abandoned
// allocation, a count above it: *ArgError or ErrStaleTxBuffer) nothing is
// sent and every unsent allocation of the queue is given back (as empty
// buffers, see ReleaseTx), so the queue never wedges.
func (c *Conn) TxBurst(qid uint16, bufs *Buffers, count int) (n int, err error) {
	if err := bufs.checkCount(hotOps[opTx], count); err != nil {
		return 0, err
	}
	l, q, err := c.hotTx(opTx, qid)
	if err != nil {
		return 0, err
	}
	if count > 0 && bufs.meta.session != l {
		return 0, hotErrs[opTx][ErrDisconnected] // buffers of a session that ended
	}
	for i := range bufs.b[:count] {
		if uint32(bufs.b[i].len) > bufs.caps[i] {
			if _, err := c.burst(opTx, l, q, func(claim C.int) C.uint64_t {
				return C.memifgo_tx_rollback(l.h, l.guard, C.uint16_t(qid), claim)
			}); err != nil {
				return 0, err
			}
			return 0, argErr(hotOps[opTx], "length", "buffer %d holds %d bytes, it was allocated with %d (unsent allocations were given back)",
				i, bufs.b[i].len, bufs.caps[i])
		}
	}
	r, err := c.burst(opTx, l, q, func(claim C.int) C.uint64_t {
		return C.memifgo_tx_burst(l.h, l.guard, C.uint16_t(qid), batchArg(bufs), C.uint16_t(count), claim)
	})
	if err != nil {
		return 0, err
	}
	n, code := unpack(r)
	if debugViews && code < codeTxCount {
		for i := range bufs.b[:n] {
			bufs.b[i].data, bufs.b[i].len = nil, 0 // sent: its view is dead
		}
	}
	if code >= codeTxCount {
		return 0, txErr(hotOps[opTx], code, n, bufs)
	}
	return n, hotErr(opTx, code)
}

// BufferEnqTx wraps memif_buffer_enq_tx (slave only): move received buffers
// bufs[0:count] onto tx queue qid without copying, for a zero-copy
// responder. Then TxBurst them, and still RefillQueue the rx queue by the
// count received.
func (c *Conn) BufferEnqTx(qid uint16, bufs *Buffers, count int) (n int, err error) {
	if err := bufs.checkCount(hotOps[opEnqTx], count); err != nil {
		return 0, err
	}
	if c == nil {
		return 0, nilConnErr(hotOps[opEnqTx])
	}
	if c.args.IsMaster {
		return 0, argErr(hotOps[opEnqTx], "connection", "only a slave can enqueue rx buffers for tx")
	}
	l, q, err := c.hotTx(opEnqTx, qid)
	if err != nil {
		return 0, err
	}
	if count > 0 && bufs.meta.session != l {
		return 0, hotErrs[opEnqTx][ErrDisconnected] // rx buffers of a session that ended
	}
	r, err := c.burst(opEnqTx, l, q, func(claim C.int) C.uint64_t {
		return C.memifgo_buffer_enq_tx(l.h, l.guard, C.uint16_t(qid), batchArg(bufs), C.uint16_t(count), claim)
	})
	if err != nil {
		return 0, err
	}
	n, code := unpack(r)
	for i := range bufs.caps[:n] {
		bufs.caps[i] = l.bufferSize // a slave's buffers are whole
	}
	return n, hotErr(opEnqTx, code)
}

// BufferRequeue wraps memif_buffer_requeue (slave only): swap the
// descriptors of buffer i of a and buffer j of b, so a takes b's ring slot.
// Both must carry a queue: buffers from RxBurst or BufferEnqTx (libmemif's
// BufferAlloc leaves it unset, and libmemif would crash on it).
func (c *Conn) BufferRequeue(a *Buffers, i int, b *Buffers, j int) error {
	const op = "memif_buffer_requeue"
	if err := a.checkCount(op, i+1); err != nil || i < 0 {
		return argErr(op, "a", "index %d is outside the batch", i)
	}
	if err := b.checkCount(op, j+1); err != nil || j < 0 {
		return argErr(op, "b", "index %d is outside the batch", j)
	}
	if c == nil {
		return nilConnErr(op)
	}
	if c.args.IsMaster {
		return argErr(op, "connection", "only a slave can requeue buffers")
	}
	if a.b[i].queue == nil || b.b[j].queue == nil {
		return argErr(op, "buffers", "both must come from a burst or an allocation")
	}
	l, err := c.session(op)
	if err != nil {
		return err
	}
	l.lockAll()
	defer l.unlockAll()
	if l.down.Load() {
		return &Error{Op: op, Err: ErrDisconnected}
	}
	// It changes two queues' state: no owner may burst meanwhile (the next
	// bursts claim again, after unlockAll).
	if !l.quiesce(false) {
		return &Error{Op: op, Err: errNestedBurst}
	}
	a.caps[i], b.caps[j] = l.bufferSize, l.bufferSize // slave: whole buffers
	return codeErr(op, C.memif_buffer_requeue(c.h, &a.b[i], &b.b[j]))
}

// SetNextFreeBuffer wraps memif_set_next_free_buffer: the next BufferAlloc
// on tx queue qid starts at buffer i of bufs (to give back allocated but
// unsent buffers). libmemif v26.06 refuses it (ErrInvalArg) once 65536
// buffers were allocated on the queue in the session (it compares a 32-bit
// counter with a 16-bit index); ReleaseTx always works.
func (c *Conn) SetNextFreeBuffer(qid uint16, bufs *Buffers, i int) error {
	const op = "memif_set_next_free_buffer"
	if err := bufs.checkCount(op, i+1); err != nil || i < 0 {
		return argErr(op, "index", "%d is outside the batch", i)
	}
	l, q, err := c.hotTx(opTx, qid)
	if err != nil {
		return err
	}
	r, err := c.burst(opTx, l, q, func(claim C.int) C.uint64_t {
		return C.memifgo_set_next_free_buffer(l.h, l.guard, C.uint16_t(qid), C.uintptr_t(uintptr(unsafe.Pointer(&bufs.b[i]))), claim)
	})
	if err != nil {
		return err
	}
	_, code := unpack(r)
	return codeErr(op, C.int(code))
}

// ReleaseTx gives back every tx buffer of queue qid that was allocated
// (BufferAlloc, TxBurstAlloc, BufferEnqTx) and not sent: an application that
// abandons an allocation calls it so the queue does not stall on it. They
// reach the peer as empty buffers (no bytes: nothing stale), and every view
// of them dies here. n counts the buffers given back. A rejected TxBurst
// does the same by itself.
func (c *Conn) ReleaseTx(qid uint16) (n int, err error) {
	const op = "ReleaseTx"
	l, q, err := c.hotTx(opTx, qid)
	if err != nil {
		return 0, err
	}
	r, err := c.burst(opTx, l, q, func(claim C.int) C.uint64_t {
		return C.memifgo_tx_rollback(l.h, l.guard, C.uint16_t(qid), claim)
	})
	if err != nil {
		return 0, err
	}
	if left := r >> 16 & 0xffff; left != 0 {
		return int(r & 0xffff), &Error{Op: op, Err: fmt.Errorf("%d buffers could not be given back: %w", left, ErrNoConn)}
	}
	return int(r & 0xffff), nil
}

// masterSegment is the shortest buffer a master's argument checks assume
// its slave offers: minSegment. The protocol never tells a master its
// slave's buffer size; the guess from region sizes (negotiatedBufferSize)
// is far too large for a VPP slave in zero-copy, whose buffer region is its
// whole buffer pool, so it can bound lengths from above but never segments
// from below. In C each queue then learns a tighter bound from the slave's
// refilled buffers (memifgo_tx_seg), and the descriptor guard refuses
// buffers shorter than that.
func (l *link) masterSegment() int {
	return minSegment
}

// minSegment is the shortest buffer a master ever assumes.
const minSegment = 64

// checkAllocFits refuses one memif_buffer_alloc of count packets that could
// write past a batch of batch descriptors: libmemif writes one descriptor per
// segment, bounded only by the ring's free slots. Segments are the buffer
// size on a slave, but the slave's choice on a master (see masterSegment). A batch holding the whole ring always fits.
func (l *link) checkAllocFits(qid uint16, batch, count int, size uint16) error {
	if batch >= int(l.txRingSize[qid]) {
		return nil
	}
	seg := int(l.bufferSize)
	if l.master {
		seg = l.masterSegment()
	}
	if need := count * max((int(size)+seg-1)/seg, 1); need > batch {
		return argErr(hotOps[opAlloc], "count", "%d packets of %d bytes may need %d buffers, the batch has %d (a batch of the ring size, %d, always fits)",
			count, size, need, batch, l.txRingSize[qid])
	}
	return nil
}
