//go:build linux && cgo

package memif

/*
// All three may call back into Go (memif_buffer_alloc and
// memif_refill_queue ask an ExternalBufferOffsetter), so none is nocallback.
#cgo noescape memifgo_tx_alloc
#cgo noescape memifgo_copy_tx
#cgo noescape memifgo_copy_rx
#include "cgo_helpers.h"
*/
import "C"

import (
	"errors"
	"math"
	"time"
	"unsafe"
)

// Fused fast paths: each is one cgo crossing per burst and allocates
// nothing. Handles and batches cross as integers (see cgo_helpers.h): a
// pointer-typed argument costs a cgoCheckPointer per call. The Go slices
// passed to C escape (cgo keeps arguments of a C call that may call back on
// the heap): reuse them across calls, as the examples do.

const (
	opNameTxAlloc = "memif_tx_burst+memif_buffer_alloc"
	opNameCopyTx  = "memif_buffer_alloc+memif_tx_burst"
	opNameCopyRx  = "memif_rx_burst+memif_refill_queue"
)

// ErrPartialChain reports that the last packet CopyRx returned is the start
// of a chained packet whose rest did not fit in dst or has not been published
// by the peer yet: the first packet of the next CopyRx on the queue continues
// it.
var ErrPartialChain = errors.New("memif: chained packet continues in the next CopyRx")

// ErrOversizedBuffer reports that the peer handed over a buffer that failed
// the descriptor checks (longer than the negotiated buffer size, empty, or
// outside its region); CopyRx dropped that packet and counted it
// (DescriptorStats).
var ErrOversizedBuffer = errors.New("memif: peer buffer beyond the buffer size or outside its region, packet dropped")

// ErrChainCut reports that CopyRx dropped the rest of the chain whose start
// the previous CopyRx returned (with ErrPartialChain): a buffer of it failed
// the descriptor checks (so it comes with ErrOversizedBuffer). Discard that
// start: this call's first packet is a new one.
var ErrChainCut = errors.New("memif: the rest of the partial chain was dropped, discard its start")

// rxCond is what CopyRx reports about the packets it returned: one or more
// of ErrOversizedBuffer, ErrChainCut and ErrPartialChain, each matched by
// errors.Is (they can come together).
type rxCond uint8

const (
	rxBig rxCond = 1 << iota
	rxCut
	rxPartial
)

var rxConds = [...]error{ErrOversizedBuffer, ErrChainCut, ErrPartialChain}

func (c rxCond) Error() string {
	msg := ""
	for i, e := range rxConds {
		if c&(1<<i) != 0 {
			if msg != "" {
				msg += "; "
			}
			msg += e.Error()
		}
	}
	return msg
}

func (c rxCond) Is(target error) bool {
	for i, e := range rxConds {
		if c&(1<<i) != 0 && target == e {
			return true
		}
	}
	return false
}

// copyRxErrs holds CopyRx's error for every rxCond, prebuilt.
var copyRxErrs = func() (t [rxPartial << 1]*Error) {
	for c := range t[1:] {
		t[c+1] = &Error{Op: opNameCopyRx, Err: rxCond(c + 1)}
	}
	return t
}()

// Bits of a fused result (MEMIFGO_FP in cgo_helpers.h).
const (
	fpTx      = C.MEMIFGO_FP_TX
	fpMore    = C.MEMIFGO_FP_MORE
	fpPartial = C.MEMIFGO_FP_PARTIAL
	fpBig     = C.MEMIFGO_FP_BIG
	fpCut     = C.MEMIFGO_FP_CUT
	fpBadLen  = C.MEMIFGO_EBADLEN
	fpBadPkt  = C.MEMIFGO_EBADPKT
	fpBatch   = C.MEMIFGO_EBATCH
)

func unpackFP(r C.uint64_t) (a, b int, code int64, flags int) {
	return int(r & 0xffff), int(r >> 16 & 0xffff), int64(r >> 32 & 0xffff), int(r >> 48 & 0xff)
}

func handleArg(c *Conn) C.uintptr_t   { return C.uintptr_t(uintptr(c.h)) }
func batchArg(b *Buffers) C.uintptr_t { return C.uintptr_t(uintptr(unsafe.Pointer(b.p))) }

// TxBurstAlloc sends bufs[0:n] on tx queue qid (memif_tx_burst) and then
// allocates count packets of size bytes into bufs from index 0
// (memif_buffer_alloc), in one cgo crossing: the pipelined zero-copy
// transmit loop (write into the buffers of one call, send them with the
// next). n may be 0 (first call) and count may be 0 (last call). Views of the
// sent buffers die here; allocated counts buffers, as BufferAlloc's n. If
// the send fails nothing is allocated and err names memif_tx_burst; a full
// ring returns the buffers allocated with ErrNoBufRing. Allocation is
// bounded as in BufferAlloc (on a master, give a batch of the ring size to
// allocate count packets at once).
func (c *Conn) TxBurstAlloc(qid uint16, bufs *Buffers, n, count int, size uint16) (sent, allocated int, err error) {
	if err := bufs.checkCount(hotOps[opTx], n); err != nil {
		return 0, 0, err
	}
	if err := bufs.checkCount(hotOps[opAlloc], count); err != nil {
		return 0, 0, err
	}
	l, q, err := c.hotTx(opTx, qid)
	if err != nil {
		return 0, 0, err
	}
	if n > 0 && bufs.meta.session != l {
		return 0, 0, hotErrs[opTx][ErrDisconnected] // buffers of a session that ended
	}
	// BufferAlloc's bounds: on a master with a batch smaller than the ring,
	// packet by packet for the worst case of minSegment-byte segments.
	worst := 0
	if count > 0 {
		if c.args.IsMaster && len(bufs.b) < int(l.txRingSize[qid]) {
			if worst = max((int(size)+minSegment-1)/minSegment, 1); worst > len(bufs.b) {
				return 0, 0, argErr(hotOps[opAlloc], "size", "a %d-byte packet may take %d buffers on a master, the batch has %d (a batch of the ring size, %d, always fits)",
					size, worst, len(bufs.b), l.txRingSize[qid])
			}
		} else if err := l.checkAllocFits(qid, len(bufs.b), count, size); err != nil {
			return 0, 0, err
		}
	}
	r, err := c.burst(opTx, l, q, func(claim C.int) C.uint64_t {
		return C.memifgo_tx_alloc(l.h, l.guard, C.uint16_t(qid), batchArg(bufs),
			(*C.uint32_t)(unsafe.Pointer(&bufs.caps[0])), C.uint16_t(len(bufs.b)), C.uint16_t(n),
			C.uint16_t(count), C.uint16_t(size), C.uint16_t(worst), claim)
	})
	if err != nil {
		return 0, 0, err
	}
	bufs.meta.session = l
	allocated, sent, code, flags := unpackFP(r)
	switch {
	case code == fpBadLen:
		return 0, 0, argErr(hotOps[opTx], "length", "buffer %d holds %d bytes, it was allocated with %d (unsent allocations were given back)",
			sent, bufs.b[sent].len, bufs.caps[sent])
	case flags&fpTx != 0 && code >= codeTxCount:
		return 0, 0, txErr(hotOps[opTx], code, sent, bufs)
	case flags&fpTx != 0:
		return sent, 0, hotErr(opTx, code)
	case code == codeBadDesc:
		return sent, allocated, errBadDescAlloc
	}
	return sent, allocated, hotErr(opAlloc, code)
}

// CopyTx copies packets from Go memory into newly allocated tx buffers of
// queue qid and sends them, in one cgo crossing: packet i is
// data[offs[i]:offs[i+1]], 1..65535 bytes, for i < len(offs)-1 (at most
// 65535 packets). Packets longer than the buffer size are chained. bufs is
// scratch for the descriptors (on a master, a batch of the ring size avoids
// BufferAlloc's worst-case bound); n packets are sent, the first n. n is
// short when the batch is full (nil error: call again with the rest) or the
// ring is (ErrNoBufRing). One flat slice with offsets keeps Go pointers out
// of C.
func (c *Conn) CopyTx(qid uint16, bufs *Buffers, data []byte, offs []int32) (n int, err error) {
	if err := bufs.checkCount(opNameCopyTx, 0); err != nil {
		return 0, err
	}
	npkts := len(offs) - 1
	if npkts < 0 || npkts > MaxBurst {
		return 0, argErr(opNameCopyTx, "offs", "%d offsets make %d packets, outside 0..%d", len(offs), npkts, MaxBurst)
	}
	if npkts == 0 {
		return 0, nil
	}
	if len(data) == 0 || len(data) > math.MaxInt32 {
		return 0, argErr(opNameCopyTx, "data", "%d bytes is outside 1..%d", len(data), math.MaxInt32)
	}
	l, q, err := c.hotTx(opTx, qid)
	if err != nil {
		return 0, err
	}
	// checkAllocFits' segment bound: none when the batch holds the whole
	// ring; on a master the slave chose the segments (minSegment at least).
	seg := uint32(0)
	if len(bufs.b) < int(l.txRingSize[qid]) {
		seg = l.bufferSize
		if c.args.IsMaster || seg == 0 {
			seg = minSegment
		}
	}
	r, err := c.burst(opTx, l, q, func(claim C.int) C.uint64_t {
		return C.memifgo_copy_tx(l.h, l.guard, C.uint16_t(qid), batchArg(bufs), C.uint32_t(len(bufs.b)),
			(*C.uint8_t)(unsafe.Pointer(&data[0])), C.uint32_t(len(data)),
			(*C.int32_t)(unsafe.Pointer(&offs[0])), C.uint32_t(npkts), C.uint32_t(seg), claim)
	})
	if err != nil {
		return 0, err
	}
	n, bad, code, flags := unpackFP(r)
	switch {
	case code == fpBadPkt:
		return 0, argErr(opNameCopyTx, "offs", "packet %d is data[%d:%d] of %d bytes (packets are 1..65535 bytes inside data)",
			bad, offs[bad], offs[bad+1], len(data))
	case code == fpBatch:
		size := int(offs[bad+1] - offs[bad])
		return 0, argErr(opNameCopyTx, "bufs", "packet %d of %d bytes may take %d buffers, the batch has %d (a batch of the ring size, %d, always fits)",
			bad, size, (size+int(seg)-1)/int(seg), len(bufs.b), l.txRingSize[qid])
	case flags&fpTx != 0 && code >= codeTxCount:
		return 0, txErr(hotOps[opTx], code, 0, bufs)
	case flags&fpTx != 0:
		return n, hotErr(opTx, code)
	case code == codeBadDesc:
		return n, &Error{Op: opNameCopyTx, Err: ErrBadDescriptor}
	}
	return n, hotErr(opAlloc, code)
}

// CopyRx receives from rx queue qid, copies the packets back to back into
// dst and gives the buffers straight back to the ring (refilled with
// ConnArgs.RxHeadroom), in one cgo crossing: packet i is
// dst[offs[i]:offs[i+1]] for i < n, offs[0] = 0. No view outlives the call;
// bufs is scratch for the descriptors. It takes at most one batch of
// buffers, fewer when dst cannot hold that many full buffers, plus what
// completes a chain; more reports packets left waiting. Size dst to
// bufs.Cap() buffers plus the largest packet.
//
// Chains are reassembled. If the last packet's chain cannot complete (dst
// is full, or the peer has not published the rest yet) its start is packet
// n-1 and err is ErrPartialChain: append the next call's first packet to it,
// unless that call's err is also ErrChainCut (the rest was dropped: discard
// the start). A packet the peer wrote beyond its buffer size is dropped with
// ErrOversizedBuffer. These can come together: test each with errors.Is.
// CopyRxWait also waits for packets, inside C.
func (c *Conn) CopyRx(qid uint16, bufs *Buffers, dst []byte, offs []int32) (n int, more bool, err error) {
	return c.copyRx(qid, bufs, dst, offs, 0, false)
}

// copyRx is CopyRx, or CopyRxWait when wait is set.
func (c *Conn) copyRx(qid uint16, bufs *Buffers, dst []byte, offs []int32, spin time.Duration, wait bool) (n int, more bool, err error) {
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
	// Bound of one buffer; unknown on a master whose peer's layout hides
	// it, then any libmemif length.
	seg := l.bufferSize
	if seg == 0 {
		seg = 0xffff
	}
	if uint64(len(dst)) < uint64(seg) {
		return 0, false, argErr(opNameCopyRx, "dst", "%d bytes cannot hold one %d-byte buffer", len(dst), seg)
	}
	r, err := c.burst(opRefillRx, l, q, func(claim C.int) C.uint64_t {
		d, dn := (*C.uint8_t)(unsafe.Pointer(&dst[0])), C.uint32_t(min(len(dst), math.MaxInt32))
		o, on := (*C.int32_t)(unsafe.Pointer(&offs[0])), C.uint32_t(min(len(offs)-1, MaxBurst))
		if wait {
			return C.memifgo_copy_rx_wait(l.h, l.guard, C.uint16_t(qid), batchArg(bufs), C.uint32_t(len(bufs.b)),
				C.uint16_t(c.args.RxHeadroom), d, dn, o, on, C.uint32_t(seg), spinArg(spin), claim)
		}
		return C.memifgo_copy_rx(l.h, l.guard, C.uint16_t(qid), batchArg(bufs), C.uint32_t(len(bufs.b)),
			C.uint16_t(c.args.RxHeadroom), d, dn, o, on, C.uint32_t(seg), claim)
	})
	if err != nil {
		return 0, false, err
	}
	n, _, code, flags := unpackFP(r)
	if wait && n == 0 {
		q.weigh(spin) // it waited in C
	}
	more = flags&(fpMore|fpPartial) != 0
	if code != 0 {
		return n, more, hotErr(opRefillRx, code)
	}
	var cond rxCond
	if flags&fpBig != 0 {
		cond |= rxBig
	}
	if flags&fpCut != 0 {
		cond |= rxCut
	}
	if flags&fpPartial != 0 {
		cond |= rxPartial
	}
	if cond != 0 {
		return n, more, copyRxErrs[cond]
	}
	return n, more, nil
}
