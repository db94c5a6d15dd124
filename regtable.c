//go:build linux && cgo

// regtable.c: the allocator libmemif uses for the binding's sockets
// (regtable.h says why). Control path only: libmemif allocates when a
// socket, connection or handshake message comes, never per packet.
//
// Every block carries a header, so free tells the two kinds apart: alloc
// gives a malloc'd block, realloc a mapped one (the tables libmemif indexes
// with values a peer wrote). Mapped blocks are also listed, for the tests.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "regtable.h"

#define MAGIC_HEAP 0x6d656d69666865ull // "memifhe"
#define MAGIC_MAP 0x6d656d69666d61ull  // "memifma"
#define HDR 32 // header room: keeps the block 16-byte aligned, as malloc's

typedef struct blk
{
  uint64_t magic;
  size_t len;		  // heap: the caller's size; map: the mapping's length
  struct blk *prev, *next; // map: the live mappings
} blk_t;

_Static_assert (sizeof (blk_t) <= HDR, "header larger than its room");

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static blk_t *maps; // live mapped blocks, under mu

static blk_t *
hdr (void *p)
{
  return (blk_t *) ((char *) p - HDR);
}

static size_t
usable (const blk_t *b)
{
  return b->magic == MAGIC_MAP ? b->len - HDR : b->len;
}

void *
memifgo_regtable_alloc (size_t size)
{
  if (size > SIZE_MAX - HDR)
    return NULL;
  blk_t *b = malloc (HDR + size);
  if (b == NULL)
    return NULL;
  b->magic = MAGIC_HEAP;
  b->len = size;
  return (char *) b + HDR;
}

// A mapping with at least max(size, MEMIFGO_REGTABLE_REACH) usable bytes.
// The kernel zero-fills it; pages nobody writes stay unbacked.
static void *
map_new (size_t size)
{
  size_t page = (size_t) sysconf (_SC_PAGESIZE), want = size;
  if (want < MEMIFGO_REGTABLE_REACH)
    want = MEMIFGO_REGTABLE_REACH;
  if (want > SIZE_MAX - HDR - page)
    return NULL;
  size_t len = (HDR + want + page - 1) & ~(page - 1);
  void *m = mmap (NULL, len, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED)
    return NULL;
  blk_t *b = m;
  b->magic = MAGIC_MAP;
  b->len = len;
  b->prev = NULL;
  pthread_mutex_lock (&mu);
  b->next = maps;
  if (maps)
    maps->prev = b;
  maps = b;
  pthread_mutex_unlock (&mu);
  return (char *) b + HDR;
}

void
memifgo_regtable_free (void *p)
{
  if (p == NULL)
    return;
  blk_t *b = hdr (p);
  if (b->magic == MAGIC_HEAP)
    {
      free (b);
      return;
    }
  if (b->magic != MAGIC_MAP)
    return; // not ours (never happens): leaking beats a wrong free
  pthread_mutex_lock (&mu);
  if (b->prev)
    b->prev->next = b->next;
  else
    maps = b->next;
  if (b->next)
    b->next->prev = b->prev;
  pthread_mutex_unlock (&mu);
  munmap (b, b->len);
}

void *
memifgo_regtable_realloc (void *p, size_t size)
{
  if (p == NULL)
    return map_new (size);
  blk_t *b = hdr (p);
  if (b->magic != MAGIC_HEAP && b->magic != MAGIC_MAP)
    return NULL; // not ours (never happens): libmemif reports no memory
  size_t old = usable (b);
  if (b->magic == MAGIC_MAP && size <= old)
    return p; // the reservation already holds it: no copy, same address
  void *n = map_new (size);
  if (n == NULL)
    return NULL; // as realloc: the old block stays valid
  memcpy (n, p, old < size ? old : size);
  memifgo_regtable_free (p);
  return n;
}

size_t
memifgo_regtable_reach (const void *first, void **table)
{
  size_t r = 0;
  pthread_mutex_lock (&mu);
  for (blk_t *b = maps; b != NULL && r == 0; b = b->next)
    if (*(const void *const *) ((char *) b + HDR) == first)
      {
	r = usable (b);
	*table = (char *) b + HDR;
      }
  pthread_mutex_unlock (&mu);
  return r;
}
