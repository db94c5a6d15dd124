//go:build linux && cgo

package memif

/*
// memif_buffer_alloc and memif_refill_queue may call back into Go (an
// ExternalBufferOffsetter), so it is not nocallback.
#cgo noescape memifgo_forward
#cgo noescape memifgo_forward_wait
#include "cgo_helpers.h"
*/
import "C"

import (
	"errors"
	"time"
)

// The fused forward path: receive on one connection's rx queue, copy into
// another's (or the same one's) tx queue, send and refill, in one cgo
// crossing (forward.h).

const (
	opNameFwdRx = "memif_rx_burst+memif_refill_queue"
	opNameFwdTx = "memif_buffer_alloc+memif_tx_burst"
)

// ForwardError is an error of Forward or ForwardDrop that says which side
// failed: A's rx queue (receive, refill; Tx false) or B's tx queue
// (allocate, send; Tx true). Err is an *Error naming the libmemif calls;
// errors.Is(err, ErrDisconnected) and the like see through both.
type ForwardError struct {
	Tx  bool
	Err error
}

func (e *ForwardError) Error() string {
	side := "rx side (A)"
	if e.Tx {
		side = "tx side (B)"
	}
	msg := e.Err.Error()
	var me *Error
	if errors.As(e.Err, &me) {
		msg = me.Op + ": " + me.Err.Error()
	}
	return "memif: Forward, " + side + ": " + msg
}

func (e *ForwardError) Unwrap() error { return e.Err }

// fwdErrs holds one prebuilt error per side and code: a full or
// disconnected side allocates nothing.
var fwdErrs = func() (t [2][errMax + 1]*ForwardError) {
	for code := range t[0] {
		t[0][code] = &ForwardError{Err: &Error{Op: opNameFwdRx, Err: Errno(code)}}
		t[1][code] = &ForwardError{Tx: true, Err: &Error{Op: opNameFwdTx, Err: Errno(code)}}
	}
	return t
}()

var errFwdBadDesc = &ForwardError{Tx: true, Err: &Error{Op: opNameFwdTx, Err: ErrBadDescriptor}}

func fwdCode(tx bool, code int64) error {
	side := 0
	if tx {
		side = 1
	}
	if code > 0 && code <= int64(errMax) {
		return fwdErrs[side][code]
	}
	return &ForwardError{Tx: tx, Err: &Error{Op: [2]string{opNameFwdRx, opNameFwdTx}[side], Err: Errno(code)}}
}

// fwdWrap says which side an error of the queue lookup belongs to; the
// common one (a link down) is prebuilt.
func fwdWrap(tx bool, err error) error {
	if err == hotErrs[opRefillRx][ErrDisconnected] || err == hotErrs[opTx][ErrDisconnected] {
		return fwdCode(tx, int64(ErrDisconnected))
	}
	return &ForwardError{Tx: tx, Err: err}
}

// Bits of memifgo_forward's result (forward.h).
const (
	fwdTx   = C.MEMIFGO_FWD_TX
	fwdMore = C.MEMIFGO_FWD_MORE
	fwdBad  = C.MEMIFGO_FWD_EBADDESC
)

// Forward moves packets from rx queue rxq of c (A) to tx queue txq of to
// (B) in one cgo crossing: it receives a burst into rx, allocates tx
// buffers on B for every complete packet (chained when longer than B's
// buffer size; A's chains are reassembled), copies, sends, and gives A's
// buffers back. to may be c (hairpin, on the same or another queue id).
// pkts counts packets sent; 0 allocations.
//
// Backpressure, not loss: packets B cannot take now (its ring is full) stay
// in rx, received and not refilled, and the next Forward sends them first;
// while they wait rx takes fewer new buffers, and once it is full A's ring
// fills and A's peer is held back. Pending says how many buffers wait;
// ForwardDrop gives them up. An open chain waits in rx for its rest; one
// longer than rx's capacity is dropped. more reports that A has more
// packets or some wait in rx: call again without parking.
//
// dropped counts A's buffers dropped in this call: what the descriptor
// guard refused (as in RxBurst, also in DescriptorStats), packets of one
// empty buffer, packets longer than 65535 bytes (which memif cannot carry),
// needing more buffers than tx holds or, with tx of B's whole ring, more
// than that ring can hold, and pending buffers of a session of A that
// ended. Each is counted once: the rest of a chain whose start ForwardDrop
// gave up is dropped as it arrives and not counted here (ForwardDrop
// counted the packet). Nothing else is lost. A slave of B racing
// the allocation (ErrBadDescriptor, Tx true) costs nothing either: the
// packets copied before it go out, the raced one waits.
//
// rx is Forward's own: sized as an RxBurst batch, and between Forward
// calls no other burst or refill may use A's queue rxq (the pending
// buffers are its oldest unrefilled ones). tx is scratch for B's
// descriptors (a batch of B's tx ring size avoids the master's worst-case
// segment bound, as in CopyTx). Errors are *ForwardError: which side, and
// why; with B down (ErrDisconnected, Tx true) nothing was received and
// the pending packets wait for B's next link or ForwardDrop.
//
// Locking: none on the common path. As RxBurst and TxBurst, Forward runs as
// the owner of A's rx queue and B's tx queue (own.h), which the calling
// thread stays after its first call. A call that must claim them (the
// first on a thread, or after another thread used either) takes both
// queues' mutexes in the one order every path takes queue mutexes in (by
// link, then within a link rx queues before tx queues by index, as a
// disconnect's link.lockAll), so forwarders in opposite directions, A to B
// and B to A, and disconnects of either link never wait in a cycle.
func (c *Conn) Forward(rxq uint16, to *Conn, txq uint16, rx, tx *Buffers) (pkts, dropped int, more bool, err error) {
	return c.forward(rxq, to, txq, rx, tx, 0, false, false)
}

// forward is Forward, or with wait the waiting forward (fwdwait.go).
func (c *Conn) forward(rxq uint16, to *Conn, txq uint16, rx, tx *Buffers, spin time.Duration, wait, noarm bool) (pkts, dropped int, more bool, err error) {
	if err := rx.checkCount(opNameFwdRx, 0); err != nil {
		return 0, 0, false, &ForwardError{Err: err}
	}
	if err := tx.checkCount(opNameFwdTx, 0); err != nil {
		return 0, 0, false, &ForwardError{Tx: true, Err: err}
	}
	if rx.meta == tx.meta {
		return 0, 0, false, &ForwardError{Tx: true, Err: argErr(opNameFwdTx, "tx", "the rx batch (or a slice of it): Forward needs two batches")}
	}
	if len(rx.b) > C.MEMIFGO_FWD_MAXRX {
		return 0, 0, false, &ForwardError{Err: argErr(opNameFwdRx, "rx", "a batch of %d buffers: Forward takes at most %d (no ring is longer)", len(rx.b), C.MEMIFGO_FWD_MAXRX)}
	}
	la, qa, err := c.hotRx(opRefillRx, rxq)
	if err != nil {
		return 0, 0, false, fwdWrap(false, err)
	}
	m := rx.meta
	if m.session != la {
		dropped, m.pend = m.pend, 0 // they went with A's session that ended
		m.session = la
	}
	if m.pend > len(rx.b) { // a slice of the batch that holds them
		return 0, dropped, true, &ForwardError{Err: argErr(opNameFwdRx, "rx", "%d buffers wait in the batch, this one holds %d", m.pend, len(rx.b))}
	}
	lb, qb, err := to.hotTx(opTx, txq)
	if err != nil {
		return 0, dropped, m.pend > 0, fwdWrap(true, err)
	}
	// CopyTx's segment bound: none when tx holds B's whole ring; on a
	// master the slave chose the segments (minSegment at least).
	seg := uint32(0)
	if len(tx.b) < int(lb.txRingSize[txq]) {
		seg = lb.bufferSize
		if to.args.IsMaster || seg == 0 {
			seg = minSegment
		}
	}
	pend := m.pend
	res, err := c.burst2(opRefillRx, la, qa, lb, qb, func(claim C.int) C.uint64_t {
		if wait {
			return C.memifgo_forward_wait(la.h, la.guard, C.uint16_t(rxq), C.uint16_t(c.args.RxHeadroom),
				batchArg(rx), C.uint32_t(len(rx.b)), C.uint32_t(pend),
				lb.h, lb.guard, C.uint16_t(txq), batchArg(tx), C.uint32_t(len(tx.b)), C.uint32_t(seg),
				spinArg(spin), boolArg(noarm), claim)
		}
		return C.memifgo_forward(la.h, la.guard, C.uint16_t(rxq), C.uint16_t(c.args.RxHeadroom),
			batchArg(rx), C.uint32_t(len(rx.b)), C.uint32_t(pend),
			lb.h, lb.guard, C.uint16_t(txq), batchArg(tx), C.uint32_t(len(tx.b)), C.uint32_t(seg), claim)
	})
	if err != nil {
		if c.link.Load() == la && errors.Is(err, ErrDisconnected) { // A is up: B went down
			return 0, dropped, m.pend > 0, fwdWrap(true, to.downErr(opTx))
		}
		return 0, dropped, m.pend > 0, fwdWrap(false, err)
	}
	r := uint64(res)
	tx.meta.session = lb
	pkts, m.pend = int(r&0xffff), int(r>>16&0xffff)
	if wait && pkts == 0 {
		qa.weigh(spin) // it waited in C
	}
	dropped += int(r >> 48 & 0x3fff)
	code, flags := int64(r>>32&0xffff), r>>62
	more = flags&fwdMore != 0
	switch {
	case code == fwdBad:
		err = errFwdBadDesc
	case code != 0:
		err = fwdCode(flags&fwdTx != 0, code)
	}
	return pkts, dropped, more, err
}

// Pending is the number of buffers Forward left in this batch for its next
// call: received, not yet sent to B, not refilled (0 for other batches).
func (b *Buffers) Pending() int {
	if b == nil || b.meta == nil {
		return 0
	}
	return b.meta.pend
}

// ForwardDrop gives up the packets Forward left pending in rx (see
// Forward): their buffers go back to A's rx queue rxq, counted as dropped
// (DescriptorStats.RxDropped). pkts counts them, an open chain as one (its
// rest is dropped as it arrives, its buffers in RxDropped, the packet not
// again in Forward's dropped). For a forwarder that will not wait for B.
func (c *Conn) ForwardDrop(rxq uint16, rx *Buffers) (pkts int, err error) {
	if err := rx.checkCount(opNameFwdRx, 0); err != nil {
		return 0, &ForwardError{Err: err}
	}
	m := rx.meta
	if m.pend == 0 {
		return 0, nil
	}
	l, q, err := c.hotRx(opRefillRx, rxq)
	if err != nil && !errors.Is(err, ErrDisconnected) && !errors.Is(err, ErrDeleted) {
		return 0, fwdWrap(false, err)
	}
	n := m.pend
	gone := l == nil || m.session != l // the buffers went with the session that ended
	if n > len(rx.b) {
		if !gone {
			return 0, &ForwardError{Err: argErr(opNameFwdRx, "rx", "%d buffers wait in the batch, this one holds %d", n, len(rx.b))}
		}
		n = len(rx.b)
	}
	for i := range rx.b[:n] {
		if !rx.HasNext(i) {
			pkts++
		}
	}
	open := 0
	if rx.HasNext(n - 1) {
		open = 1
		pkts++
	}
	if gone { // counted all the same
		m.pend = 0
		return pkts, nil
	}
	r, err := c.burst(opRefillRx, l, q, func(claim C.int) C.uint64_t {
		return C.memifgo_fwd_drop(l.h, l.guard, C.uint16_t(rxq), C.uint16_t(c.args.RxHeadroom), C.uint32_t(n), C.int(open), claim)
	})
	if err != nil {
		return 0, fwdWrap(false, err)
	}
	m.pend = 0
	_, code := unpack(r)
	if code != 0 {
		return pkts, fwdCode(false, int64(code))
	}
	return pkts, nil
}
