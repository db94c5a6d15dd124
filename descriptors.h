// descriptors.h: the per-connection guard the hot path checks every
// descriptor a peer hands us against (descriptors.go builds it at connect).
// Included by cgo_helpers.h after libmemif.h; plain C memory, no Go pointer.
//
// libmemif trusts the shared ring: memif_rx_burst and memif_buffer_alloc
// compute regions[desc.region].addr + desc.offset with no bound, so a region
// index of 200 reads its region table out of bounds before we see anything.
// So each burst checks twice: the ring descriptors libmemif is about to read
// (region index; on a master's tx ring also the length its allocator trusts)
// and, after the call, every memif_buffer_t it produced (data inside a region
// of this session, length within the buffer size), because the peer can
// rewrite a descriptor between the two. libmemif's own read of a region
// index rewritten in between stays inside its table: regtable.h.
#ifndef MEMIF_GO_DESCRIPTORS_H
#define MEMIF_GO_DESCRIPTORS_H

#define MEMIFGO_COOKIE 0x3E31F20 // memif.h's MEMIF_COOKIE, a protocol constant
#define MEMIFGO_UNLIKELY(x) __builtin_expect (!!(x), 0)

#include "own.h"

// memif_desc_t as the memif protocol lays it out (16 bytes on every arch).
// Defined here rather than taken from memif.h: the ring around it depends on
// the cache line size libmemif was built with, which memif.h cannot tell.
typedef struct
{
  uint16_t flags;
  uint16_t region;
  uint32_t length;
  uint32_t offset;
  uint32_t metadata;
} memifgo_desc_t;

typedef struct
{
  uintptr_t base;   // region address (offsets count from here)
  uintptr_t lo, hi; // where buffers may lie: region 0's rings excluded
} memifgo_region_t;

// One queue, 128 bytes: the rx and tx queues of a pair run on different
// threads, and adjacent-line prefetch pairs 64-byte lines.
typedef struct __attribute__ ((aligned (128)))
{
  memifgo_rec_t *owner; // the thread whose bursts may enter (own.h)
  uint64_t probe;	// tests: bumped, not atomically, by memifgo_own_probe
  uint8_t *ring;  // NULL when the layout could not be verified: post-checks only
  uint32_t mask;  // ring size - 1
  uint32_t canon; // slave: region-1 offset of slot 0's buffer, for repairs; ~0 none
  uint16_t cur;   // rx: next slot rx_burst reads; tx: libmemif's next_buf
  uint16_t rel;   // rx: oldest slot not refilled; tx: next slot to send
  uint16_t chk;   // tx: the slot a master's allocation stopped before
  uint8_t chain;  // rx: dropping the rest of a chain: 1 it had a bad buffer,
		  // 2 its start was dropped and counted already (ForwardDrop)
  uint8_t open;   // rx: the last buffer received had NEXT (a chain goes on)
  uint8_t stop;   // tx (master): a bad slot is ahead, allocation stops before it
  uint8_t seen;   // tx: chk is valid (a bad slot is counted once)
  uint32_t seg;   // master tx: shortest slave buffer accepted, learned (0: not yet)
  uint32_t ndrop; // rx: dropped slots not yet refilled (bits in drop)
  // Counters: written by the owner only, read by DescriptorStats with
  // no lock (memifgo_guard_count).
  uint64_t bad;	  // descriptors that failed a check
  uint64_t dropped; // rx: buffers dropped (bad, empty, and the rest of a bad one's packet)
  uint64_t empty;   // rx: packets of one empty buffer, dropped; tx: buffers given back empty
  uint64_t rest;    // rx: of dropped, buffers of a chain whose start was counted (chain 2)
  uint8_t *drop;    // rx: bitmap of dropped slots, mask+1 bits
  int efd;	    // rx: libmemif's queue eventfd (spin.h consumes it), -1 none
} memifgo_q_t;
_Static_assert (sizeof (memifgo_q_t) == 128, "memifgo_q_t: one queue per 128 bytes");

typedef struct
{
  uint8_t master;
  uint8_t down; // the link went down: no burst enters (own.h)
  uint16_t nrx, ntx;
  uint32_t nregions;
  uint32_t bufsize; // 0: unknown (a master whose slave's layout hides it)
  uint32_t minseg;  // master: shortest tx buffer accepted until a queue learns its own (seg)
  uint32_t desc_off, tail_off; // ring layout: desc[0] and tail from the ring start
  uint32_t toctou_len, toctou_skip; // tests: see memifgo_set_toctou_len
  uint32_t toctou_region;	     // tests: see memifgo_set_toctou_region
  memifgo_region_t reg[256];
  memifgo_q_t q[]; // rx queues, then tx queues
} memifgo_guard_t;

// The ring layout libmemif was built with, learned from a slave's region 0
// (which libmemif lays out itself) and used by masters; until then the
// default of libmemif's build (128-byte cache lines on aarch64).
#if defined(__aarch64__)
#define MEMIFGO_DEFAULT_CACHELINE 128
#else
#define MEMIFGO_DEFAULT_CACHELINE 64
#endif
static uint32_t memifgo_learned_desc_off;

static inline memifgo_q_t *
memifgo_rxq (uintptr_t g, uint16_t qid)
{
  return &((memifgo_guard_t *) g)->q[qid];
}

static inline memifgo_q_t *
memifgo_txq (uintptr_t g, uint16_t qid)
{
  memifgo_guard_t *gd = (memifgo_guard_t *) g;
  return &gd->q[gd->nrx + qid];
}

static inline volatile memifgo_desc_t *
memifgo_desc (const memifgo_guard_t *g, const memifgo_q_t *q, uint16_t slot)
{
  return (volatile memifgo_desc_t *) (q->ring + g->desc_off) + (slot & q->mask);
}

// The same without volatile, for the branch-free scans: the compiler may
// then pipeline and vectorize them. A value the peer changes meanwhile is
// the TOCTOU case the after-checks (and the slow loops, volatile) cover.
static inline const memifgo_desc_t *
memifgo_descs (const memifgo_guard_t *g, const memifgo_q_t *q)
{
  return (const memifgo_desc_t *) (q->ring + g->desc_off);
}

static inline volatile uint16_t *
memifgo_head (const memifgo_q_t *q)
{
  return (volatile uint16_t *) (q->ring + 6);
}

static inline volatile uint16_t *
memifgo_tail (const memifgo_guard_t *g, const memifgo_q_t *q)
{
  return (volatile uint16_t *) (q->ring + g->tail_off);
}

// ---- building the guard (control path, descriptors.go) -----------------

static uintptr_t
memifgo_guard_new (uint8_t master, uint16_t nrx, uint16_t ntx,
		   uint32_t nregions, uint32_t bufsize, uint32_t minseg)
{
  size_t size = sizeof (memifgo_guard_t) + sizeof (memifgo_q_t) * (nrx + ntx);
  memifgo_guard_t *g = aligned_alloc (128, (size + 127) & ~(size_t) 127);
  if (!g)
    return 0;
  memset (g, 0, size);
  g->master = master;
  g->nrx = nrx;
  g->ntx = ntx;
  g->nregions = nregions > 256 ? 256 : nregions;
  g->bufsize = bufsize;
  g->minseg = minseg;
  for (int i = 0; i < nrx + ntx; i++)
    {
      g->q[i].canon = ~0u;
      g->q[i].efd = -1;
    }
  return (uintptr_t) g;
}

static void
memifgo_guard_region (uintptr_t g_, uint32_t i, uintptr_t addr, uint64_t size)
{
  memifgo_guard_t *g = (memifgo_guard_t *) g_;
  if (i < g->nregions && addr)
    g->reg[i] = (memifgo_region_t){ addr, addr, addr + size };
}

// Set the queues' ring sizes and find the rings in region 0, laid out as
// libmemif, VPP and DPDK slaves do: the S2M rings, then the M2S rings, each
// ring header (two cache lines) followed by its descriptors. Every ring's
// cookie is verified; if anything disagrees the rings stay unknown and only
// the post-checks run. Returns 0 on success, -1 without rings, -2 no memory.
static int
memifgo_guard_layout (uintptr_t g_, const uint32_t *ring_sizes)
{
  memifgo_guard_t *g = (memifgo_guard_t *) g_;
  int n = g->nrx + g->ntx, i;
  uint32_t rs = ring_sizes[0];
  for (i = 0; i < n; i++)
    {
      uint32_t s = ring_sizes[i];
      if (s == 0 || s > 65536 || (s & (s - 1)))
	s = 65536; // nonsense from the peer: index bits mask to 16 anyway
      g->q[i].mask = s - 1;
      if (i < g->nrx && !(g->q[i].drop = calloc (1, (s + 7) / 8)))
	return -2;
      if (ring_sizes[i] != rs)
	rs = 0;
    }
  if (!rs || rs > 65536 || g->nregions == 0)
    return -1;
  memifgo_region_t *r0 = &g->reg[0];
  uint64_t size0 = r0->hi - r0->base;
  uint32_t desc_off;
  if (!g->master)
    {
      // Our libmemif laid region 0 out: rings only, so it tells the layout.
      uint64_t rb = size0 / n;
      if (rb * n != size0 || rb <= 16ull * rs)
	return -1;
      desc_off = (uint32_t) (rb - 16ull * rs);
      if (desc_off != 128 && desc_off != 256)
	return -1;
      memifgo_learned_desc_off = desc_off;
    }
  else
    desc_off = memifgo_learned_desc_off ? memifgo_learned_desc_off
					: 2 * MEMIFGO_DEFAULT_CACHELINE;
  uint64_t rb = desc_off + 16ull * rs;
  if (rb * n > size0)
    return -1;
  // S2M rings first: a master receives on them, a slave sends on them.
  int nfirst = g->master ? g->nrx : g->ntx;
  uint8_t *ring[512];
  for (i = 0; i < n; i++)
    {
      int k = g->master ? i : (i < g->nrx ? nfirst + i : i - g->nrx);
      ring[i] = (uint8_t *) r0->base + (uint64_t) k * rb;
      if (*(volatile uint32_t *) ring[i] != MEMIFGO_COOKIE)
	return -1;
    }
  g->desc_off = desc_off;
  g->tail_off = desc_off / 2;
  for (i = 0; i < n; i++)
    g->q[i].ring = ring[i];
  r0->lo = r0->base + rb * n; // no buffer may overlap the rings
  if (r0->lo > r0->hi)
    r0->lo = r0->hi;
  // A slave's buffers: region 1, slot after slot, S2M rings first.
  if (!g->master && g->nregions >= 2 && g->bufsize
      && (uint64_t) n * rs * g->bufsize <= g->reg[1].hi - g->reg[1].base)
    for (i = 0; i < n; i++)
      {
	int k = i < g->nrx ? nfirst + i : i - g->nrx;
	g->q[i].canon = (uint32_t) ((uint64_t) k * rs * g->bufsize);
      }
  return 0;
}

static void
memifgo_guard_free (uintptr_t g_)
{
  memifgo_guard_t *g = (memifgo_guard_t *) g_;
  if (!g)
    return;
  for (int i = 0; i < g->nrx; i++)
    free (g->q[i].drop);
  free (g);
}

// Bar every burst from the guard's queues (down), or take their ownership
// away (revoke: the next burst claims again, under its queue's lock); then
// wait until no burst is inside one. The caller holds every queue's Go
// mutex. A revocation from inside a burst (a callback) is refused.
static int
memifgo_guard_quiesce (uintptr_t g_, int down)
{
  memifgo_guard_t *g = (memifgo_guard_t *) g_;
  int n = g->nrx + g->ntx;
  if (!down && memifgo_self && memifgo_self->inside)
    return MEMIFGO_OWN_NESTED;
  if (down)
    __atomic_store_n (&g->down, 1, __ATOMIC_RELAXED);
  else
    for (int i = 0; i < n; i++)
      __atomic_store_n (&g->q[i].owner, NULL, __ATOMIC_RELAXED);
  memifgo_own_sync ();
  memifgo_own_wait (&g->q[0], &g->q[n]);
  return 0;
}

// Counters, read with no lock while the owner may write them: aligned
// 64-bit loads are whole on every 64-bit target (relaxed atomics here, a
// plain load in the code), so a reader sees a count a burst left, never a
// torn one. The guard outlives every reader (freed with its link).
static uint64_t
memifgo_guard_count (uintptr_t g, int tx, uint16_t qid, int which)
{
  memifgo_q_t *q = tx ? memifgo_txq (g, qid) : memifgo_rxq (g, qid);
  uint64_t *c = which == 2 ? &q->empty : which == 1 ? &q->dropped : &q->bad;
  return __atomic_load_n (c, __ATOMIC_RELAXED);
}

// The ring descriptor of a slot, or NULL when the ring is unknown (tests
// play a hostile peer with it).
static void *
memifgo_guard_desc_addr (uintptr_t g_, int tx, uint16_t qid, uint16_t slot)
{
  const memifgo_guard_t *g = (const memifgo_guard_t *) g_;
  const memifgo_q_t *q = tx ? memifgo_txq (g_, qid) : memifgo_rxq (g_, qid);
  return q->ring ? (void *) memifgo_desc (g, q, slot) : NULL;
}

// The ring's head field, or NULL (tests).
static void *
memifgo_guard_head_addr (uintptr_t g, int tx, uint16_t qid)
{
  const memifgo_q_t *q = tx ? memifgo_txq (g, qid) : memifgo_rxq (g, qid);
  return q->ring ? (void *) memifgo_head (q) : NULL;
}

// Tests only: forget rx queue qid's ring, as when the peer's layout could
// not be verified (post-checks only, memif_rx_burst polled). No burst may
// run meanwhile.
static void
memifgo_guard_forget_rx_ring (uintptr_t g, uint16_t qid)
{
  if (qid >= ((memifgo_guard_t *) g)->nrx)
    return;
  memifgo_q_t *q = memifgo_rxq (g, qid);
  q->ring = NULL;
  q->canon = ~0u; // repairs need the ring
}

// A queue's ring index mirrors: rx cur/rel, tx next free / next to send.
static uint32_t
memifgo_guard_index (uintptr_t g, int tx, uint16_t qid)
{
  const memifgo_q_t *q = tx ? memifgo_txq (g, qid) : memifgo_rxq (g, qid);
  return (uint32_t) __atomic_load_n (&q->cur, __ATOMIC_RELAXED) << 16
	 | __atomic_load_n (&q->rel, __ATOMIC_RELAXED);
}

// ---- the checks (hot path) ----------------------------------------------

// Whether any of count slots from slot names a region index >= n: two
// linear scans (split at the ring's end), which the compiler pipelines.
static inline uint32_t
memifgo_scan_region (const memifgo_guard_t *g, const memifgo_q_t *q,
		     uint16_t slot, uint32_t count, uint32_t n)
{
  const memifgo_desc_t *ds = memifgo_descs (g, q);
  uint32_t start = slot & q->mask, first = q->mask + 1 - start, bad = 0, i;
  if (first > count)
    first = count;
  for (i = start; i < start + first; i++)
    bad |= ds[i].region >= n;
  for (i = 0; i < count - first; i++)
    bad |= ds[i].region >= n;
  return bad;
}

// Branch-free fast check of a batch: every buffer non-empty, within the
// buffer size and inside the last region (where libmemif, DPDK and VPP
// peers keep buffers). 0 if all pass; otherwise memifgo_bad_buf decides.
static inline uint32_t
memifgo_bad_batch (const memifgo_guard_t *g, const memif_buffer_t *b,
		   uint32_t n)
{
  const memifgo_region_t *r = &g->reg[g->nregions ? g->nregions - 1 : 0];
  uintptr_t lo = r->lo, hi = r->hi, span = hi - lo;
  uint32_t max = g->bufsize ? g->bufsize : 0xffffffffu, bad = !g->nregions;
  for (uint32_t i = 0; i < n; i++)
    {
      uintptr_t p = (uintptr_t) b[i].data;
      uint32_t len = b[i].len;
      // p in [lo, hi], len in 1..max and p + len <= hi, without overflow
      bad |= (len - 1 >= max) | (p - lo > span) | (len > hi - p);
    }
  return bad;
}

// A buffer libmemif produced: non-empty, within the buffer size, inside the
// buffer area of one region of this session.
static inline int
memifgo_bad_buf (const memifgo_guard_t *g, const memif_buffer_t *b)
{
  uintptr_t p = (uintptr_t) b->data;
  uint32_t len = b->len;
  if (MEMIFGO_UNLIKELY (len - 1 >= (g->bufsize ? g->bufsize : 0xffffffffu)))
    return 1;
  // Last region first: a libmemif or DPDK peer's buffers are in region 1.
  for (uint32_t i = g->nregions; i-- > 0;)
    if (p >= g->reg[i].lo && p + len <= g->reg[i].hi && p + len > p)
      return 0;
  return 1;
}

// Make a bad descriptor harmless. A slave points it back at its own buffer
// (region 1, canonical offset) so the slot stays usable; otherwise only a
// bad region index is replaced (libmemif indexes its table with it). len is
// the length left in it: 0 on rx, which every post-check drops.
static inline void
memifgo_repair (const memifgo_guard_t *g, const memifgo_q_t *q, uint16_t slot,
		uint32_t len)
{
  volatile memifgo_desc_t *d = memifgo_desc (g, q, slot);
  if (q->canon != ~0u)
    {
      d->region = 1;
      d->offset = q->canon + (slot & q->mask) * g->bufsize;
    }
  else if (d->region >= g->nregions)
    d->region = g->nregions > 1 && !g->master ? 1 : 0;
  d->length = len; // flags stay: a chain must still end where the peer ended it
}

// The slot an rx queue's producer publishes up to.
static inline uint16_t
memifgo_rx_last (const memifgo_guard_t *g, const memifgo_q_t *q)
{
  return g->master ? *memifgo_head (q) : *memifgo_tail (g, q);
}

// Before memif_rx_burst: how many slots it may read. libmemif indexes its
// region table with each slot's region index, read from shared memory; no
// check here could stop a peer rewriting it just after, so the table itself
// holds any 16-bit index (regtable.h) and the post-check drops the buffer a
// bad index gives (memifgo_mark_drop repairs a slave's slot). rx_burst is
// asked for no more than were published when we looked.
static inline uint16_t
memifgo_rx_pre (const memifgo_guard_t *g, memifgo_q_t *q, uint16_t count)
{
  if (!q->ring)
    return count;
  uint16_t avail = memifgo_rx_last (g, q) - q->cur, i;
  // A producer publishes only slots given back to it (up to rel + the
  // ring): an index beyond that would hand out slots we still hold.
  uint32_t room = q->mask + 1u - (uint16_t) (q->cur - q->rel);
  if (MEMIFGO_UNLIKELY (avail > room))
    {
      q->bad++;
      avail = (uint16_t) room;
    }
  if (avail < count)
    count = avail;
  if (MEMIFGO_UNLIKELY (g->toctou_region)) // tests: the rewrite lands now
    for (i = 0; i < count; i++)
      memifgo_desc (g, q, q->cur + i)->region
	= (uint16_t) (g->toctou_region - 1);
  return count;
}

// Tests only: memifgo_rx_pre and a master's memifgo_alloc set the region
// index of every slot they checked to region - 1 right after the check, as
// a racing peer could (0: off). libmemif then indexes its region table with
// it (regtable.h: the table holds any 16-bit index).
static void
memifgo_set_toctou_region (uintptr_t g, uint32_t region)
{
  ((memifgo_guard_t *) g)->toctou_region = region;
}

static inline void
memifgo_mark_drop (const memifgo_guard_t *g, memifgo_q_t *q, uint16_t slot)
{
  uint32_t s = slot & q->mask;
  uint8_t bit = (uint8_t) (1u << (s & 7));
  q->ndrop += !(q->drop[s >> 3] & bit); // a slot counts once in the bitmap
  q->drop[s >> 3] |= bit;
  q->dropped++;
  if (!g->master && q->canon != ~0u)
    memifgo_repair (g, q, slot, 0); // a slave refills it as its own buffer
}

// After memif_rx_burst returned rx buffers: drop the bad ones with the rest
// of their packet, compact the batch, and remember the dropped slots so the
// caller's refill count (of buffers it got) still gives them back. Returns
// the buffers kept. *cut is set when the packet dropped is the one open on
// entry: its start went to the caller in an earlier burst, and the caller
// must drop that too (else it joins it to the next packet).
static inline uint16_t
memifgo_rx_post (const memifgo_guard_t *g, memifgo_q_t *q, memif_buffer_t *b,
		 uint16_t rx, int *cut)
{
  uint32_t bad = q->chain, i;
  *cut = 0;
  if (memifgo_bad_batch (g, b, rx)) // fast path: all good
    for (i = 0; i < rx; i++)
      bad |= memifgo_bad_buf (g, &b[i]);
  q->cur += rx;
  if (MEMIFGO_UNLIKELY (bad))
    {
      uint16_t k = 0, start = 0;
      int drop = q->chain, inchain = q->open;
      int cont = q->open && !q->chain; // the first packet began earlier
      for (i = 0; i < rx; i++)
	{
	  // A packet of one empty buffer (how a peer gives back unsent tx
	  // allocations) is dropped and counted as empty; an empty buffer in
	  // a chain would cut bytes out of the packet: bad.
	  int next = (b[i].flags & MEMIF_BUFFER_FLAG_NEXT) != 0;
	  int alone = b[i].len == 0 && !inchain && !next;
	  int badi = !alone && memifgo_bad_buf (g, &b[i]);
	  q->bad += badi;
	  q->empty += alone;
	  if (badi && !drop)
	    { // forget the part of this packet kept so far
	      *cut |= cont;
	      for (uint16_t j = start; j < k; j++)
		memifgo_mark_drop (g, q, b[j].desc_index);
	      k = start;
	      drop = 1;
	    }
	  if (drop || alone)
	    {
	      memifgo_mark_drop (g, q, b[i].desc_index);
	      q->rest += drop == 2;
	    }
	  else
	    b[k++] = b[i];
	  inchain = next;
	  if (!next)
	    {
	      drop = 0;
	      start = k;
	      cont = 0;
	    }
	}
      q->chain = drop;
      q->open = inchain;
      return k;
    }
  if (rx)
    q->open = (b[rx - 1].flags & MEMIF_BUFFER_FLAG_NEXT) != 0;
  return rx;
}

// memif_rx_burst under the guard, the receive every rx path but CopyRx's
// takes: at most count buffers into b, checked before (rx_pre) and after
// (rx_post); *rx the buffers kept, *cut as rx_post's.
static inline int
memifgo_rx_take (uintptr_t conn, const memifgo_guard_t *g, memifgo_q_t *q,
		 uint16_t qid, memif_buffer_t *b, uint16_t count, uint16_t *rx,
		 int *cut)
{
  uint16_t n = 0;
  int err = memif_rx_burst ((void *) conn, qid, b,
			    memifgo_rx_pre (g, q, count), &n);
  *rx = memifgo_rx_post (g, q, b, n, cut);
  return err;
}

// Give slots back: a slave through memif_refill_queue; a master by moving
// the ring tail itself, because libmemif's master branch compares
// tail + count with last_head without the 16-bit wrap and, near tail 65535,
// hands back every received buffer instead of count.
static inline int
memifgo_refill_slots (uintptr_t conn, const memifgo_guard_t *g, memifgo_q_t *q,
		      uint16_t qid, uint16_t slots, uint16_t headroom)
{
  if (q->ndrop)
    for (uint16_t s = 0; s < slots; s++)
      {
	uint32_t x = (uint16_t) (q->rel + s) & q->mask;
	if (q->drop[x >> 3] & (1u << (x & 7)))
	  {
	    q->drop[x >> 3] &= (uint8_t) ~(1u << (x & 7));
	    q->ndrop--;
	  }
      }
  q->rel += slots;
  if (g->master && q->ring)
    {
      __atomic_thread_fence (__ATOMIC_SEQ_CST); // libmemif's MEMIF_MEMORY_BARRIER
      *memifgo_tail (g, q) = q->rel;
      return MEMIF_ERR_SUCCESS;
    }
  return memif_refill_queue ((void *) conn, qid, slots, headroom);
}

// The caller gives back count buffers it got (0xffff: all): translate to
// ring slots, counting the dropped slots among and right after them.
static inline int
memifgo_refill (uintptr_t conn, const memifgo_guard_t *g, memifgo_q_t *q,
		uint16_t qid, uint16_t count, uint16_t headroom)
{
  uint16_t out = q->cur - q->rel, n;
  if (count == 0xffff)
    {
      if (q->ndrop)
	memset (q->drop, 0, (q->mask + 1 + 7) / 8);
      q->ndrop = 0;
      q->rel = q->cur;
      if (g->master && q->ring)
	return memifgo_refill_slots (conn, g, q, qid, 0, headroom);
      return memif_refill_queue ((void *) conn, qid, 0xffff, headroom);
    }
  if (MEMIFGO_UNLIKELY (q->ndrop))
    {
      uint16_t good = 0;
      for (n = 0; n < out; n++)
	{
	  uint32_t x = (uint16_t) (q->rel + n) & q->mask;
	  if (q->drop[x >> 3] & (1u << (x & 7)))
	    continue;
	  if (good == count)
	    break;
	  good++;
	}
    }
  else
    n = count < out ? count : out;
  if (n == 0 && count != 0)
    return MEMIF_ERR_SUCCESS;
  return memifgo_refill_slots (conn, g, q, qid, n, headroom);
}


// ---- tx ------------------------------------------------------------------

// Descriptors every batch has beyond its capacity (buffers.go): on a master
// memif_buffer_alloc writes one per slot it takes, up to the slave-set head
// minus its next buffer (65535 at most), from wherever the batch starts; the
// pre-check bounds that, but the slave can rewrite lengths and head right
// after it. So libmemif's worst case always lands in memory of the batch
// (untouched, so virtual only) and the after-check gives it back.
#define MEMIFGO_SLACK 65536

// Tests only: memifgo_alloc sets every tx descriptor of a master's ring to
// this length right after its pre-check, as a racing slave could, from its
// skip+1-th call on. (In the guard: a static here would be one per cgo file.)
static void
memifgo_set_toctou_len (uintptr_t g, uint32_t len, uint32_t skip)
{
  ((memifgo_guard_t *) g)->toctou_len = len;
  ((memifgo_guard_t *) g)->toctou_skip = skip;
}

static inline void memifgo_tx_flush (uintptr_t conn, const memifgo_guard_t *g,
				     memifgo_q_t *q, uint16_t qid);

#define MEMIFGO_ETXCOUNT 0x1003 // TxBurst count above the unsent allocations
#define MEMIFGO_ETXSTALE 0x1004 // buffer b is not the next unsent allocation
#define MEMIFGO_EBADDESC 0x1006 // allocation stopped before a bad descriptor

// A master's shortest accepted tx buffer. The protocol never tells a master
// its slave's buffer size, so each queue learns it from the first buffer the
// slave refilled: half of that length (a slave refills with buffer size minus
// headroom, and may change the headroom), never below minseg nor above the
// buffer size. A shorter good buffer (the slave raised its headroom) lowers
// it, down to minseg (memifgo_tx_pre); below minseg buffers are refused. So
// a packet of size bytes takes at most size/seg of them: the batch bound.
// Until the slave refilled anything (nothing to allocate yet), or with an
// unverified ring layout, minseg.
static inline uint32_t
memifgo_tx_seg (const memifgo_guard_t *g, memifgo_q_t *q)
{
  if (MEMIFGO_UNLIKELY (!q->seg) && q->ring && *memifgo_head (q) != q->cur)
    {
      uint32_t s = memifgo_desc (g, q, q->cur)->length / 2;
      if (g->bufsize && s > g->bufsize)
	s = g->bufsize;
      q->seg = s > g->minseg ? s : g->minseg;
    }
  return q->seg ? q->seg : g->minseg;
}

// Before memif_buffer_alloc, over the need slots from cur it may take. A
// master's free slots [cur, head) were filled by the slave: libmemif trusts
// their region index (it indexes its region table) and their length (which
// bounds how many descriptors it writes into the batch, and how many slots
// need covers); strict (a batch smaller than the ring), offsets are checked
// too, else left to the after-check. A bad slot stops allocation before it
// (stop; counted once per slot) until the slave fixes it. A
// slave's free slots are its own, but the master can scribble on them: a bad
// region index is repaired. Returns the slots from cur allocation may take.
static inline uint32_t
memifgo_tx_pre (const memifgo_guard_t *g, memifgo_q_t *q, uint32_t need,
		int strict)
{
  if (!q->ring)
    return 0x10000;
  uint16_t lim = g->master ? *memifgo_head (q)
			   : (uint16_t) (*memifgo_tail (g, q) + q->mask + 1);
  uint16_t room = lim - q->cur, s;
  if (!g->master && room > q->mask + 1)
    room = q->mask + 1; // the master moved tail: the batch bound still holds
  if (MEMIFGO_UNLIKELY (room > q->mask + 1))
    { // a head beyond the ring: libmemif would hand out up to 65535 slots
      if (!q->seen || q->chk != q->cur)
	q->bad++;
      q->seen = 1;
      q->stop = 1;
      q->chk = q->cur;
      return 0;
    }
  if (need < room)
    room = (uint16_t) need;
  uint32_t n = g->nregions, bad = 0;
  if (g->master)
    {
      // Fast path: every slot in the last region (the slow loop below
      // handles the others); offsets only when strict.
      uint32_t lo = memifgo_tx_seg (g, q),
	       span = (g->bufsize ? g->bufsize : ~0u) - lo;
      uint32_t hot = n - 1, mask = q->mask, start = q->cur & mask;
      uint64_t base = g->reg[hot].base, rlo = g->reg[hot].lo - base,
	       rhi = g->reg[hot].hi - base;
      const memifgo_desc_t *ds = memifgo_descs (g, q);
      uint32_t first = mask + 1 - start, i;
      if (first > room)
	first = room;
      for (i = start; i < start + first; i++) // branch-free: per packet
	bad |= (ds[i].region != hot) | (ds[i].length - lo > span);
      for (i = 0; i < (uint32_t) room - first; i++)
	bad |= (ds[i].region != hot) | (ds[i].length - lo > span);
      if (strict && !bad)
	for (s = 0; s < room; s++)
	  {
	    const memifgo_desc_t *d = &ds[(start + s) & mask];
	    uint64_t off = d->offset, len = d->length;
	    bad |= (off < rlo) | (off + len > rhi);
	  }
    }
  else
    bad = memifgo_scan_region (g, q, q->cur, room, n);
  if (MEMIFGO_UNLIKELY (bad))
    for (s = 0; s < room; s++)
      {
	uint16_t slot = q->cur + s;
	volatile memifgo_desc_t *d = memifgo_desc (g, q, slot);
	uint32_t r = d->region, len = d->length, ri = r < n ? r : 0;
	uintptr_t p = g->reg[ri].base + d->offset;
	if (!g->master)
	  {
	    if (r >= n)
	      {
		memifgo_repair (g, q, slot, g->bufsize);
		q->bad++;
	      }
	  }
	else if (r >= n || len < g->minseg
		 || (g->bufsize && len > g->bufsize)
		 || (strict && (p < g->reg[ri].lo || p + len > g->reg[ri].hi)))
	  {
	    if (!q->seen || q->chk != slot)
	      q->bad++;
	    q->seen = 1;
	    q->stop = 1;
	    q->chk = slot;
	    return s;
	  }
	else if (len < memifgo_tx_seg (g, q))
	  // A good buffer, only shorter than learned: the slave refills with
	  // more headroom now. The bound follows it (minseg still holds).
	  q->seg = len;
      }
  q->stop = 0;
  return room;
}

// Whether every slot of the tx ring is free for allocation now (0: the
// ring is unknown). A ring of 65536 slots cannot say so in 16-bit indices
// (all free reads as none), and never needs to: libmemif rings have at
// most 2^14 slots (memif_create refuses more, a slave takes the smaller of
// its own and the master's limit, and the loop's guard refuses a peer's
// ring above 2^14 before libmemif reads it); and even there every packet
// memif can carry (65535 bytes, buffers of a byte or more) fits the ring,
// so Forward's oversize drop never waits on this answer.
static inline int
memifgo_tx_all_free (const memifgo_guard_t *g, const memifgo_q_t *q)
{
  if (!q->ring || q->mask == 0xffff)
    return 0;
  uint16_t room = g->master ? *memifgo_head (q) - q->cur
			    : *memifgo_tail (g, q) + q->mask + 1 - q->cur;
  return room == q->mask + 1;
}

// Whether one packet of size bytes fits in the checked slots: [from, good)
// relative to cur. Only used while a bad slot is ahead (stop).
static inline int
memifgo_tx_fits (const memifgo_guard_t *g, const memifgo_q_t *q,
		 uint32_t from, uint32_t size, uint32_t good)
{
  uint32_t sum = 0, s = from;
  do
    {
      if (s >= good)
	return 0;
      sum += memifgo_desc (g, q, q->cur + s)->length;
      s++;
    }
  while (sum < size);
  return 1;
}

// memif_buffer_alloc under the guard: count packets of size bytes into b,
// which has room for nb descriptors. worst != 0 (a master whose batch is
// smaller than the ring): packet by packet while nb holds worst more.
// strict: the caller's batch bound assumes checked segment lengths. Then
// every buffer is post-checked: one the peer rewrote after the pre-check is
// repaired (slave) or emptied (length 0 at a harmless address) and counted,
// never handed out pointing elsewhere. An allocation a racing slave made
// overrun nb fails (MEMIFGO_EBADDESC); keep leaves it unsent on the queue,
// so that the caller can send its earlier allocations before flushing it.
static inline int
memifgo_alloc_keep (uintptr_t conn, const memifgo_guard_t *g, memifgo_q_t *q,
		    uint16_t qid, memif_buffer_t *b, uint32_t nb,
		    uint16_t count, uint16_t size, uint16_t worst, int strict,
		    int keep, uint16_t *out)
{
  // Slots the allocation may take if every one is good: segments are at
  // least the learned seg (master, checked) or the buffer size (slave). The
  // pre-check may lower seg (a slave's larger headroom): then more slots
  // may be taken, check again.
  uint32_t seg, need, good, bad = 0;
  do
    {
      seg = g->master ? memifgo_tx_seg (g, q) : g->bufsize;
      need = seg ? (uint32_t) count * ((size + seg - 1) / seg) : 0x10000;
      good = memifgo_tx_pre (g, q, need ? need : 1, strict || worst);
    }
  while (g->master && memifgo_tx_seg (g, q) < seg);
  if (strict && !worst && seg) // count was fitted to nb with the seg before
    {
      uint32_t per = (size + seg - 1) / seg;
      if ((uint32_t) count * per > nb)
	count = (uint16_t) (nb / per); // short: the caller allocates again
    }
  if (worst && g->master) // the caller assumed minseg; the learned bound is tighter
    {
      uint32_t w = (size + seg - 1) / seg;
      worst = (uint16_t) (w ? w : 1);
    }
  uint32_t n = 0; // wide: a raced packet may take up to 65535 slots, n must not wrap
  uint16_t i, n16 = 0;
  int err = MEMIF_ERR_SUCCESS;
  if (MEMIFGO_UNLIKELY (g->toctou_len | g->toctou_region) && g->master
      && q->ring)
    {
      if (g->toctou_skip) // tests: the guard is theirs to write
	((memifgo_guard_t *) g)->toctou_skip--;
      else
	for (i = q->cur; i != *memifgo_head (q); i++) // the rewrite lands now
	  {
	    volatile memifgo_desc_t *d = memifgo_desc (g, q, i);
	    if (g->toctou_len)
	      d->length = g->toctou_len;
	    if (g->toctou_region)
	      d->region = (uint16_t) (g->toctou_region - 1);
	  }
    }
  if (!worst && !q->stop)
    {
      err = memif_buffer_alloc ((void *) conn, qid, b, count, &n16, size);
      n = n16;
    }
  else
    for (i = 0; i < count; i++)
      {
	uint16_t got = 0;
	if (worst && nb - n < worst)
	  break;
	if (q->stop && !memifgo_tx_fits (g, q, n, size, good))
	  {
	    err = MEMIFGO_EBADDESC;
	    break;
	  }
	err = memif_buffer_alloc ((void *) conn, qid, b + n, 1, &got, size);
	n += got;
	if (err != MEMIF_ERR_SUCCESS || !got || n > nb)
	  break;
      }
  q->cur += n;
  if (MEMIFGO_UNLIKELY (n > nb))
    {
      // A master's slave rewrote lengths (or head) after the pre-check:
      // libmemif took more descriptors than the batch holds. They landed in
      // the batch's slack (MEMIFGO_SLACK), never past it; give them all back
      // (keep: the caller sends its earlier allocations first, then flushes).
      q->bad++;
      if (!keep)
	memifgo_tx_flush (conn, g, q, qid);
      memset (b, 0, sizeof (*b) * nb); // what the caller can see
      *out = 0;
      return MEMIFGO_EBADDESC;
    }
  if (memifgo_bad_batch (g, b, n))
    for (i = 0; i < n; i++)
      bad |= memifgo_bad_buf (g, &b[i]);
  if (MEMIFGO_UNLIKELY (bad))
    for (i = 0; i < n; i++)
      if (memifgo_bad_buf (g, &b[i]))
	{
	  q->bad++;
	  if (!g->master && q->canon != ~0u && q->ring)
	    {
	      memifgo_repair (g, q, b[i].desc_index, g->bufsize);
	      b[i].data = (void *) (g->reg[1].base + q->canon
				    + (b[i].desc_index & q->mask) * g->bufsize);
	      if (b[i].len > g->bufsize)
		b[i].len = g->bufsize;
	    }
	  else
	    {
	      b[i].data = (void *) g->reg[0].base;
	      b[i].len = 0;
	    }
	}
  *out = n;
  return err;
}

// memifgo_alloc_keep that gives an overrun allocation back at once, with
// every unsent allocation of the queue before it.
static inline int
memifgo_alloc (uintptr_t conn, const memifgo_guard_t *g, memifgo_q_t *q,
	       uint16_t qid, memif_buffer_t *b, uint32_t nb, uint16_t count,
	       uint16_t size, uint16_t worst, int strict, uint16_t *out)
{
  return memifgo_alloc_keep (conn, g, q, qid, b, nb, count, size, worst,
			     strict, 0, out);
}

// Where a slave's memif_tx_burst expects buffer data: the descriptor's
// buffer, headroom reset (region index checked first: libmemif reads it).
static inline uintptr_t
memifgo_slave_slot_addr (const memifgo_guard_t *g, const memifgo_q_t *q,
			 uint16_t slot)
{
  volatile memifgo_desc_t *d = memifgo_desc (g, q, slot);
  if (MEMIFGO_UNLIKELY (d->region >= g->nregions))
    memifgo_repair (g, q, slot, g->bufsize);
  uint32_t off = d->offset;
  return g->reg[d->region].base + (off - off % g->bufsize);
}

// Before memif_tx_burst: b[0:count] must be the oldest unsent allocations of
// the queue, in order (on a mismatch memif_tx_burst still publishes the ring
// up to the bad buffer), and on a slave each descriptor's region index must
// be ours (libmemif indexes its region table with it; a master can scribble
// on it). 0, or MEMIFGO_ETX* with *at the buffer.
static inline int
memifgo_tx_check (const memifgo_guard_t *g, memifgo_q_t *q,
		  const memif_buffer_t *b, uint16_t count, uint16_t *at,
		  int seq)
{
  uint16_t pend = q->cur - q->rel, i;
  uint32_t bad = 0;
  if (MEMIFGO_UNLIKELY (count > pend))
    {
      // Buffers behind the next to send were sent already (or given back).
      if ((int16_t) (b[0].desc_index - q->rel) < 0)
	{
	  *at = 0;
	  return MEMIFGO_ETXSTALE;
	}
      *at = pend;
      return MEMIFGO_ETXCOUNT;
    }
  if (!seq)
    for (i = 0; i < count; i++) // branch-free: runs per packet
      bad |= b[i].desc_index != (uint16_t) (q->rel + i);
  if (MEMIFGO_UNLIKELY (bad))
    for (i = 0; i < count; i++)
      if (b[i].desc_index != (uint16_t) (q->rel + i))
	{
	  *at = i;
	  return MEMIFGO_ETXSTALE;
	}
  if (!g->master && q->ring)
    {
      uint32_t n = g->nregions;
      bad = memifgo_scan_region (g, q, q->rel, count, n);
      if (MEMIFGO_UNLIKELY (bad))
	for (i = 0; i < count; i++)
	  if (memifgo_desc (g, q, q->rel + i)->region >= n)
	    {
	      memifgo_repair (g, q, q->rel + i, g->bufsize);
	      q->bad++;
	    }
    }
  return 0;
}

// Send every unsent allocation of the queue as an empty buffer: how a
// rejected send gives them back, so the queue never wedges and no stale
// bytes reach the peer. (memif_set_next_free_buffer cannot roll back: its
// 32-bit next_buf minus a 16-bit desc_index refuses once next_buf passed
// 65535.)
static inline void
memifgo_tx_flush (uintptr_t conn, const memifgo_guard_t *g, memifgo_q_t *q,
		  uint16_t qid)
{
  memif_buffer_t e[64];
  if (!g->master && !(q->ring && g->bufsize))
    return; // cannot compute the data libmemif's check wants
  while (q->cur != q->rel)
    {
      uint16_t k = q->cur - q->rel, i, tx = 0;
      if (k > 64)
	k = 64;
      for (i = 0; i < k; i++)
	{
	  uint16_t slot = q->rel + i;
	  memset (&e[i], 0, sizeof (e[i]));
	  e[i].desc_index = slot;
	  if (!g->master)
	    e[i].data = (void *) memifgo_slave_slot_addr (g, q, slot);
	}
      int err = memif_tx_burst ((void *) conn, qid, e, k, &tx);
      q->rel += tx;
      q->empty += tx;
      if (err != MEMIF_ERR_SUCCESS && err != MEMIF_ERR_INT_WRITE)
	break;
      if (tx != k)
	break;
    }
}

// memif_tx_burst under the guard: checked, flushed on rejection. seq: the
// caller knows b[i].desc_index == rel + i for every i: it checked them, or
// it flushed the queue (cur == rel) and filled b itself, in order, from
// memifgo_alloc calls (libmemif hands out slots from next_buf on, which
// cur mirrors), as Forward and CopyTx do. b is the caller's C memory, not
// shared: no peer can change it; a user goroutine racing on it (a data
// race) meets libmemif's own per-buffer index check, masked to the ring.
static inline int
memifgo_send_in (uintptr_t conn, const memifgo_guard_t *g, memifgo_q_t *q,
		 uint16_t qid, memif_buffer_t *b, uint16_t count, uint16_t *tx,
		 int seq)
{
  uint16_t at = 0;
  int err;
  *tx = 0;
  if (!count)
    return MEMIF_ERR_SUCCESS;
  if (MEMIFGO_UNLIKELY (err = memifgo_tx_check (g, q, b, count, &at, seq)))
    {
      memifgo_tx_flush (conn, g, q, qid);
      *tx = at;
      return err;
    }
  err = memif_tx_burst ((void *) conn, qid, b, count, tx);
  q->rel += *tx;
  if (MEMIFGO_UNLIKELY (err == MEMIF_ERR_INVAL_ARG) && q->ring)
    // Only a peer rewriting our slot between check and send gets here;
    // libmemif then published the ring up to the buffer it refused.
    q->rel = g->master ? *memifgo_tail (g, q) : *memifgo_head (q);
  return err;
}

static inline int
memifgo_send (uintptr_t conn, const memifgo_guard_t *g, memifgo_q_t *q,
	      uint16_t qid, memif_buffer_t *b, uint16_t count, uint16_t *tx)
{
  return memifgo_send_in (conn, g, q, qid, b, count, tx, 0);
}

#endif // MEMIF_GO_DESCRIPTORS_H
