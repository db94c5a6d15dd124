//go:build linux && cgo

package memif

/*
#include "cgo_helpers.h"
*/
import "C"

import (
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// descMap is the mapping that holds a root batch's descriptors. Batches
// made over it one after another (reuse) share it; the cleanup unmaps it
// once none of them, and no Batch or Slice of one, is reachable.
type descMap struct {
	mem     []byte
	cleanup runtime.Cleanup
	shared  bool // a batch over it was shared (Batch, Slice): only the cleanup unmaps
}

// descMaps counts the descriptor mappings not unmapped yet (tests bound it).
var descMaps atomic.Int64

const bufDescSize = int(unsafe.Sizeof(C.memif_buffer_t{}))

// mapDesc maps room for n descriptors and MEMIFGO_SLACK more: room for
// libmemif's worst case on a master whose slave races the pre-check
// (descriptors.h). Anonymous pages come zeroed on first touch: unused, the
// slack costs address space only (calloc would zero it whenever it reuses
// heap).
func mapDesc(n int) (*descMap, error) {
	mem, err := unix.Mmap(-1, 0, (n+C.MEMIFGO_SLACK)*bufDescSize,
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, &Error{Op: "NewBuffers", Err: ErrNoMem}
	}
	descMaps.Add(1)
	m := &descMap{mem: mem}
	m.cleanup = runtime.AddCleanup(m, unmapDesc, mem)
	return m, nil
}

func unmapDesc(mem []byte) {
	if unix.Munmap(mem) == nil {
		descMaps.Add(-1)
	}
}

// batch is a new root batch over the first n descriptors of m.
func (m *descMap) batch(n int) *Buffers {
	p := (*C.memif_buffer_t)(unsafe.Pointer(&m.mem[0]))
	return &Buffers{p: p, b: unsafe.Slice(p, n), caps: make([]uint32, n), meta: &batchMeta{}, m: m}
}

// reuse returns a batch of n descriptors (1..MaxBurst) over m, zeroed as a
// new mapping, once the batch over m before it is detached and its session
// has ended: that batch's Batches and Slices then return no views (their
// session's flag, or freed, says so) and fail in bursts; their Len and
// HasNext read the new batch's descriptors, which point into no memory
// they could read. If m cannot hold n, m is freed and a new batch is made.
func (m *descMap) reuse(n int) (*Buffers, error) {
	if n < 1 || n > MaxBurst || n+C.MEMIFGO_SLACK > len(m.mem)/bufDescSize {
		m.free()
		return NewBuffers(n)
	}
	// The last link's descriptors point into its unmapped regions.
	if unix.Madvise(m.mem, unix.MADV_DONTNEED) != nil {
		clear(m.mem)
	}
	return m.batch(n), nil
}

// free unmaps m now unless a Batch or Slice may still point into it; then
// the cleanup does, once they are unreachable.
func (m *descMap) free() {
	if !m.shared && m.mem != nil {
		m.cleanup.Stop()
		unmapDesc(m.mem)
		m.mem = nil
	}
}
