//go:build linux && cgo

package memif

/*
#include "cgo_helpers.h"
#include "regtable.h"
*/
import "C"

import "unsafe"

// useRegionTableAllocator makes libmemif allocate through regtable.c, whose
// realloc'd blocks (libmemif's region and queue tables) hold any 16-bit
// index: a peer that rewrites a descriptor's region index after the
// binding's check then makes libmemif read kernel zeroes, never past its
// table (regtable.h). SocketArgs has no allocator of its own, so this is
// internal: every socket gets it.
func useRegionTableAllocator(ca *C.memif_socket_args_t) {
	ca.alloc = (*C.memif_alloc_t)(C.memifgo_regtable_alloc)
	ca.realloc = (*C.memif_realloc_t)(C.memifgo_regtable_realloc)
	ca.free = (*C.memif_free_t)(C.memifgo_regtable_free)
}

// regionTable is, for tests, the realloc'd block starting with the pointer
// first (libmemif's region table starts with region 0's address) and its
// usable bytes; nil, 0 if no block does.
func regionTable(first unsafe.Pointer) (table unsafe.Pointer, reach uintptr) {
	reach = uintptr(C.memifgo_regtable_reach(first, &table))
	return table, reach
}

// regionTableReach is the least reach of every realloc'd block, and
// regionTableEntry the bound it allows each table entry.
const (
	regionTableReach = C.MEMIFGO_REGTABLE_REACH
	regionTableEntry = C.MEMIFGO_REGTABLE_ENTRY
)
