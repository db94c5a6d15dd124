// checks.h: the C twin's "C + the binding's checks" variant (built with
// -DMEMIF_BENCH_CHECKS, bin/memif_bench_c_checks). Every burst calls the
// binding's own C entry points (cgo_helpers.h) the way examples/bench does
// through the Go API: the guard built from memif_get_details at connect
// (descriptors.go), queue ownership claimed by the first burst (own.go),
// the fused tx send+alloc, the fused refill+receive, copy_tx/copy_rx and
// forward. The per-packet work is the plain twin's. What is left between Go
// and this binary is the cgo crossings and the binding's Go side, so
// Go/(C+checks) and (C+checks)/C split a Go/C miss in two.
//
// Included by memif_bench.c after its types; own.c and readskip.c are linked
// beside it.
#ifndef MEMIF_BENCH_CHECKS_H
#define MEMIF_BENCH_CHECKS_H

#include <sys/mman.h>

#include "../../cgo_helpers.h"

// cgo_helpers.h declares the binding's Go callbacks for its own adapters;
// this program registers its own callbacks, so they are never called.
int memifGoOnConnect (uintptr_t h) { abort (); }
int memifGoOnDisconnect (uintptr_t h) { abort (); }
int memifGoOnInterrupt (uintptr_t h, uint16_t qid) { abort (); }
int memifGoOnControlFDUpdate (uintptr_t h, int fd, uint32_t type, void *data) { abort (); }
int memifGoAddExtRegion (uintptr_t h, uint32_t size, void **addr, int *fd) { abort (); }
void *memifGoGetExtRegionAddr (uintptr_t h, uint32_t size, int fd) { abort (); }
int memifGoDelExtRegion (uintptr_t h, void *addr, uint32_t size, int fd) { abort (); }
uint32_t memifGoGetExtBufferOffset (uintptr_t h) { abort (); }

#define CHK_MINSEG 64 // burst.go's minSegment

// Each connection's guard, as its link holds it in Go.
typedef struct
{
  memif_conn_handle_t c;
  uintptr_t g; // set by the control thread at connect
  int master;
} chk_conn_t;

static chk_conn_t chk_conns[4];
static int chk_nconns;

static void
chk_register (memif_conn_handle_t c, int master)
{
  chk_conns[chk_nconns++] = (chk_conn_t){ .c = c, .master = master };
}

static chk_conn_t *
chk_find (memif_conn_handle_t c)
{
  for (int i = 0; i < chk_nconns; i++)
    if (chk_conns[i].c == c)
      return &chk_conns[i];
  return NULL;
}

static uintptr_t
chk_guard (memif_conn_handle_t c)
{
  chk_conn_t *k = chk_find (c);
  return k ? __atomic_load_n (&k->g, __ATOMIC_ACQUIRE) : 0;
}

// The rx queues the connection was granted (0 without a guard).
static int
chk_nrx (memif_conn_handle_t c)
{
  uintptr_t g = chk_guard (c);
  return g ? ((const memifgo_guard_t *) g)->nrx : 0;
}

static uint16_t
chk_code (uint64_t r)
{
  return (uint16_t) (r >> 32);
}

// own.go's burst: the call as the queue's owner; turned back because this
// thread does not own the queue yet, again with claim (Go holds the queue's
// mutex then; here one thread bursts on each queue).
#define CHK_BURST(fn, ...)                                                     \
  ({                                                                           \
    uint64_t r_ = fn (__VA_ARGS__, 0);                                         \
    if (chk_code (r_) == MEMIFGO_OWN_SLOW)                                     \
      r_ = fn (__VA_ARGS__, 1);                                                \
    r_;                                                                        \
  })

static int
chk_own_err (uint64_t r, const char *what)
{
  uint16_t c = chk_code (r);
  if ((c & ~3u) != MEMIFGO_OWN_SLOW)
    return 0;
  fprintf (stderr, "memif_bench_c_checks: %s: queue ownership refused (code %#x)\n", what, c);
  failed = 1;
  atomic_store (&stop_flag, 1);
  return 1;
}

static void
chk_fail (const char *what, uint64_t r)
{
  if (chk_own_err (r, what))
    return;
  uint16_t c = chk_code (r);
  if (c < 0x1000)
    fail (what, c);
  else
    {
      fprintf (stderr, "memif_bench_c_checks: %s: binding code %#x\n", what, c);
      failed = 1;
      atomic_store (&stop_flag, 1);
    }
}

// details.go's negotiatedBufferSize: a slave's queue details say it; a
// master derives it from the slave's layout.
static uint32_t
chk_bufsize (const memif_details_t *md)
{
  int nq = md->rx_queues_num + md->tx_queues_num;
  memif_queue_details_t q0;
  if (!nq)
    return 0;
  memifgo_queue_at (md->rx_queues_num ? md->rx_queues : md->tx_queues, 0, &q0);
  if (!q0.ring_size)
    return 0;
  if (q0.buffer_size)
    return q0.buffer_size;
  uint32_t slots = (uint32_t) nq * q0.ring_size;
  memif_region_details_t r;
  if (md->regions_num == 2)
    {
      memifgo_region_at (md, 1, &r);
      if (r.size % slots == 0)
	return r.size / slots;
    }
  else if (md->regions_num == 1)
    {
      static const uint32_t hdrs[] = { 128, 192, 256, 384 };
      memifgo_region_at (md, 0, &r);
      for (int i = 0; i < 4; i++)
	{
	  uint32_t rings = (uint32_t) nq * (hdrs[i] + 16 * q0.ring_size);
	  if (r.size > rings && (r.size - rings) % slots == 0)
	    return (r.size - rings) / slots;
	}
    }
  return 0;
}

// Conn.SetRxMode(RxModePolling): memif_set_rx_mode with the queue's
// eventfd flagged, so libmemif's read of it is skipped (readskip.h; only
// when built with -DMEMIFGO_READSKIP_ON, as the binding with its
// memif_readskip tag).
static int
chk_poll (memif_conn_handle_t c, uint16_t q)
{
  int fd;
  return memifgo_set_rx_mode (c, MEMIF_RX_MODE_POLLING, q, &fd);
}

// The binding's on_disconnect adapter: every flag cleared before libmemif
// closes the eventfds.
static void
chk_unpoll (memif_conn_handle_t c)
{
  memifgo_unpoll_conn (c);
}

// What the binding's OnConnect does before the application's: build the
// guard (descriptors.go newGuard), note the queues' eventfds, refill every
// rx queue through the guard. Runs on the control thread.
static int
chk_connect (memif_conn_handle_t conn)
{
  chk_conn_t *k = chk_find (conn);
  memif_details_t md;
  char *buf = NULL;
  int err = MEMIF_ERR_NOBUF_DET;
  for (size_t size = 4096; err == MEMIF_ERR_NOBUF_DET && size <= (1u << 20); size *= 2)
    {
      free (buf);
      if (!(buf = malloc (size)))
	return MEMIF_ERR_NOMEM;
      err = memif_get_details (conn, &md, buf, size);
    }
  if (err != MEMIF_ERR_SUCCESS || !k)
    {
      free (buf);
      return err ? err : MEMIF_ERR_INVAL_ARG;
    }
  uint16_t nrx = md.rx_queues_num, ntx = md.tx_queues_num;
  uintptr_t g = memifgo_guard_new (md.role == 0, nrx, ntx, md.regions_num,
				   chk_bufsize (&md), CHK_MINSEG);
  uint32_t sizes[2 * 256 + 1];
  memif_queue_details_t q;
  if (!g)
    err = MEMIF_ERR_NOMEM;
  for (int i = 0; g && i < md.regions_num; i++)
    {
      memif_region_details_t r;
      memifgo_region_at (&md, i, &r);
      memifgo_guard_region (g, i, (uintptr_t) r.addr, r.size);
    }
  for (int i = 0; g && i < nrx + ntx; i++)
    {
      memifgo_queue_at (i < nrx ? md.rx_queues : md.tx_queues, i < nrx ? i : i - nrx, &q);
      sizes[i] = q.ring_size;
    }
  sizes[nrx + ntx] = 0;
  int rc = g ? memifgo_guard_layout (g, sizes) : 0;
  free (buf);
  if (rc == -2)
    err = MEMIF_ERR_NOMEM;
  if (err)
    return err;
  if (rc == -1) // Go goes on with post-checks only; say so, it changes the cost
    fprintf (stderr, "memif_bench_c_checks: ring layout not verified: post-checks only\n");
  memifgo_guard_efds (g, (uintptr_t) conn);
  __atomic_store_n (&k->g, g, __ATOMIC_RELEASE);
  for (uint16_t i = 0; i < nrx; i++)
    {
      uint64_t r = CHK_BURST (memifgo_refill_queue, (uintptr_t) conn, g, i, 0xffff, 0);
      if (chk_code (r))
	{
	  chk_fail ("memifgo_refill_queue", r);
	  return 0;
	}
    }
  return 0;
}

// buffers.go's NewBuffers: n descriptors plus MEMIFGO_SLACK, anonymous
// pages (the slack is address space only).
static memif_buffer_t *
chk_batch (size_t n)
{
  void *p = mmap (NULL, (n + MEMIFGO_SLACK) * sizeof (memif_buffer_t),
		  PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    {
      perror ("memif_bench_c_checks: mmap");
      exit (1);
    }
  return p;
}

// examples/bench's txBatch: the ring, or more for chained bursts.
static uint32_t
chk_tx_batch (int packets)
{
  uint32_t n = (uint32_t) packets * segments (), ring = 1u << cfg.log2ring;
  return n > ring ? n : ring;
}

static void
chk_init_tx (txq_t *t)
{
  t->g = chk_guard (t->c);
  t->cap = chk_tx_batch (cfg.burst);
  t->bufs = chk_batch (t->cap);
  t->caps = calloc (t->cap, sizeof (uint32_t));
  t->offs = calloc (cfg.burst + 1, sizeof (int32_t));
  for (int i = 0; i <= cfg.burst; i++)
    t->offs[i] = i * cfg.size;
}

static void
chk_init_rx (rxq_t *r)
{
  r->g = chk_guard (r->c);
  r->bufs = chk_batch (cfg.burst);
  r->offs = calloc (cfg.burst + 1, sizeof (int32_t));
}

// Segment bound of CopyTx and Forward (fastpath.go): none when the batch
// holds the whole ring; on a master the slave chose the segments.
static uint32_t
chk_seg (uintptr_t g, uint32_t cap)
{
  const memifgo_guard_t *gd = (const memifgo_guard_t *) g;
  if (cap >= (1u << cfg.log2ring))
    return 0;
  return gd->master || !gd->bufsize ? CHK_MINSEG : gd->bufsize;
}

// txq.step: copy, CopyTx; zero-copy, headers into the last call's
// allocations, then TxBurstAlloc sends them and allocates the next burst.
static int
chk_tx_step (txq_t *t)
{
  int pkts = 0, i;
  uint64_t r;
  if (t->src)
    {
      for (i = 0; i < cfg.burst; i++)
	put_header (t->src + (size_t) i * cfg.size, t->seq + i, t->q);
      r = CHK_BURST (memifgo_copy_tx, (uintptr_t) t->c, t->g, t->q, (uintptr_t) t->bufs,
		     t->cap, t->src, (uint32_t) cfg.burst * cfg.size, t->offs, cfg.burst,
		     chk_seg (t->g, t->cap));
      if (chk_code (r) && (chk_code (r) != MEMIF_ERR_NOBUF_RING || (r >> 48 & MEMIFGO_FP_TX)))
	{
	  chk_fail ("memifgo_copy_tx", r);
	  return 0;
	}
      t->seq += r & 0xffff;
      return r & 0xffff;
    }
  uint16_t n = t->n;
  pkts = tx_fill (t, n);
  // TxBurstAlloc's bound: a master with a batch smaller than the ring
  // allocates packet by packet for minSegment-byte segments.
  const memifgo_guard_t *gd = (const memifgo_guard_t *) t->g;
  uint16_t worst = 0;
  if (gd->master && t->cap < (1u << cfg.log2ring))
    worst = (cfg.size + CHK_MINSEG - 1) / CHK_MINSEG;
  r = CHK_BURST (memifgo_tx_alloc, (uintptr_t) t->c, t->g, t->q, (uintptr_t) t->bufs, t->caps,
		 t->cap, n, cfg.burst, cfg.size, worst);
  if (chk_code (r) && (chk_code (r) != MEMIF_ERR_NOBUF_RING || (r >> 48 & MEMIFGO_FP_TX)))
    {
      chk_fail ("memifgo_tx_alloc", r);
      return 0;
    }
  t->n = r & 0xffff;
  t->seq += pkts;
  return pkts;
}

// rxq.step: RefillRxBurst (give back the last burst, take the next), or
// CopyRx; then the plain twin's sequence check per packet.
static int
chk_rx_step (rxq_t *r)
{
  int pkts = 0, i;
  uint64_t res;
  if (r->dst)
    {
      const memifgo_guard_t *gd = (const memifgo_guard_t *) r->g;
      uint32_t seg = gd->bufsize ? gd->bufsize : 0xffff;
      res = CHK_BURST (memifgo_copy_rx, (uintptr_t) r->c, r->g, r->q, (uintptr_t) r->bufs,
		       cfg.burst, 0, r->dst, (uint32_t) cfg.burst * cfg.bufsize + cfg.size,
		       r->offs, cfg.burst, seg);
      int flags = res >> 48 & 0xff, n = res & 0xffff, first = 0;
      if (chk_code (res))
	{
	  chk_fail ("memifgo_copy_rx", res);
	  return 0;
	}
      if (flags & MEMIFGO_FP_BIG) // CopyRx's ErrOversizedBuffer: the Go twin stops too
	{
	  fprintf (stderr, "memif_bench_c_checks: memifgo_copy_rx dropped a packet that failed the checks\n");
	  failed = 1;
	  atomic_store (&stop_flag, 1);
	  return 0;
	}
      if (r->cont && n > 0)
	first = 1; // continues the previous call's partial packet
      for (i = first; i < n; i++)
	rx_see (r, r->dst + r->offs[i]);
      if (n > 0)
	r->cont = (flags & MEMIFGO_FP_PARTIAL) != 0;
      return n - first;
    }
  res = CHK_BURST (memifgo_refill_rx_burst, (uintptr_t) r->c, r->g, r->q, r->refill, 0,
		   (uintptr_t) r->bufs, cfg.burst);
  if (chk_code (res) && chk_code (res) != MEMIF_ERR_NOBUF)
    {
      chk_fail ("memifgo_refill_rx_burst", res);
      return 0;
    }
  uint16_t n = res & 0xffff;
  r->refill = n;
  return rx_seen (r, n);
}

static void
chk_init_fwd (fwd_t *f)
{
  f->ga = chk_guard (f->a);
  f->gb = chk_guard (f->b);
  f->rx = chk_batch (cfg.burst);
  f->ntx = 1u << cfg.log2ring;
  f->tx = chk_batch (f->ntx);
}

// examples/bench's fwd.run middle: Conn.Forward, which fails on any error
// and on any buffer dropped.
static int
chk_fwd_step (fwd_t *f)
{
  uint64_t r = CHK_BURST (memifgo_forward, (uintptr_t) f->a, f->ga, 0, 0, (uintptr_t) f->rx,
			  cfg.burst, f->pend, (uintptr_t) f->b, f->gb, 0, (uintptr_t) f->tx,
			  f->ntx, chk_seg (f->gb, f->ntx));
  uint32_t dropped = r >> 48 & 0x3fff;
  if (chk_code (r))
    {
      chk_fail ("memifgo_forward", r);
      return 0;
    }
  if (dropped)
    {
      fprintf (stderr, "memif_bench_c_checks: forward dropped %u buffers\n", dropped);
      failed = 1;
      atomic_store (&stop_flag, 1);
      return 0;
    }
  f->pend = r >> 16 & 0xffff;
  return r & 0xffff;
}

// A clean loopback run must pass every check: any descriptor refused,
// dropped or empty is a failure, loudly.
static void
chk_finish (void)
{
  for (int i = 0; i < chk_nconns; i++)
    {
      uintptr_t g = chk_conns[i].g;
      const memifgo_guard_t *gd = (const memifgo_guard_t *) g;
      if (!g)
	continue;
      for (uint16_t q = 0; q < gd->nrx; q++)
	for (int w = 0; w < 3; w++)
	  if (memifgo_guard_count (g, 0, q, w))
	    {
	      fprintf (stderr, "memif_bench_c_checks: connection %d rx queue %u: %" PRIu64 " %s in a clean run\n",
		       i, q, memifgo_guard_count (g, 0, q, w),
		       w == 0 ? "bad descriptors" : w == 1 ? "buffers dropped" : "empty buffers");
	      failed = 1;
	    }
      for (uint16_t q = 0; q < gd->ntx; q++)
	if (memifgo_guard_count (g, 1, q, 0))
	  {
	    fprintf (stderr, "memif_bench_c_checks: connection %d tx queue %u: %" PRIu64 " bad descriptors in a clean run\n",
		     i, q, memifgo_guard_count (g, 1, q, 0));
	    failed = 1;
	  }
    }
}

static void
chk_free (void)
{
  for (int i = 0; i < chk_nconns; i++)
    memifgo_guard_free (chk_conns[i].g);
}

#endif // MEMIF_BENCH_CHECKS_H
