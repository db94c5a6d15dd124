//go:build linux && cgo

package memif

/*
#include "cgo_helpers.h"
*/
import "C"

import (
	"runtime"
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
// Copy what must outlive that (AppendPacket does).
type Buffers struct {
	p       *C.memif_buffer_t
	b       []C.memif_buffer_t
	caps    []uint32 // bytes each tx buffer may hold, checked by TxBurst
	meta    *batchMeta
	cleanup runtime.Cleanup
	parent  *Buffers // keeps the memory of a Slice alive
}

// batchMeta is shared by a batch and its slices.
type batchMeta struct {
	// session is the link the batch was last filled on: a batch filled
	// before a reconnect is never sent or refilled on the new link.
	session *link
}

// NewBuffers allocates a batch of n descriptors (1..MaxBurst). Free releases
// it; a batch that becomes unreachable is freed too.
func NewBuffers(n int) (*Buffers, error) {
	if n < 1 || n > MaxBurst {
		return nil, argErr("NewBuffers", "batch size", "%d is outside 1..%d", n, MaxBurst)
	}
	p := (*C.memif_buffer_t)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.memif_buffer_t{}))))
	if p == nil {
		return nil, &Error{Op: "NewBuffers", Err: ErrNoMem}
	}
	b := &Buffers{p: p, b: unsafe.Slice(p, n), caps: make([]uint32, n), meta: &batchMeta{}}
	b.cleanup = runtime.AddCleanup(b, func(p *C.memif_buffer_t) { C.free(unsafe.Pointer(p)) }, p)
	return b, nil
}

// Cap is the number of descriptors in the batch.
func (b *Buffers) Cap() int { return len(b.b) }

// Data is buffer i's bytes in shared memory, len(Data) == Len(i). It is a
// view: see "Lifetime of views" above.
func (b *Buffers) Data(i int) []byte {
	d := &b.b[i]
	return unsafe.Slice((*byte)(d.data), int(d.len))
}

// Len is buffer i's length in bytes.
func (b *Buffers) Len(i int) int { return int(b.b[i].len) }

// SetLen sets buffer i's length before TxBurst (for example to shrink a
// buffer BufferAlloc sized generously). TxBurst rejects a length beyond what
// BufferAlloc gave the buffer.
func (b *Buffers) SetLen(i, n int) { b.b[i].len = C.uint32_t(n) }

// HasNext reports MEMIF_BUFFER_FLAG_NEXT: the packet continues in buffer
// i+1 (a chain, for packets longer than the buffer size).
func (b *Buffers) HasNext(i int) bool { return b.b[i].flags&C.MEMIF_BUFFER_FLAG_NEXT != 0 }

// SetNext sets or clears MEMIF_BUFFER_FLAG_NEXT on buffer i.
func (b *Buffers) SetNext(i int, next bool) {
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
	for j := i; j < end; j++ {
		dst = append(dst, b.Data(j)...)
	}
	return dst, end
}

// Slice returns a batch over descriptors [from, to) of b, sharing its memory,
// so a burst can fill b from an offset (one packet's chain after another).
// Make slices once, outside the packet loop: each call allocates the small
// header. Free only the parent.
func (b *Buffers) Slice(from, to int) *Buffers {
	if from < 0 || to > len(b.b) || from >= to {
		return nil // checkCount rejects a nil batch with a clear error
	}
	return &Buffers{p: &b.b[from], b: b.b[from:to], caps: b.caps[from:to], meta: b.meta, parent: b}
}

// Free releases the batch. It must not be in use by a burst.
func (b *Buffers) Free() {
	if b.p != nil && b.parent == nil {
		b.cleanup.Stop()
		C.free(unsafe.Pointer(b.p))
		b.p, b.b, b.caps = nil, nil, nil
	}
}

func (b *Buffers) checkCount(op string, count int) error {
	if b == nil || b.p == nil {
		return argErr(op, "buffers", "nil or freed batch")
	}
	if count < 0 || count > len(b.b) {
		return argErr(op, "count", "%d is outside the batch of %d", count, len(b.b))
	}
	return nil
}
