// regtable.h: the allocator every memif socket of the binding hands libmemif
// (memif_socket_args_t.alloc/realloc/free, set by regtable.go). regtable.c
// holds it: one copy for the program, as own.c.
//
// Why: libmemif computes a buffer address as
// regions[desc.region].addr + desc.offset, reading the 16-bit desc.region
// from shared memory after the binding's pre-check (descriptors.h), so a
// peer that rewrites it in between makes libmemif index its region table
// with any value up to 65535. The post-check catches the pointer, but the
// read of the table entry itself could fault: the table was a tiny malloc
// block. libmemif obtains that table (and the queue tables) only through
// realloc, so memifgo_regtable_realloc backs every block with an anonymous
// mapping whose usable part is at least MEMIFGO_REGTABLE_REACH bytes: any
// index lands inside it, on kernel zeroes past what libmemif wrote (a NULL
// region address, which the post-check rejects). The reservation is address
// space only (MAP_NORESERVE, untouched pages cost no memory).
#ifndef MEMIF_GO_REGTABLE_H
#define MEMIF_GO_REGTABLE_H

#include <stddef.h>
#include <stdint.h>

// The bound per table entry. libmemif v26.06's memif_region_t
// (memif_private.h, private: not included here) is void *addr,
// uint64_t region_size, uint32_t buffer_offset, int fd, uint8_t
// is_external: 32 bytes on 64-bit targets, 24 on 32-bit ones. 64 leaves
// twice that for fields a later libmemif may add; the tests check that
// libmemif's table really is one of these blocks.
#define MEMIFGO_REGTABLE_ENTRY 64
// Usable bytes behind every realloc'd block: entry 65535 still fits (4 MiB).
#define MEMIFGO_REGTABLE_REACH (65536u * MEMIFGO_REGTABLE_ENTRY)

void *memifgo_regtable_alloc (size_t size);
void *memifgo_regtable_realloc (void *ptr, size_t size);
void memifgo_regtable_free (void *ptr);

// Tests: the live realloc'd block whose first pointer is first (libmemif's
// region table starts with region 0's address): its usable bytes, and its
// address in *table; 0 if none is.
size_t memifgo_regtable_reach (const void *first, void **table);

#endif
