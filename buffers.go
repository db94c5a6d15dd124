//go:build linux && cgo

package memif

/*
#include "cgo_helpers.h"
*/
import "C"

import (
	"sync/atomic"
	"unsafe"
)

// MaxBurst is the largest batch: libmemif counts buffers in uint16.
const MaxBurst = 0xffff

// Buffers is a reusable batch of memif_buffer_t descriptors in C memory, one
// batch per queue and goroutine. Bursts fill it and read it; nothing is
// allocated per burst.
//
// # Lifetime of views
//
// Data returns a view straight into the connection's shared memory, not a
// copy. A view is valid only:
//   - after RxBurst: until the buffers are given back (RefillQueue, or the
//     next RefillRxBurst on that queue);
//   - after BufferAlloc or BufferEnqTx: until TxBurst sends them;
//   - and never after the link goes down (OnDisconnect returned) or the Conn
//     is deleted: the region is unmapped then.
//
// Copy what must outlive that (AppendPacket does). In a packet loop, take
// a Batch (Buffers.Batch) after the burst: the same views, checked once
// per batch instead of once per buffer.
//
// What the binding enforces: Data returns nil once the batch's session has
// ended and its memory is unmapped (OnDisconnect returned: one atomic load
// per call), View says why with ErrStaleView, and descriptors a peer wrote
// outside its regions are never returned (descriptors.go). What it cannot:
// a slice obtained before that still points into the unmapped memory, and a
// slice kept past RefillQueue or TxBurst sees the peer's next packet. So
// OnDisconnect must wait until no goroutine reads views of that connection
// (see README, "Disconnect"); until it returns, views stay mapped.
//
// Methods on a nil or freed batch, or with an index outside it, return
// zero values (nil, 0, false) or an *ArgError, never panic.
type Buffers struct {
	p      *C.memif_buffer_t
	b      []C.memif_buffer_t
	caps   []uint32 // bytes each tx buffer may hold, checked by TxBurst
	meta   *batchMeta
	parent *Buffers // keeps the memory of a Slice alive
	shared bool     // a Batch or Slice was made: Free leaves the memory to the cleanup
	m      *descMap // the mapping behind p (root batches)
}

// batchMeta is shared by a batch and its slices.
type batchMeta struct {
	// session is the link the batch was last filled on: a batch filled
	// before a reconnect is never sent or refilled on the new link.
	session *link
	// pend is how many received buffers Forward left at the front of the
	// batch, unrefilled, for its next call (forward.go).
	pend int
	// freed: the root batch was freed (Free, or detached for reuse): its
	// Slices are dead too.
	freed atomic.Bool
	cut   bool // see ChainCut
	// A cache line of its own (the 64-byte size class): bursts write
	// session, and the tx and rx batches of two threads were neighbours.
	_ [64 - 24]byte
}

// NewBuffers allocates a batch of n descriptors (1..MaxBurst). Free releases
// it; a batch that becomes unreachable is freed too.
func NewBuffers(n int) (*Buffers, error) {
	if n < 1 || n > MaxBurst {
		return nil, argErr("NewBuffers", "batch size", "%d is outside 1..%d", n, MaxBurst)
	}
	m, err := mapDesc(n)
	if err != nil {
		return nil, err
	}
	return m.batch(n), nil
}

// Cap is the number of descriptors in the batch.
func (b *Buffers) Cap() int {
	if b == nil {
		return 0
	}
	return len(b.b)
}

// live reports whether descriptor i exists and its view may be read: the
// batch's session, if any, has not ended.
func (b *Buffers) live(i int) bool {
	if b == nil || uint(i) >= uint(len(b.b)) {
		return false
	}
	if b.meta.freed.Load() { // a Slice of a freed (or reused) batch
		return false
	}
	s := b.meta.session
	return s == nil || !s.unmapped.Load()
}

// Data is buffer i's bytes in shared memory, len(Data) == Len(i). It is a
// view: see "Lifetime of views" above. nil once the session has ended (or
// for an index outside the batch); View says which.
func (b *Buffers) Data(i int) []byte {
	if !b.live(i) {
		if debugViews && b != nil && uint(i) < uint(len(b.b)) {
			panic("memif (memifdebug): Buffers.Data of a session that has ended: its shared memory is unmapped")
		}
		return nil
	}
	d := &b.b[i]
	return unsafe.Slice((*byte)(d.data), int(d.len))
}

// View is Data with the reason when there is no view: an *ArgError for a
// nil batch or an index outside it, ErrStaleView when the batch's session
// has ended.
func (b *Buffers) View(i int) ([]byte, error) {
	const op = "Buffers.View"
	if b == nil || b.p == nil {
		return nil, argErr(op, "buffers", "nil or freed batch")
	}
	if uint(i) >= uint(len(b.b)) {
		return nil, argErr(op, "index", "%d is outside the batch of %d", i, len(b.b))
	}
	if !b.live(i) {
		return nil, &Error{Op: op, Err: ErrStaleView}
	}
	return b.Data(i), nil
}

// Len is buffer i's length in bytes (0 outside the batch).
func (b *Buffers) Len(i int) int {
	if b == nil || uint(i) >= uint(len(b.b)) {
		return 0
	}
	return int(b.b[i].len)
}

// SetLen sets buffer i's length before TxBurst (for example to shrink a
// buffer BufferAlloc sized generously): 0 up to what BufferAlloc (or
// BufferEnqTx) gave the buffer; anything else is an *ArgError and leaves the
// length as it was.
func (b *Buffers) SetLen(i, n int) error {
	const op = "Buffers.SetLen"
	if b == nil || b.p == nil || b.meta.freed.Load() {
		return argErr(op, "buffers", "nil or freed batch")
	}
	if uint(i) >= uint(len(b.b)) {
		return argErr(op, "index", "%d is outside the batch of %d", i, len(b.b))
	}
	if n < 0 || uint64(n) > uint64(b.caps[i]) {
		return argErr(op, "length", "%d is outside 0..%d, what buffer %d was allocated with", n, b.caps[i], i)
	}
	b.b[i].len = C.uint32_t(n)
	return nil
}

// HasNext reports MEMIF_BUFFER_FLAG_NEXT: the packet continues in buffer
// i+1 (a chain, for packets longer than the buffer size).
func (b *Buffers) HasNext(i int) bool {
	if b == nil || uint(i) >= uint(len(b.b)) {
		return false
	}
	return b.b[i].flags&C.MEMIF_BUFFER_FLAG_NEXT != 0
}

// ChainCut reports that the last receive into the batch (RxBurst,
// RefillRxBurst, their waiting forms, Queue.Receive) dropped the rest of
// the chain an earlier burst ended in (HasNext of its last buffer): the
// guard refused a buffer of it (counted in DescriptorStats). That start is
// no packet: discard it; the batch's first packet is a new one.
func (b *Buffers) ChainCut() bool {
	return b != nil && b.meta != nil && b.meta.cut
}

// SetNext sets or clears MEMIF_BUFFER_FLAG_NEXT on buffer i (no-op outside
// the batch).
func (b *Buffers) SetNext(i int, next bool) {
	if b == nil || uint(i) >= uint(len(b.b)) || b.meta.freed.Load() {
		return
	}
	if next {
		b.b[i].flags |= C.MEMIF_BUFFER_FLAG_NEXT
	} else {
		b.b[i].flags &^= C.MEMIF_BUFFER_FLAG_NEXT
	}
}

// PacketEnd returns the index just past the packet that starts at buffer i
// among the first n buffers, following NEXT flags, and the packet's length.
// Use it to walk chained packets without copying. A burst can end inside a
// chain: when HasNext(end-1) is still true, the packet continues in the
// next burst.
func (b *Buffers) PacketEnd(i, n int) (end, size int) {
	if b == nil || i < 0 {
		return i, 0
	}
	n = min(n, len(b.b))
	for end = i; end < n; {
		size += int(b.b[end].len)
		end++
		if b.b[end-1].flags&C.MEMIF_BUFFER_FLAG_NEXT == 0 {
			break
		}
	}
	return end, size
}

// AppendPacket copies the packet starting at buffer i (chain included) to
// dst and returns it with the index of the next packet. As with PacketEnd,
// a chain cut by the end of the burst is only a part (HasNext(next-1)).
func (b *Buffers) AppendPacket(dst []byte, i, n int) ([]byte, int) {
	end, _ := b.PacketEnd(i, n)
	for j := max(i, 0); j < end; j++ {
		dst = append(dst, b.Data(j)...)
	}
	return dst, end
}

// Slice returns a batch over descriptors [from, to) of b, sharing its memory,
// so a burst can fill b from an offset (one packet's chain after another).
// Make slices once, outside the packet loop: each call allocates the small
// header. Free only the parent.
func (b *Buffers) Slice(from, to int) *Buffers {
	if b == nil || from < 0 || to > len(b.b) || from >= to {
		return nil // checkCount rejects a nil batch with a clear error
	}
	b.root().shared = true
	return &Buffers{p: &b.b[from], b: b.b[from:to], caps: b.caps[from:to], meta: b.meta, parent: b}
}

// root is the batch whose memory b's is (itself unless b is a Slice).
func (b *Buffers) root() *Buffers {
	for b.parent != nil {
		b = b.parent
	}
	return b
}

// Free releases the batch: later calls with it fail with an *ArgError. It
// must not be in use by a burst. Its Slices fail with it. Its descriptor
// memory is freed now, or, if a Batch or Slice was made from it, once the
// last of those is unreachable (they never see it unmapped).
func (b *Buffers) Free() {
	if b == nil || b.p == nil || b.parent != nil {
		return
	}
	b.detach().free()
}

// detach makes the root batch b unusable, and with it its Slices (they
// share meta), and returns its mapping, still mapped. b keeps pointing at
// the mapping: a Batch or Slice of b keeps it mapped through b.
func (b *Buffers) detach() *descMap {
	m := b.m
	m.shared = m.shared || b.shared
	b.p, b.b, b.caps = nil, nil, nil
	b.meta.freed.Store(true)
	return m
}

func (b *Buffers) checkCount(op string, count int) error {
	if b == nil || b.p == nil || b.meta.freed.Load() {
		return argErr(op, "buffers", "nil or freed batch")
	}
	if count < 0 || count > len(b.b) {
		return argErr(op, "count", "%d is outside the batch of %d", count, len(b.b))
	}
	return nil
}
