// memif_bench: the C twin of examples/bench, written directly against
// libmemif 4.0. Same algorithm, same flags, same JSON, so ./build.sh bench
// can run the two alternately and compare.
//
//   cc -O2 -o bin/memif_bench_c bench/c/memif_bench.c -lmemif -lpthread
//
// With -DMEMIF_BENCH_FENCE a full fence surrounds every libmemif call (LM).
//
// With -DMEMIF_BENCH_CHECKS (and own.c and readskip.c linked in) every burst
// goes through the binding's C layer instead of libmemif directly
// (checks.h); with -DMEMIFGO_READSKIP_ON too, libmemif's eventfd read in
// polling mode is skipped as the binding built with -tags memif_readskip
// skips it (readskip.h):
//
//   cc -O2 -DMEMIF_BENCH_CHECKS -o bin/memif_bench_c_checks bench/c/memif_bench.c own.c readskip.c -lmemif -lpthread
//   memif_bench_c -size 64 -burst 64 -threads 1 -duration 2s -json
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <libmemif.h>

// -DMEMIF_BENCH_FENCE: a full fence before and after every libmemif call
// on the hot path, as a cgo crossing's locked instructions make one (the
// 2-thread question in BENCHMARKS.md); otherwise the call as is.
#ifdef MEMIF_BENCH_FENCE
#define LM(call)                                                              \
  ({                                                                          \
    __atomic_thread_fence (__ATOMIC_SEQ_CST);                                 \
    int lm_r_ = (call);                                                       \
    __atomic_thread_fence (__ATOMIC_SEQ_CST);                                 \
    lm_r_;                                                                    \
  })
#else
#define LM(call) (call)
#endif

#define MAXQ 16

#ifdef MEMIF_BENCH_CHECKS
#define IMPL "c+checks"
static int chk_connect (memif_conn_handle_t conn);
static void chk_register (memif_conn_handle_t c, int master);
static int chk_nrx (memif_conn_handle_t c);
static int chk_poll (memif_conn_handle_t c, uint16_t q);
static void chk_unpoll (memif_conn_handle_t c);
#else
#define IMPL "c"
#endif

typedef struct
{
  const char *socket;
  int master, echo, threads, size, burst, queues, pingpong, json;
  int workload_copy, workload_fwd, bufsize, log2ring;
  double duration;
  int cpus[64], ncpus;
} config_t;

static config_t cfg = { .threads = 1, .size = 64, .burst = 64, .queues = 1,
			.duration = 5, .bufsize = 2048, .log2ring = 11 };

// Counters on their own cache lines, as in the Go twin.
typedef struct
{
  _Atomic uint64_t n;
  char pad[56];
} counter_t;

static counter_t c_tx, c_rx, c_rtts;
static _Atomic int64_t cpu_ns; // CPU time of the worker threads
static int chains; // chains may occur: follow NEXT flags (as the Go twin)
static atomic_int stop_flag, connected;
static _Atomic uint64_t lost_total;
static int failed;

static void
fail (const char *what, int err)
{
  fprintf (stderr, "memif_bench_c: %s: %s\n", what, memif_strerror (err));
  failed = 1;
  atomic_store (&stop_flag, 1);
}

static int64_t
now_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
segments (void)
{
  return (cfg.size + cfg.bufsize - 1) / cfg.bufsize;
}

static void
put_header (uint8_t *b, uint64_t seq, uint16_t q)
{
  memcpy (b, &seq, 8);
  memcpy (b + 8, &q, 2);
}

// ---- connection ----------------------------------------------------------

static int
on_connect (memif_conn_handle_t conn, void *ctx)
{
  // What the binding does before OnConnect (refill every rx queue), then
  // what the Go twin's OnConnect does (busy polling: no eventfd writes).
#ifdef MEMIF_BENCH_CHECKS
  int err = chk_connect (conn); // the binding's own way, through its guard
  if (err)
    fail ("building the guard", err);
#endif
  for (int q = 0; q < cfg.queues; q++)
    {
#ifdef MEMIF_BENCH_CHECKS
      if (q >= chk_nrx (conn))
	break; // fewer queues granted
#else
      if (LM (memif_refill_queue (conn, q, -1, 0)) != MEMIF_ERR_SUCCESS)
	break; // fewer queues granted
#endif
#ifdef MEMIF_BENCH_CHECKS
      chk_poll (conn, q); // as SetRxMode: libmemif's eventfd read skipped
#else
      memif_set_rx_mode (conn, MEMIF_RX_MODE_POLLING, q);
#endif
    }
  atomic_fetch_add (&connected, 1);
  return 0;
}

static atomic_int running; // worker threads inside their loops

// libmemif frees the rings right after this returns: stop the workers and
// wait for them first (a peer going away ends the run).
static int
on_disconnect (memif_conn_handle_t conn, void *ctx)
{
#ifdef MEMIF_BENCH_CHECKS
  chk_unpoll (conn); // as the binding's adapter, before the eventfds close
#endif
  atomic_store (&stop_flag, 1);
  while (atomic_load (&running))
    sched_yield ();
  return 0;
}

static memif_socket_handle_t sock;
static atomic_int ctl_stop;

static void *
control_thread (void *arg)
{
  while (!atomic_load (&ctl_stop))
    {
      int err = memif_poll_event (sock, 20);
      if (err == MEMIF_ERR_POLL_CANCEL)
	break;
    }
  return NULL;
}

static int
create_conn_id (memif_conn_handle_t *c, int master, uint32_t id)
{
  memif_conn_args_t a;
  memset (&a, 0, sizeof (a));
  a.socket = sock;
  a.interface_id = id;
  a.is_master = master;
  a.num_s2m_rings = cfg.queues;
  a.num_m2s_rings = cfg.queues;
  a.buffer_size = cfg.bufsize;
  a.log2_ring_size = cfg.log2ring;
  strncpy ((char *) a.interface_name, "bench", sizeof (a.interface_name) - 1);
  int err = memif_create (c, &a, on_connect, on_disconnect, NULL, NULL);
#ifdef MEMIF_BENCH_CHECKS
  if (err == MEMIF_ERR_SUCCESS)
    chk_register (*c, master);
#endif
  return err;
}

static int
create_conn (memif_conn_handle_t *c, int master)
{
  return create_conn_id (c, master, 0);
}

// ---- throughput: tx, rx, echo per queue ----------------------------------

typedef struct
{
  memif_conn_handle_t c;
  uint16_t q;
  memif_buffer_t *bufs;
  uint64_t seq;
  uint8_t *src; // copy workload: burst whole frames
#ifdef MEMIF_BENCH_CHECKS
  uintptr_t g;	 // the connection's guard
  uint32_t *caps; // Buffers.caps: each allocation's length
  int32_t *offs;  // copy: packet i is src[offs[i]:offs[i+1]]
  uint16_t cap;	 // descriptors in bufs (the ring, as examples/bench)
  uint16_t n;	 // allocated by the last call, filled and sent by the next
#endif
} txq_t;

typedef struct
{
  memif_conn_handle_t c;
  uint16_t q;
  memif_buffer_t *bufs;
  uint16_t refill;
  uint64_t next, lost;
  int cont;
  uint8_t *dst;
#ifdef MEMIF_BENCH_CHECKS
  uintptr_t g;
  int32_t *offs; // copy: packet i is dst[offs[i]:offs[i+1]]
#endif
} rxq_t;

static void
rx_see (rxq_t *r, const uint8_t *hdr)
{
  uint64_t seq;
  memcpy (&seq, hdr, 8);
  if (seq > r->next)
    r->lost += seq - r->next;
  r->next = seq + 1;
}

// The zero-copy receive's per-packet work on bufs[0:n]: the sequence in
// each packet's first buffer. Returns the packets seen.
static int
rx_seen (rxq_t *r, uint16_t n)
{
  int pkts = 0, i;
  if (!chains)
    {
      for (i = 0; i < n; i++)
	rx_see (r, r->bufs[i].data);
      return n;
    }
  for (i = 0; i < n; i++)
    {
      if (!r->cont)
	{
	  rx_see (r, r->bufs[i].data);
	  pkts++;
	}
      r->cont = (r->bufs[i].flags & MEMIF_BUFFER_FLAG_NEXT) != 0;
    }
  return pkts;
}

typedef struct
{
  memif_conn_handle_t a, b;
  memif_buffer_t *rx, *tx;
  uint32_t pend, ntx;
#ifdef MEMIF_BENCH_CHECKS
  uintptr_t ga, gb;
#endif
} fwd_t;

// The zero-copy send's per-packet work on bufs[0:n]: a header (sequence
// and queue) in each packet's first buffer. Returns the packets written.
static int
tx_fill (txq_t *t, uint16_t n)
{
  int pkts = 0, i;
  if (!chains)
    {
      for (i = 0; i < n; i++)
	put_header (t->bufs[i].data, t->seq + i, t->q);
      return n;
    }
  for (i = 0; i < n; i++)
    {
      if (i > 0 && (t->bufs[i - 1].flags & MEMIF_BUFFER_FLAG_NEXT))
	continue; // header only in a packet's first buffer
      put_header (t->bufs[i].data, t->seq + pkts, t->q);
      pkts++;
    }
  return pkts;
}

#ifdef MEMIF_BENCH_CHECKS
#include "checks.h"
#endif

static int
tx_step (txq_t *t)
{
#ifdef MEMIF_BENCH_CHECKS
  return chk_tx_step (t);
#endif
  uint16_t n = 0, sent = 0;
  int err, pkts = 0, i;
  if (t->src)
    {
      for (i = 0; i < cfg.burst; i++)
	put_header (t->src + (size_t) i * cfg.size, t->seq + i, t->q);
    }
  err = LM (memif_buffer_alloc (t->c, t->q, t->bufs, cfg.burst, &n, cfg.size));
  if (err != MEMIF_ERR_SUCCESS && err != MEMIF_ERR_NOBUF_RING)
    {
      fail ("memif_buffer_alloc", err);
      return 0;
    }
  if (t->src)
    {
      const uint8_t *s = t->src;
      for (i = 0; i < n; i++)
	{
	  memcpy (t->bufs[i].data, s, t->bufs[i].len);
	  s += t->bufs[i].len;
	}
      pkts = (int) ((s - t->src) / cfg.size);
    }
  else
    pkts = tx_fill (t, n);
  if (n)
    {
      err = LM (memif_tx_burst (t->c, t->q, t->bufs, n, &sent));
      if (err != MEMIF_ERR_SUCCESS)
	{
	  fail ("memif_tx_burst", err);
	  return 0;
	}
    }
  t->seq += pkts;
  return pkts;
}

static int
rx_step (rxq_t *r)
{
#ifdef MEMIF_BENCH_CHECKS
  return chk_rx_step (r);
#endif
  uint16_t n = 0;
  int err, pkts = 0, i;
  if (r->dst)
    {
      // copy: receive, copy frames out, give the buffers straight back
      size_t pos = 0;
      err = LM (memif_rx_burst (r->c, r->q, r->bufs, cfg.burst, &n));
      if (err != MEMIF_ERR_SUCCESS && err != MEMIF_ERR_NOBUF)
	{
	  fail ("memif_rx_burst", err);
	  return 0;
	}
      for (i = 0; i < n; i++)
	{
	  memcpy (r->dst + pos, r->bufs[i].data, r->bufs[i].len);
	  if (!r->cont)
	    {
	      rx_see (r, r->dst + pos);
	      pkts++;
	    }
	  pos += r->bufs[i].len;
	  r->cont = (r->bufs[i].flags & MEMIF_BUFFER_FLAG_NEXT) != 0;
	}
      if (n && (err = LM (memif_refill_queue (r->c, r->q, n, 0))) != MEMIF_ERR_SUCCESS)
	fail ("memif_refill_queue", err);
      return pkts;
    }
  if (r->refill
      && (err = LM (memif_refill_queue (r->c, r->q, r->refill, 0))) != MEMIF_ERR_SUCCESS)
    {
      fail ("memif_refill_queue", err);
      return 0;
    }
  err = LM (memif_rx_burst (r->c, r->q, r->bufs, cfg.burst, &n));
  if (err != MEMIF_ERR_SUCCESS && err != MEMIF_ERR_NOBUF)
    {
      fail ("memif_rx_burst", err);
      return 0;
    }
  r->refill = n;
  return rx_seen (r, n);
}

// echo: receive and copy out, give back, then copy each frame into newly
// allocated tx buffers (runs of equal length per allocation) and send.
typedef struct
{
  memif_conn_handle_t c;
  uint16_t q;
  memif_buffer_t *rx, *tx;
  uint8_t *dst;
  uint32_t *ends;
} echo_t;

static int
echo_step (echo_t *e)
{
  uint16_t n = 0, got, sent;
  uint32_t pos = 0, np = 0, p, i;
  int err;
  err = LM (memif_rx_burst (e->c, e->q, e->rx, cfg.burst, &n));
  if (err != MEMIF_ERR_SUCCESS && err != MEMIF_ERR_NOBUF)
    {
      fail ("memif_rx_burst", err);
      return 0;
    }
  for (i = 0; i < n; i++)
    {
      memcpy (e->dst + pos, e->rx[i].data, e->rx[i].len);
      pos += e->rx[i].len;
      if (!(e->rx[i].flags & MEMIF_BUFFER_FLAG_NEXT))
	e->ends[np++] = pos;
    }
  if (n && (err = LM (memif_refill_queue (e->c, e->q, n, 0))) != MEMIF_ERR_SUCCESS)
    fail ("memif_refill_queue", err);
  for (p = 0; p < np && !atomic_load (&stop_flag);)
    {
      uint32_t start = p ? e->ends[p - 1] : 0, len = e->ends[p] - start, run = 1;
      while (p + run < np && e->ends[p + run] - e->ends[p + run - 1] == len)
	run++;
      got = 0;
      err = LM (memif_buffer_alloc (e->c, e->q, e->tx, run, &got, len));
      if (err != MEMIF_ERR_SUCCESS && err != MEMIF_ERR_NOBUF_RING)
	{
	  fail ("memif_buffer_alloc", err);
	  return 0;
	}
      const uint8_t *s = e->dst + start;
      for (i = 0; i < got; i++)
	{
	  memcpy (e->tx[i].data, s, e->tx[i].len);
	  s += e->tx[i].len;
	}
      if (got && (err = LM (memif_tx_burst (e->c, e->q, e->tx, got, &sent))) != MEMIF_ERR_SUCCESS)
	{
	  fail ("memif_tx_burst", err);
	  return 0;
	}
      p += (uint32_t) (s - (e->dst + start)) / len;
    }
  return np;
}

// ---- latency --------------------------------------------------------------

#define HIST_LEN (1 << 20)
#define WARMUP 1000

typedef struct
{
  uint32_t *b;
  uint64_t over, n;
  double sum;
  int64_t min, max;
} hist_t;

static void
hist_add (hist_t *h, int64_t ns)
{
  if (ns < 0)
    ns = 0;
  if (ns < HIST_LEN)
    h->b[ns]++;
  else
    h->over++;
  h->n++;
  h->sum += (double) ns;
  if (ns < h->min)
    h->min = ns;
  if (ns > h->max)
    h->max = ns;
}

static int64_t
hist_quantile (hist_t *h, double q)
{
  uint64_t want = (uint64_t) (q * (double) h->n), c = 0;
  if (want >= h->n)
    want = h->n - 1;
  for (int64_t i = 0; i < HIST_LEN; i++)
    {
      c += h->b[i];
      if (c > want)
	return i;
    }
  return h->max;
}

static hist_t hist;
static int64_t t0;

static void
pinger (memif_conn_handle_t c)
{
  int segs = segments ();
  memif_buffer_t *tx = calloc (segs, sizeof (*tx)), *rx = calloc (segs, sizeof (*rx));
  uint8_t *frame = malloc ((size_t) (segs + 1) * cfg.bufsize);
  uint16_t n, k, sent;
  int err;
  for (uint64_t seq = 0; !atomic_load (&stop_flag); seq++)
    {
      n = 0;
      err = LM (memif_buffer_alloc (c, 0, tx, 1, &n, cfg.size));
      if (err != MEMIF_ERR_SUCCESS || n != segs)
	{
	  fail ("memif_buffer_alloc", err);
	  break;
	}
      put_header (tx[0].data, seq, 0);
      int64_t ts = now_ns () - t0;
      memcpy ((uint8_t *) tx[0].data + 16, &ts, 8);
      if ((err = LM (memif_tx_burst (c, 0, tx, n, &sent))) != MEMIF_ERR_SUCCESS)
	{
	  fail ("memif_tx_burst", err);
	  break;
	}
      while (!atomic_load (&stop_flag))
	{
	  // Copy the echoed frame out and give the buffers back at once.
	  uint32_t pos = 0, done = 0;
	  k = 0;
	  err = LM (memif_rx_burst (c, 0, rx, segs, &k));
	  if (err != MEMIF_ERR_SUCCESS && err != MEMIF_ERR_NOBUF)
	    {
	      fail ("memif_rx_burst", err);
	      goto out;
	    }
	  for (int i = 0; i < k; i++)
	    {
	      memcpy (frame + pos, rx[i].data, rx[i].len);
	      pos += rx[i].len;
	      done = !(rx[i].flags & MEMIF_BUFFER_FLAG_NEXT);
	    }
	  if (k && (err = LM (memif_refill_queue (c, 0, k, 0))) != MEMIF_ERR_SUCCESS)
	    {
	      fail ("memif_refill_queue", err);
	      goto out;
	    }
	  if (!k)
	    continue;
	  uint64_t rs;
	  int64_t rts;
	  memcpy (&rs, frame, 8);
	  memcpy (&rts, frame + 16, 8);
	  if (rs != seq || !done)
	    {
	      fprintf (stderr, "memif_bench_c: pingpong: got seq %" PRIu64 ", want %" PRIu64 "\n", rs, seq);
	      failed = 1;
	      atomic_store (&stop_flag, 1);
	      goto out;
	    }
	  if (seq >= WARMUP)
	    hist_add (&hist, now_ns () - t0 - rts);
	  break;
	}
      atomic_fetch_add (&c_tx.n, 1);
      atomic_fetch_add (&c_rx.n, 1);
      atomic_fetch_add (&c_rtts.n, 1);
    }
out:
  free (frame);
  free (tx);
  free (rx);
}

// ---- forward: pair 1's slave rx -> pair 2's master tx ---------------------
// What Conn.Forward does, with libmemif's public API: receive, allocate on
// the other connection (runs of equal length per allocation, chains cut to
// its buffers), copy, send, refill what went out. Packets the tx ring
// cannot take stay received for the next step (backpressure, no loss).
static int
fwd_step (fwd_t *f)
{
#ifdef MEMIF_BENCH_CHECKS
  return chk_fwd_step (f);
#endif
  uint16_t n = 0, got, sent = 0;
  uint32_t i = 0, nb = 0, pkts = 0, e, len, run, p, k;
  int err = LM (memif_rx_burst (f->a, 0, f->rx + f->pend, cfg.burst - f->pend, &n));
  if (err != MEMIF_ERR_SUCCESS && err != MEMIF_ERR_NOBUF)
    {
      fail ("memif_rx_burst", err);
      return 0;
    }
  f->pend += n;
  while (i < f->pend)
    {
      for (e = i, len = 0; e < f->pend && (f->rx[e].flags & MEMIF_BUFFER_FLAG_NEXT); e++)
	len += f->rx[e].len;
      if (e == f->pend)
	break; // the rest of a chain has not arrived
      len += f->rx[e++].len;
      for (p = e, run = 1;; run++)
	{
	  uint32_t l2 = 0, q2 = p;
	  while (q2 < f->pend && (f->rx[q2].flags & MEMIF_BUFFER_FLAG_NEXT))
	    l2 += f->rx[q2++].len;
	  if (q2 >= f->pend || l2 + f->rx[q2].len != len)
	    break;
	  p = q2 + 1;
	}
      got = 0;
      err = LM (memif_buffer_alloc (f->b, 0, f->tx + nb, run, &got, len));
      if (err != MEMIF_ERR_SUCCESS && err != MEMIF_ERR_NOBUF_RING)
	{
	  fail ("memif_buffer_alloc", err);
	  return 0;
	}
      for (k = nb, nb += got; k < nb; k++) // copy packet by packet
	{
	  uint32_t so = 0, dof = 0;
	  for (;;)
	    {
	      uint32_t c = f->rx[i].len - so, room = f->tx[k].len - dof;
	      if (c > room)
		c = room;
	      memcpy ((uint8_t *) f->tx[k].data + dof, (uint8_t *) f->rx[i].data + so, c);
	      so += c;
	      dof += c;
	      if (so == f->rx[i].len)
		{
		  if (!(f->rx[i++].flags & MEMIF_BUFFER_FLAG_NEXT))
		    break;
		  so = 0;
		}
	      if (dof == f->tx[k].len)
		{
		  k++;
		  dof = 0;
		}
	    }
	  pkts++;
	}
      if (err == MEMIF_ERR_NOBUF_RING)
	break;
    }
  if (nb && (err = LM (memif_tx_burst (f->b, 0, f->tx, nb, &sent))) != MEMIF_ERR_SUCCESS)
    {
      fail ("memif_tx_burst", err);
      return 0;
    }
  if (i && (err = LM (memif_refill_queue (f->a, 0, i, 0))) != MEMIF_ERR_SUCCESS)
    fail ("memif_refill_queue", err);
  memmove (f->rx, f->rx + i, (f->pend - i) * sizeof (*f->rx));
  f->pend -= i;
  return pkts;
}

// ---- threads ---------------------------------------------------------------

typedef struct
{
  int kind; // 0 tx, 1 rx, 2 both (one thread), 3 echo, 4 pinger, 5 forward
  txq_t *tx;
  rxq_t *rx;
  echo_t *echo;
  fwd_t *fwd;
  int nq;
  memif_conn_handle_t conn;
  int cpu;
} job_t;

static int64_t
thread_cpu_ns (void)
{
  struct rusage ru;
  if (getrusage (RUSAGE_THREAD, &ru))
    return 0;
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL
	 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

static void work (job_t *j);

static void *
worker (void *arg)
{
  job_t *j = arg;
  if (j->cpu >= 0)
    {
      cpu_set_t set;
      CPU_ZERO (&set);
      CPU_SET (j->cpu, &set);
      if (pthread_setaffinity_np (pthread_self (), sizeof (set), &set))
	{
	  fprintf (stderr, "memif_bench_c: pinning to CPU %d failed\n", j->cpu);
	  failed = 1;
	  atomic_store (&stop_flag, 1);
	  atomic_fetch_sub (&running, 1);
	  return NULL;
	}
    }
  int64_t c0 = thread_cpu_ns ();
  work (j);
  atomic_fetch_add (&cpu_ns, thread_cpu_ns () - c0);
  atomic_fetch_sub (&running, 1);
  return NULL;
}

static void
work (job_t *j)
{
  int n;
  switch (j->kind)
    {
    case 0:
      while (!atomic_load (&stop_flag))
	if ((n = tx_step (j->tx)) > 0)
	  atomic_fetch_add (&c_tx.n, n);
      break;
    case 1:
      while (!atomic_load (&stop_flag))
	if ((n = rx_step (j->rx)) > 0)
	  atomic_fetch_add (&c_rx.n, n);
      break;
    case 2:
      while (!atomic_load (&stop_flag))
	for (int q = 0; q < j->nq; q++)
	  {
	    atomic_fetch_add (&c_tx.n, tx_step (&j->tx[q]));
	    atomic_fetch_add (&c_rx.n, rx_step (&j->rx[q]));
	  }
      break;
    case 3:
      while (!atomic_load (&stop_flag))
	if ((n = echo_step (j->echo)) > 0)
	  atomic_fetch_add (&c_rx.n, n);
      break;
    case 4:
      pinger (j->conn);
      break;
    case 5: // tx on pair 1, forward to pair 2, rx on pair 2: one thread
      while (!atomic_load (&stop_flag))
	{
	  atomic_fetch_add (&c_tx.n, tx_step (j->tx));
	  fwd_step (j->fwd);
	  atomic_fetch_add (&c_rx.n, rx_step (j->rx));
	}
      break;
    }
}

static void
init_tx (txq_t *t, memif_conn_handle_t c, int q)
{
  memset (t, 0, sizeof (*t));
  t->c = c;
  t->q = q;
  t->bufs = calloc (cfg.burst * segments (), sizeof (memif_buffer_t));
  if (cfg.workload_copy)
    {
      t->src = malloc ((size_t) cfg.burst * cfg.size);
      for (size_t i = 0; i < (size_t) cfg.burst * cfg.size; i++)
	t->src[i] = (uint8_t) i;
    }
#ifdef MEMIF_BENCH_CHECKS
  free (t->bufs);
  chk_init_tx (t);
#endif
}

static void
init_rx (rxq_t *r, memif_conn_handle_t c, int q)
{
  memset (r, 0, sizeof (*r));
  r->c = c;
  r->q = q;
  r->bufs = calloc (cfg.burst, sizeof (memif_buffer_t));
  if (cfg.workload_copy)
    r->dst = malloc ((size_t) cfg.burst * cfg.bufsize + cfg.size);
#ifdef MEMIF_BENCH_CHECKS
  free (r->bufs);
  chk_init_rx (r);
#endif
}

static void
init_echo (echo_t *e, memif_conn_handle_t c, int q)
{
  e->c = c;
  e->q = q;
  e->rx = calloc (cfg.burst, sizeof (memif_buffer_t));
  e->tx = calloc (cfg.burst * segments (), sizeof (memif_buffer_t));
  e->dst = malloc ((size_t) cfg.burst * cfg.bufsize + cfg.size);
  e->ends = calloc (cfg.burst + 1, sizeof (uint32_t));
}

// ---- flags ---------------------------------------------------------------

static void
usage (void)
{
  fprintf (stderr,
	   "usage: memif_bench_c [-socket PATH [-master] [-echo]] [-threads 1|2] [-size N] [-burst N]\n"
	   "       [-queues N] [-duration 5s] [-workload zerocopy|copy|forward] [-pingpong] [-json]\n"
	   "       [-bufsize N] [-ring LOG2] [-cpus 0,1]\n");
  exit (2);
}

static double
parse_duration (const char *s)
{
  char *end;
  double v = strtod (s, &end);
  if (!strcmp (end, "ms"))
    return v / 1000;
  if (!strcmp (end, "s") || !*end)
    return v;
  if (!strcmp (end, "m"))
    return v * 60;
  usage ();
  return 0;
}

static void
parse_flags (int argc, char **argv)
{
  for (int i = 1; i < argc; i++)
    {
      char *a = argv[i], *v = NULL, name[64];
      if (a[0] != '-')
	usage ();
      a += (a[1] == '-') ? 2 : 1;
      snprintf (name, sizeof (name), "%s", a);
      char *eq = strchr (name, '=');
      if (eq)
	{
	  *eq = 0;
	  v = strchr (a, '=') + 1;
	}
#define BOOLF(f, var)                                                          \
  if (!strcmp (name, f))                                                       \
    {                                                                          \
      var = v ? (!strcmp (v, "true") || !strcmp (v, "1")) : 1;                 \
      continue;                                                                \
    }
      BOOLF ("master", cfg.master)
      BOOLF ("echo", cfg.echo)
      BOOLF ("pingpong", cfg.pingpong)
      BOOLF ("json", cfg.json)
      if (!v)
	{
	  if (++i >= argc)
	    usage ();
	  v = argv[i];
	}
      if (!strcmp (name, "socket"))
	cfg.socket = v;
      else if (!strcmp (name, "threads"))
	cfg.threads = atoi (v);
      else if (!strcmp (name, "size"))
	cfg.size = atoi (v);
      else if (!strcmp (name, "burst"))
	cfg.burst = atoi (v);
      else if (!strcmp (name, "queues"))
	cfg.queues = atoi (v);
      else if (!strcmp (name, "duration"))
	cfg.duration = parse_duration (v);
      else if (!strcmp (name, "workload"))
	{
	  if (!strcmp (v, "copy"))
	    cfg.workload_copy = 1;
	  else if (!strcmp (v, "forward"))
	    cfg.workload_fwd = 1;
	  else if (strcmp (v, "zerocopy"))
	    usage ();
	}
      else if (!strcmp (name, "bufsize"))
	cfg.bufsize = atoi (v);
      else if (!strcmp (name, "ring"))
	cfg.log2ring = atoi (v);
      else if (!strcmp (name, "cpus"))
	{
	  for (char *tok = strtok (v, ","); tok && cfg.ncpus < 64; tok = strtok (NULL, ","))
	    cfg.cpus[cfg.ncpus++] = atoi (tok);
	}
      else if (!strcmp (name, "cpuprofile"))
	; // accepted for symmetry with the Go twin; use perf for C
      else
	usage ();
    }
  if (cfg.size < 64 || cfg.size > 9000 || cfg.burst < 1 || cfg.burst > 256
      || cfg.queues < 1 || cfg.queues > MAXQ || (cfg.threads != 1 && cfg.threads != 2)
      || cfg.duration <= 0 || cfg.bufsize < 128 || cfg.bufsize > 65535
      || cfg.log2ring < 4 || cfg.log2ring > 14 || (cfg.echo && !cfg.socket)
      || (cfg.workload_fwd && (cfg.socket || cfg.pingpong || cfg.threads != 1 || cfg.queues != 1)))
    usage ();
  if (cfg.pingpong && !cfg.socket)
    cfg.threads = 2;
  chains = cfg.size > cfg.bufsize || cfg.socket; // a peer may chain anything
}

// ---- main ----------------------------------------------------------------

int
main (int argc, char **argv)
{
  parse_flags (argc, argv);
#ifdef MEMIF_BENCH_CHECKS
  if (cfg.socket || cfg.pingpong)
    {
      // compare shows n/a: the variant mirrors the loopback throughput loops
      fprintf (stderr, "memif_bench_c_checks: -socket and -pingpong are not mirrored (loopback throughput only)\n");
      return 3;
    }
#endif
  char path[108];
  const char *mode = "loopback";
  if (cfg.socket)
    {
      snprintf (path, sizeof (path), "%s", cfg.socket);
      mode = cfg.echo ? "echo" : "peer";
    }
  else
    snprintf (path, sizeof (path), "@memif-go-bench-c-%d", (int) getpid ());

  memif_socket_args_t sa;
  memset (&sa, 0, sizeof (sa));
  snprintf (sa.path, sizeof (sa.path), "%s", path);
  snprintf (sa.app_name, sizeof (sa.app_name), "memif-bench-c");
  int err = memif_create_socket (&sock, &sa, NULL);
  if (err != MEMIF_ERR_SUCCESS)
    {
      fail ("memif_create_socket", err);
      return 1;
    }
  memif_conn_handle_t txc = NULL, rxc = NULL, fwa = NULL, fwb = NULL;
  int nconn = 1;
  if (cfg.workload_fwd)
    {
      // Pair 1 (id 0): txc sends to fwa; pair 2 (id 1): fwb sends to rxc.
      if ((err = create_conn_id (&txc, 1, 0)) || (err = create_conn_id (&fwa, 0, 0))
	  || (err = create_conn_id (&fwb, 1, 1)) || (err = create_conn_id (&rxc, 0, 1)))
	{
	  fail ("memif_create", err);
	  return 1;
	}
      nconn = 4;
    }
  else if (!cfg.socket)
    {
      if ((err = create_conn (&txc, 1)) || (err = create_conn (&rxc, 0)))
	{
	  fail ("memif_create", err);
	  return 1;
	}
      nconn = 2;
    }
  else
    {
      if ((err = create_conn (&txc, cfg.master)))
	{
	  fail ("memif_create", err);
	  return 1;
	}
      rxc = txc;
      if (!cfg.master)
	{
	  struct itimerspec t = { { 1, 0 }, { 1, 0 } };
	  memif_set_connection_request_timer (sock, t);
	}
    }
  pthread_t ctl;
  pthread_create (&ctl, NULL, control_thread, NULL);
  int64_t deadline = now_ns () + (cfg.socket ? 60 : 5) * 1000000000LL;
  while (atomic_load (&connected) < nconn)
    {
      if (now_ns () > deadline)
	{
	  fprintf (stderr, "memif_bench_c: no connection\n");
	  return 1;
	}
      usleep (1000);
    }

  job_t jobs[2 * MAXQ + 2];
  int nj = 0;
  txq_t txs[MAXQ];
  rxq_t rxs[MAXQ];
  echo_t echos[MAXQ];
  fwd_t fwd;
  memset (rxs, 0, sizeof (rxs));
  if (cfg.workload_fwd)
    {
      init_tx (&txs[0], txc, 0);
      init_rx (&rxs[0], rxc, 0);
      memset (&fwd, 0, sizeof (fwd));
      fwd.a = fwa;
      fwd.b = fwb;
      fwd.rx = calloc (cfg.burst, sizeof (memif_buffer_t));
      // A whole ring: every packet fits, chained to the slave's buffers.
      fwd.tx = calloc (1u << cfg.log2ring, sizeof (memif_buffer_t));
#ifdef MEMIF_BENCH_CHECKS
      free (fwd.rx);
      free (fwd.tx);
      chk_init_fwd (&fwd);
#endif
      jobs[nj++] = (job_t){ .kind = 5, .tx = txs, .rx = rxs, .fwd = &fwd };
    }
  else if (cfg.pingpong)
    {
      hist.b = calloc (HIST_LEN, sizeof (uint32_t));
      hist.min = INT64_MAX;
      jobs[nj++] = (job_t){ .kind = 4, .conn = txc };
      if (!cfg.socket)
	{
	  init_echo (&echos[0], rxc, 0);
	  jobs[nj++] = (job_t){ .kind = 3, .echo = &echos[0] };
	}
    }
  else if (cfg.echo)
    for (int q = 0; q < cfg.queues; q++)
      {
	init_echo (&echos[q], txc, q);
	jobs[nj++] = (job_t){ .kind = 3, .echo = &echos[q] };
      }
  else
    {
      for (int q = 0; q < cfg.queues; q++)
	{
	  init_tx (&txs[q], txc, q);
	  init_rx (&rxs[q], rxc, q);
	  if (cfg.threads == 2)
	    {
	      jobs[nj++] = (job_t){ .kind = 0, .tx = &txs[q] };
	      jobs[nj++] = (job_t){ .kind = 1, .rx = &rxs[q] };
	    }
	}
      if (cfg.threads == 1)
	jobs[nj++] = (job_t){ .kind = 2, .tx = txs, .rx = rxs, .nq = cfg.queues };
    }

  int tty = !cfg.json && isatty (2);
  pthread_t th[2 * MAXQ + 2];
  t0 = now_ns ();
  for (int i = 0; i < nj; i++)
    {
      jobs[i].cpu = cfg.ncpus ? cfg.cpus[i % cfg.ncpus] : -1;
      atomic_fetch_add (&running, 1);
      pthread_create (&th[i], NULL, worker, &jobs[i]);
    }
  int64_t end = t0 + (int64_t) (cfg.duration * 1e9), last_t = t0;
  uint64_t last = 0;
  while (!atomic_load (&stop_flag))
    {
      int64_t now = now_ns (), left = end - now;
      if (left <= 0)
	break;
      struct timespec ts = { 0, (left < 500000000 ? left : 500000000) };
      nanosleep (&ts, NULL);
      if (tty)
	{
	  now = now_ns ();
	  uint64_t r = atomic_load (&c_rx.n);
	  if (cfg.pingpong)
	    fprintf (stderr, "\r\033[K%" PRIu64 " round trips, %.0fs left", atomic_load (&c_rtts.n),
		     (end - now) / 1e9);
	  else
	    fprintf (stderr, "\r\033[K%.2f Mpps  packets %" PRIu64 "  %.0fs left",
		     (double) (r - last) / ((now - last_t) / 1e9) / 1e6, r, (end - now) / 1e9);
	  last = r;
	  last_t = now;
	}
    }
  atomic_store (&stop_flag, 1);
  int64_t elapsed = now_ns () - t0;
  for (int i = 0; i < nj; i++)
    pthread_join (th[i], NULL);
  if (tty)
    fprintf (stderr, "\r\033[K");
  atomic_store (&ctl_stop, 1);
  memif_cancel_poll_event (sock);
  pthread_join (ctl, NULL);
  for (int q = 0; q < cfg.queues; q++)
    lost_total += rxs[q].lost;
#ifdef MEMIF_BENCH_CHECKS
  chk_finish ();
#endif
  if (fwa)
    memif_delete (&fwa);
  if (fwb)
    memif_delete (&fwb);
  if (rxc && rxc != txc)
    memif_delete (&rxc);
  memif_delete (&txc);
  memif_delete_socket (&sock);
#ifdef MEMIF_BENCH_CHECKS
  chk_free ();
#endif
  if (failed)
    return 1;

  double secs = elapsed / 1e9;
  const char *workload = cfg.workload_fwd ? "forward" : cfg.workload_copy ? "copy" : "zerocopy";
  uint64_t rx = atomic_load (&c_rx.n), tx = atomic_load (&c_tx.n);
  double mpps = rx / secs / 1e6, gbps = rx * (double) cfg.size * 8 / secs / 1e9;
  double cpus = atomic_load (&cpu_ns) / 1e9, per_cpu = cpus > 0 ? rx / (cpus / nj) / 1e6 : 0;
  if (cfg.json)
    {
      printf ("{\"impl\":\"" IMPL "\",\"mode\":\"%s\",\"workload\":\"%s\",\"threads\":%d,\"size\":%d,"
	      "\"burst\":%d,\"queues\":%d,\"pingpong\":%s,\"duration_s\":%.9f,\"tx_packets\":%" PRIu64
	      ",\"packets\":%" PRIu64 ",\"mpps\":%.6f,\"gbps\":%.6f,\"cpu_s\":%.6f,"
	      "\"mpps_per_cpu\":%.6f,\"lost\":%" PRIu64,
	      mode, workload, cfg.threads, cfg.size, cfg.burst,
	      cfg.queues, cfg.pingpong ? "true" : "false", secs, tx, rx, mpps, gbps, cpus, per_cpu,
	      (uint64_t) lost_total);
      if (cfg.pingpong && hist.n)
	printf (",\"latency_ns\":{\"samples\":%" PRIu64 ",\"min\":%" PRId64 ",\"mean\":%.1f,\"p50\":%" PRId64
		",\"p99\":%" PRId64 ",\"p999\":%" PRId64 ",\"max\":%" PRId64 "}",
		hist.n, hist.min, hist.sum / hist.n, hist_quantile (&hist, 0.5),
		hist_quantile (&hist, 0.99), hist_quantile (&hist, 0.999), hist.max);
      printf (",\"version\":\"gcc %s\",\"libmemif\":\"%s\"}\n", __VERSION__, LIBMEMIF_VERSION);
    }
  else if (cfg.pingpong)
    printf ("pingpong %dB: %" PRIu64 " round trips in %.2fs: p50 %" PRId64 " ns, p99 %" PRId64
	    " ns, p99.9 %" PRId64 " ns (min %" PRId64 ", mean %.0f, max %" PRId64 ")\n",
	    cfg.size, hist.n, secs, hist_quantile (&hist, 0.5), hist_quantile (&hist, 0.99),
	    hist_quantile (&hist, 0.999), hist.min, hist.n ? hist.sum / hist.n : 0, hist.max);
  else
    printf ("%s %s %dB burst %d, %d thread(s), %d queue(s): %" PRIu64 " packets in %.2fs: %.2f Mpps, "
	    "%.2f Gbit/s, lost %" PRIu64 "\n",
	    mode, workload, cfg.size, cfg.burst, cfg.threads,
	    cfg.queues, rx, secs, mpps, gbps, (uint64_t) lost_total);
  return 0;
}
