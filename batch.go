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

// Batch is the per-burst accessor of a Buffers batch: its first n buffers,
// checked once when it is made, so a packet loop indexes them as C would
// (`for i := range v.Len()` compiles to one bounds check per batch).
// Get one after each burst with Buffers.Batch(n) into a variable; it is a
// small value, not an allocation. Its methods take a pointer: a method on
// the value made the compiler copy it at every call in a packet loop (a
// store-forwarding stall per packet, measured). The lifetime rules of views are Buffers' (see "Lifetime of
// views"): Data returns nil once the batch's session has ended. A Batch
// keeps its Buffers' descriptor memory alive, even past Free.
type Batch struct {
	d    []C.memif_buffer_t
	gone *atomic.Bool // the session's unmapped flag (noSession: an empty Batch)
	keep *Buffers
}

// noSession is the flag of an empty Batch: never set.
var noSession atomic.Bool

// Batch returns the accessor of buffers [0, n) (n clipped to the batch).
// A nil or freed batch, or one no burst has filled yet, gives an empty
// Batch: a Batch follows the session of the burst before it, and without
// one it would have no flag to go dead with when a later burst's session
// ends.
func (b *Buffers) Batch(n int) Batch {
	if b == nil || b.p == nil || b.meta.freed.Load() || n <= 0 || b.meta.session == nil {
		return Batch{gone: &noSession}
	}
	n = min(n, len(b.b))
	if r := b.root(); !r.shared {
		r.shared = true
	}
	return Batch{d: b.b[:n:n], gone: &b.meta.session.unmapped, keep: b}
}

// Len is the number of buffers in the batch.
func (v *Batch) Len() int { return len(v.d) }

// Data is buffer i's bytes in shared memory (a view): nil once the session
// has ended, or for i outside [0, Len()). In a loop over [0, Len()) the
// compiler drops the index check.
func (v *Batch) Data(i int) []byte {
	if uint(i) >= uint(len(v.d)) || v.gone.Load() {
		return nil
	}
	d := &v.d[i]
	return unsafe.Slice((*byte)(d.data), int(d.len))
}

// Size is buffer i's length in bytes (0 outside the batch).
func (v *Batch) Size(i int) int {
	if uint(i) >= uint(len(v.d)) {
		return 0
	}
	return int(v.d[i].len)
}

// HasNext reports that the packet continues in buffer i+1 (a chain).
func (v *Batch) HasNext(i int) bool {
	return uint(i) < uint(len(v.d)) && v.d[i].flags&C.MEMIF_BUFFER_FLAG_NEXT != 0
}
