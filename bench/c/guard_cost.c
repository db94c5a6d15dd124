// guard_cost.c: what the descriptor guard (descriptors.h) costs per packet,
// measured without libmemif calls or Go, so a shared, noisy host still gives
// stable numbers (best of 20000 repetitions of a 256-packet burst).
//
//   cc -O2 -I/usr/local/include bench/c/guard_cost.c -o bin/guard_cost && bin/guard_cost
//
// It builds a guard over fake rings and regions laid out as libmemif does
// (1024 slots, 2048-byte buffers) and times each check the hot path runs.
#include <stdio.h>
#include <time.h>

#include "../../cgo_helpers.h"

enum
{
  RS = 1024,
  BS = 2048,
  N = 256,
  REPS = 20000
};

static double
now (void)
{
  struct timespec t;
  clock_gettime (CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static void
run (int master, int strict)
{
  size_t r0 = 2 * (128 + 16 * RS), r1 = (size_t) 2 * RS * BS;
  uint8_t *reg0 = aligned_alloc (4096, r0), *reg1 = aligned_alloc (4096, r1);
  memset (reg0, 0, r0);
  for (int k = 0; k < 2; k++)
    *(uint32_t *) (reg0 + k * (128 + 16 * RS)) = MEMIFGO_COOKIE;
  uintptr_t g = memifgo_guard_new (master, 1, 1, 2, BS, master ? BS / 2 : 0);
  memifgo_guard_region (g, 0, (uintptr_t) reg0, r0);
  memifgo_guard_region (g, 1, (uintptr_t) reg1, r1);
  uint32_t sizes[3] = { RS, RS, 0 };
  if (memifgo_guard_layout (g, sizes) != 0)
    {
      printf ("layout not found\n");
      exit (1);
    }
  memifgo_guard_t *gd = (memifgo_guard_t *) g;
  for (int q = 0; q < 2; q++)
    for (int s = 0; s < RS; s++)
      {
	volatile memifgo_desc_t *d = memifgo_desc (gd, &gd->q[q], s);
	d->region = 1;
	d->offset = (q * RS + s) * BS;
	d->length = BS;
      }
  memif_buffer_t b[N];
  double pre = 1e18, post = 1e18, txpre = 1e18, txchk = 1e18, t0, t1, t2;
  memifgo_q_t *rq = &gd->q[0], *tq = &gd->q[1];
  for (int rep = 0; rep < REPS; rep++)
    {
      // rx: the peer published N buffers; libmemif's rx_burst filled b.
      *(volatile uint16_t *) (rq->ring + (master ? 6 : gd->tail_off)) =
	rq->cur + N;
      for (int i = 0; i < N; i++)
	{
	  uint16_t s = rq->cur + i;
	  b[i].desc_index = s;
	  b[i].data = reg1 + (s & (RS - 1)) * BS;
	  b[i].len = 64;
	  b[i].flags = 0;
	}
      t0 = now ();
      uint16_t c = memifgo_rx_pre (gd, rq, N);
      t1 = now ();
      uint16_t k = memifgo_rx_post (gd, rq, b, c);
      t2 = now ();
      rq->rel = rq->cur;
      if (k != N)
	exit (2);
      pre = t1 - t0 < pre ? t1 - t0 : pre;
      post = t2 - t1 < post ? t2 - t1 : post;
      // tx: N free slots offered (master: by the slave), then sent.
      if (master)
	*(volatile uint16_t *) (tq->ring + 6) = tq->cur + RS;
      else
	*(volatile uint16_t *) (tq->ring + gd->tail_off) = tq->cur;
      t0 = now ();
      uint32_t good = memifgo_tx_pre (gd, tq, N, strict);
      t1 = now ();
      for (int i = 0; i < N; i++)
	b[i].desc_index = tq->cur + i;
      tq->cur += N;
      uint16_t at;
      t2 = now ();
      int e = memifgo_tx_check (gd, tq, b, N, &at, 0);
      double t3 = now ();
      tq->rel += N;
      if (e || good < N)
	exit (3);
      txpre = t1 - t0 < txpre ? t1 - t0 : txpre;
      txchk = t3 - t2 < txchk ? t3 - t2 : txchk;
    }
  printf ("%-6s %-10s ns/packet: rx pre %.2f, rx post %.2f, tx alloc pre %.2f, "
	  "tx send check %.2f\n",
	  master ? "master" : "slave",
	  master ? (strict ? "small batch" : "ring batch") : "", pre / N,
	  post / N, txpre / N, txchk / N);
  memifgo_guard_free (g);
  free (reg0);
  free (reg1);
}

int
main (void)
{
  run (0, 0);
  run (1, 0);
  run (1, 1);
  return 0;
}
