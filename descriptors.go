//go:build linux && cgo

package memif

/*
#include "cgo_helpers.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"
)

// Descriptors a peer hands us are checked on the hot path, in C
// (descriptors.h), against a per-session guard built here at connect: the
// session's regions (address and size from memif_get_details) and the rings
// in region 0. A bad rx descriptor is dropped with the rest of its packet
// (compacted out of the batch; its ring slot is still given back by the
// caller's refill count) and counted; a bad tx descriptor offered by a slave
// stops a master's allocation before it, with ErrBadDescriptor.

// ErrBadDescriptor reports that the peer offered a tx buffer outside its
// regions or buffer size (or shorter than the binding assumes): allocation
// stopped before it, and stays stopped there until the peer fixes it.
var ErrBadDescriptor = errors.New("memif: peer offered a bad tx descriptor (outside its region, buffer size or ring); allocation stops before it")

// ErrStaleTxBuffer reports a TxBurst of a buffer that is not the queue's
// next unsent allocation: sent already, allocated before an allocation that
// was given back, or not allocated on this queue.
var ErrStaleTxBuffer = errors.New("memif: not the next unsent tx allocation of this queue (sent twice, given back, or from elsewhere)")

// DescriptorStats are a queue pair's descriptor guard counters for the
// current session (they start at zero on every connect).
type DescriptorStats struct {
	// RxBadDescriptors counts rx descriptors that failed a check: region
	// index, data outside the region, length beyond the buffer size.
	RxBadDescriptors uint64
	// RxDropped counts rx buffers dropped: the bad ones and the rest of
	// their packets, and the empty ones. None of them was handed out.
	RxDropped uint64
	// RxEmpty counts rx buffers of length 0, dropped alone (they carry no
	// bytes; their packet is kept). A peer giving back tx allocations
	// (ReleaseTx, a rejected TxBurst) sends these.
	RxEmpty uint64
	// TxBadDescriptors counts tx descriptors the peer offered that failed a
	// check (repaired on a slave, refused on a master).
	TxBadDescriptors uint64
	// TxEmpty counts tx buffers given back to the peer empty: allocations
	// never sent (ReleaseTx, a rejected TxBurst) and, on a master, what an
	// allocation a racing slave made overrun its batch took (libmemif has
	// no way to return allocated buffers unsent).
	TxEmpty uint64
}

// DescriptorStats returns the descriptor guard counters of rx queue qid and
// tx queue qid (either may not exist; its counters are then 0).
func (c *Conn) DescriptorStats(qid uint16) (DescriptorStats, error) {
	const op = "DescriptorStats"
	var st DescriptorStats
	if c == nil {
		return st, argErr(op, "connection", "nil")
	}
	l, err := c.session(op)
	if err != nil {
		return st, err
	}
	if int(qid) >= max(len(l.rx), len(l.tx)) {
		return st, qidErr(op, qid, max(len(l.rx), len(l.tx)))
	}
	// No lock: the counters are C memory the owner writes and we only load
	// (whole, memifgo_guard_count); the guard lives as long as l.
	if int(qid) < len(l.rx) {
		st.RxBadDescriptors = uint64(C.memifgo_guard_count(l.guard, 0, C.uint16_t(qid), 0))
		st.RxDropped = uint64(C.memifgo_guard_count(l.guard, 0, C.uint16_t(qid), 1))
		st.RxEmpty = uint64(C.memifgo_guard_count(l.guard, 0, C.uint16_t(qid), 2))
	}
	if int(qid) < len(l.tx) {
		st.TxBadDescriptors = uint64(C.memifgo_guard_count(l.guard, 1, C.uint16_t(qid), 0))
		st.TxEmpty = uint64(C.memifgo_guard_count(l.guard, 1, C.uint16_t(qid), 2))
	}
	runtime.KeepAlive(l)
	return st, nil
}

// attachGuard gives l its guard, freed once l is unreachable: a burst
// that loaded l before a disconnect may still pass the guard to C (which
// then sees it down), so freeing it at disconnect would be a use after free.
func (l *link) attachGuard(g C.uintptr_t) {
	l.guard = g
	runtime.AddCleanup(l, func(g C.uintptr_t) { C.memifgo_guard_free(g) }, g)
}

// newGuard builds the C-side table the hot path checks descriptors with.
func newGuard(d *Details, master bool, bufSize, minSeg uint32) (C.uintptr_t, error) {
	m := C.uint8_t(0)
	if master {
		m = 1
	}
	g := C.memifgo_guard_new(m, C.uint16_t(len(d.RxQueues)), C.uint16_t(len(d.TxQueues)),
		C.uint32_t(len(d.Regions)), C.uint32_t(bufSize), C.uint32_t(minSeg))
	if g == 0 {
		return 0, ErrNoMem
	}
	for i, r := range d.Regions {
		C.memifgo_guard_region(g, C.uint32_t(i), C.uintptr_t(uintptr(r.Addr)), C.uint64_t(r.Size))
	}
	sizes := make([]C.uint32_t, 0, len(d.RxQueues)+len(d.TxQueues)+1)
	for _, q := range d.RxQueues {
		sizes = append(sizes, C.uint32_t(q.RingSize))
	}
	for _, q := range d.TxQueues {
		sizes = append(sizes, C.uint32_t(q.RingSize))
	}
	sizes = append(sizes, 0) // never empty
	p := (*C.uint32_t)(C.malloc(C.size_t(len(sizes)) * C.size_t(unsafe.Sizeof(C.uint32_t(0)))))
	if p == nil {
		C.memifgo_guard_free(g)
		return 0, ErrNoMem
	}
	copy(unsafe.Slice(p, len(sizes)), sizes)
	rc := C.memifgo_guard_layout(g, p)
	C.free(unsafe.Pointer(p))
	if rc == -2 {
		C.memifgo_guard_free(g)
		return 0, ErrNoMem
	}
	// rc == -1: rings not where the standard layout puts them; the
	// post-checks still guard every buffer handed out.
	return g, nil
}

// Guard codes (descriptors.h) a hot-path C call may return.
const (
	codeTxCount = C.MEMIFGO_ETXCOUNT
	codeTxStale = C.MEMIFGO_ETXSTALE
	codeBadDesc = C.MEMIFGO_EBADDESC
)

var errBadDescAlloc = &Error{Op: hotOps[opAlloc], Err: ErrBadDescriptor}

// txErr turns a rejected send into its error; the queue's unsent
// allocations were given back (sent empty) in C.
func txErr(op string, code int64, at int, bufs *Buffers) error {
	switch code {
	case codeTxCount:
		return argErr(op, "count", "%d buffers allocated and unsent on this queue, fewer than the count (unsent allocations were given back)", at)
	case codeTxStale:
		return &Error{Op: op, Err: fmt.Errorf("buffer %d (ring slot %d): %w (unsent allocations were given back)", at, bufs.b[at].desc_index, ErrStaleTxBuffer)}
	}
	return nil
}

// setTOCTOULength makes the master's allocations, after the first skip,
// find its tx descriptors rewritten to length n right after the pre-check
// (0: off), as a slave racing it could: tests only.
func (c *Conn) setTOCTOULength(n, skip uint32) {
	if l := c.link.Load(); l != nil && l.guard != 0 {
		C.memifgo_set_toctou_len(l.guard, C.uint32_t(n), C.uint32_t(skip))
	}
}

// setTOCTOURegion makes rx bursts (and a master's allocations) find the
// region index of every descriptor they checked rewritten to region right
// after the check (negative: off), as a racing peer could: tests only.
func (c *Conn) setTOCTOURegion(region int) {
	if l := c.link.Load(); l != nil && l.guard != 0 {
		C.memifgo_set_toctou_region(l.guard, C.uint32_t(region+1))
	}
}

// forgetRxRing makes rx queue qid's ring unknown to the guard, as when the
// peer's layout could not be verified: tests only, with no burst running.
func (c *Conn) forgetRxRing(qid uint16) {
	if l := c.link.Load(); l != nil && l.guard != 0 {
		C.memifgo_guard_forget_rx_ring(l.guard, C.uint16_t(qid))
	}
}

// ringDesc is memif_desc_t in shared memory: tests play a hostile peer by
// writing to it.
type ringDesc struct {
	Flags, Region            uint16
	Length, Offset, Metadata uint32
}

// ringDesc returns the descriptor of ring slot slot of tx or rx queue qid,
// nil if the link is down or the ring layout unknown. The caller must
// hold no queue lock and must not use it past the session.
func (c *Conn) ringDesc(tx bool, qid, slot uint16) *ringDesc {
	l := c.link.Load()
	if l == nil || l.guard == 0 {
		return nil
	}
	return (*ringDesc)(C.memifgo_guard_desc_addr(l.guard, ringDir(tx), C.uint16_t(qid), C.uint16_t(slot)))
}

// ringHead returns the head index field of a ring in shared memory (nil as
// ringDesc): tests play a hostile peer with it.
func (c *Conn) ringHead(tx bool, qid uint16) *uint16 {
	l := c.link.Load()
	if l == nil || l.guard == 0 {
		return nil
	}
	return (*uint16)(C.memifgo_guard_head_addr(l.guard, ringDir(tx), C.uint16_t(qid)))
}

// ringIndex returns the guard's mirrors of queue qid: rx next slot to
// receive and oldest not refilled; tx next free and next to send.
func (c *Conn) ringIndex(tx bool, qid uint16) (cur, rel uint16) {
	l, _ := c.session("ringIndex")
	if l == nil {
		return 0, 0
	}
	v := uint32(C.memifgo_guard_index(l.guard, ringDir(tx), C.uint16_t(qid))) // no lock: as DescriptorStats
	runtime.KeepAlive(l)
	return uint16(v >> 16), uint16(v)
}

// ringDir is the guard's name of a ring direction.
func ringDir(tx bool) C.int {
	if tx {
		return 1
	}
	return 0
}

// slot is buffer i's ring slot (memif_buffer_t.desc_index).
func (b *Buffers) slot(i int) uint16 { return uint16(b.b[i].desc_index) }
