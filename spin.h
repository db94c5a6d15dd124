// spin.h: receives that wait for the next burst inside C (rxwait.go), so a
// waiting receiver crosses cgo once per burst received, not per empty poll.
// Included at the end of cgo_helpers.h: built on descriptors.h's guard and
// the fused receives.
//
// memif_rx_burst reads the queue eventfd each time it finds the ring empty:
// a poll loop over it is a syscall per empty poll, and a packet published
// between its look and its read has its signal swallowed (a lost wake-up
// for anyone parked on the eventfd). Here the ring's producer index is
// watched directly (the guard knows the ring once its layout was verified);
// when the spin ends the eventfd is consumed first and the ring looked at
// after, so an empty answer means any later packet signals anew.
#ifndef MEMIF_GO_SPIN_H
#define MEMIF_GO_SPIN_H

#include <time.h>

// One call never waits longer: a disconnect waits for the queue lock.
#define MEMIFGO_SPIN_MAX_NS 1000000ull
// Ring looks between clock reads (a look with a pause is tens of ns).
#define MEMIFGO_SPIN_CLOCK 32

static inline void
memifgo_relax (void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause ();
#elif defined(__aarch64__)
  __asm__ volatile ("yield" ::: "memory");
#else
  __asm__ volatile ("" ::: "memory");
#endif
}

static inline uint64_t
memifgo_now (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

static inline int
memifgo_down (const memifgo_guard_t *g)
{
  return __atomic_load_n (&g->down, __ATOMIC_RELAXED);
}

// The link goes down: waits end now rather than at their budget (the
// disconnect is waiting for their queue lock). Before the locks are taken.
static void
memifgo_guard_stop (uintptr_t g)
{
  if (g)
    __atomic_store_n (&((memifgo_guard_t *) g)->down, 1, __ATOMIC_RELAXED);
}

// Remember each rx queue's eventfd (at connect, inside libmemif's callback:
// memif_get_queue_efd only reads the queue).
static void
memifgo_guard_efds (uintptr_t g_, uintptr_t conn)
{
  memifgo_guard_t *g = (memifgo_guard_t *) g_;
  for (uint16_t i = 0; i < g->nrx; i++)
    {
      int fd = -1;
      if (memif_get_queue_efd ((void *) conn, i, &fd) == MEMIF_ERR_SUCCESS)
	g->q[i].efd = fd;
    }
}

// A count of 1 on an rx queue's eventfd: what a peer's signal is.
static void
memifgo_efd_signal (int fd)
{
  uint64_t one = 1;
  while (write (fd, &one, sizeof (one)) < 0 && errno == EINTR)
    ;
}

// The link went down (OnDisconnect, before libmemif closes the eventfds):
// a count on every rx queue's eventfd wakes a reader parked on it, whose
// next burst then fails.
static void
memifgo_guard_kick (uintptr_t g_)
{
  memifgo_guard_t *g = (memifgo_guard_t *) g_;
  for (uint16_t i = 0; g && i < g->nrx; i++)
    if (g->q[i].efd >= 0)
      memifgo_efd_signal (g->q[i].efd);
}

// After OnInterrupt returned (queue in interrupt mode, its lock held, on
// the callback's thread): memif_rx_burst reads the eventfd after it looked
// at the ring, so a packet published between the two has its signal
// swallowed and would wait for the next one. When the callback received on
// this queue itself (this thread owns it), slots still unread give the
// eventfd a count back: the level-triggered event loop runs OnInterrupt
// again. A callback that leaves the receive to another thread gets no
// count: that thread's reads are its own (a count here could outlast them).
static void
memifgo_rx_rearm (uintptr_t g_, uint16_t qid)
{
  const memifgo_guard_t *g = (const memifgo_guard_t *) g_;
  const memifgo_q_t *q = memifgo_rxq (g_, qid);
  if (!q->ring || q->efd < 0 || memifgo_down (g) || !memifgo_self
      || __atomic_load_n (&q->owner, __ATOMIC_RELAXED) != memifgo_self)
    return;
  __atomic_thread_fence (__ATOMIC_SEQ_CST); // the look after libmemif's read
  if (memifgo_rx_last (g, q) == __atomic_load_n (&q->cur, __ATOMIC_RELAXED))
    return;
  memifgo_efd_signal (q->efd);
}

typedef struct
{
  uint64_t start, end; // ns; start 0: not read yet (no spin), end 0: no spin
  uint32_t n;	       // looks so far
  uint8_t armed;       // the eventfd was consumed: an empty look is final
  uint8_t noarm;       // end the spin without touching the eventfd
  const memifgo_guard_t *also; // a second link whose going down ends the wait
} memifgo_wait_t;

static inline void
memifgo_wait_init (memifgo_wait_t *w, uint64_t budget)
{
  w->noarm = 0;
  w->also = NULL;
  if (budget > MEMIFGO_SPIN_MAX_NS)
    budget = MEMIFGO_SPIN_MAX_NS;
  w->start = budget ? memifgo_now () : 0; // no clock read when not spinning
  w->end = budget ? w->start + budget : 0;
  w->n = 0;
  w->armed = 0;
}

// Consume the eventfd (non-blocking; libmemif made it so), then fence so
// the next ring look comes after: the lossless order. A raw read: in
// polling mode the process's read() skips this fd (readskip.h).
static inline void
memifgo_arm (const memifgo_q_t *q, memifgo_wait_t *w)
{
  uint64_t b;
  if (q->efd >= 0)
    while (memifgo_read_raw (q->efd, &b, sizeof (b)) < 0 && errno == EINTR)
      ;
  __atomic_thread_fence (__ATOMIC_SEQ_CST);
  w->armed = 1;
}

// Whether the spin is over (the clock is read every MEMIFGO_SPIN_CLOCK looks).
static inline int
memifgo_spun (memifgo_wait_t *w)
{
  return !w->end
	 || (++w->n % MEMIFGO_SPIN_CLOCK == 0 && memifgo_now () >= w->end);
}

// Wait until rx queue q's ring holds a slot not yet received: 1. When the
// spin ends, arm and look once more: 0 if still empty (the caller may park
// on the eventfd, no wake-up lost). -1: the link (or w->also's) goes down.
static inline int
memifgo_wait_ring (const memifgo_guard_t *g, const memifgo_q_t *q,
		   memifgo_wait_t *w)
{
  for (;;)
    {
      if (MEMIFGO_UNLIKELY (memifgo_down (g)
			    || (w->also && memifgo_down (w->also))))
	return -1;
      if (memifgo_rx_last (g, q) != q->cur)
	{
	  __atomic_thread_fence (__ATOMIC_ACQUIRE); // descriptors after index
	  return 1;
	}
      if (w->armed)
	return 0;
      if (memifgo_spun (w))
	{
	  if (w->noarm) // the caller spins on (in Go) rather than parks
	    return 0;
	  memifgo_arm (q, w);
	}
      else
	memifgo_relax ();
    }
}

// Whether a wait on a ring whose layout is unknown (memif_rx_burst polled)
// is over. Unless noarm, the eventfd is consumed first and the ring polled
// once more: in polling mode memif_rx_burst no longer reads it (readskip.h),
// so a count a peer left there would end every later park at once.
static inline int
memifgo_unknown_over (const memifgo_q_t *q, memifgo_wait_t *w)
{
  if (w->armed)
    return 1;
  if (!memifgo_spun (w))
    return 0;
  if (w->noarm)
    return 1;
  memifgo_arm (q, w);
  return 0;
}

// After a look that found slots but a burst that kept nothing (every buffer
// dropped as bad): whether to stop anyway. Only a peer flooding bad
// descriptors keeps the ring busy that long.
static inline int
memifgo_wait_over (memifgo_wait_t *w)
{
  uint64_t now = memifgo_now ();
  if (!w->start)
    w->start = now;
  return now - w->start >= MEMIFGO_SPIN_MAX_NS;
}

// memifgo_refill_rx_burst that waits up to budget ns for a burst. Without a
// known ring it polls memif_rx_burst instead (lossy: its own eventfd read
// may swallow a signal, so a parked caller needs its recheck). noarm: an
// empty end leaves the eventfd alone (a syscall saved; do not park after).
static uint64_t
memifgo_refill_rx_wait_in (uintptr_t conn, uintptr_t g_, uint16_t qid,
			   uint16_t refill, uint16_t headroom, uintptr_t bufs_,
			   uint16_t count, uint64_t budget, int noarm)
{
  const memifgo_guard_t *g = (const memifgo_guard_t *) g_;
  memifgo_q_t *q = memifgo_rxq (g_, qid);
  memif_buffer_t *bufs = (memif_buffer_t *) bufs_;
  memifgo_wait_t w;
  uint16_t rx;
  int err;
  if (!count)
    return memifgo_refill_rx_burst_in (conn, g_, qid, refill, headroom, bufs_,
				       0);
  // Give back first: the peer may fill those buffers while we wait.
  if (refill || q->ndrop)
    {
      err = memifgo_refill (conn, g, q, qid, refill, headroom);
      if (err != MEMIF_ERR_SUCCESS)
	return MEMIFGO_PACK (err, 0);
    }
  memifgo_wait_init (&w, budget);
  w.noarm = noarm != 0;
  for (;;)
    {
      if (q->ring)
	{
	  int r = memifgo_wait_ring (g, q, &w);
	  if (r < 0)
	    return MEMIFGO_PACK (MEMIF_ERR_DISCONNECTED, 0);
	  if (r == 0)
	    return MEMIFGO_PACK (MEMIF_ERR_SUCCESS, 0);
	}
      else if (MEMIFGO_UNLIKELY (memifgo_down (g)))
	return MEMIFGO_PACK (MEMIF_ERR_DISCONNECTED, 0);
      int cut;
      err = memifgo_rx_take (conn, g, q, qid, bufs, count, &rx, &cut);
      if (rx || cut || (err != MEMIF_ERR_SUCCESS && err != MEMIF_ERR_NOBUF))
	return MEMIFGO_FP (err, cut ? MEMIFGO_FP_CUT : 0, rx, 0);
      if (q->ndrop) // all dropped: their slots go back now
	{
	  err = memifgo_refill (conn, g, q, qid, 0, headroom);
	  if (err != MEMIF_ERR_SUCCESS)
	    return MEMIFGO_PACK (err, 0);
	}
      if (q->ring ? memifgo_wait_over (&w) : memifgo_unknown_over (q, &w))
	return MEMIFGO_PACK (MEMIF_ERR_SUCCESS, 0);
    }
}

// memifgo_copy_rx that waits up to budget ns for packets (as above).
static uint64_t
memifgo_copy_rx_wait_in (uintptr_t conn, uintptr_t g_, uint16_t qid,
			 uintptr_t bufs, uint32_t cap, uint16_t headroom,
			 uint8_t *dst, uint32_t dstlen, int32_t *offs,
			 uint32_t maxpkts, uint32_t seg, uint64_t budget)
{
  const memifgo_guard_t *g = (const memifgo_guard_t *) g_;
  memifgo_q_t *q = memifgo_rxq (g_, qid);
  memifgo_wait_t w;
  offs[0] = 0;
  memifgo_wait_init (&w, budget);
  for (;;)
    {
      if (q->ring)
	{
	  int r = memifgo_wait_ring (g, q, &w);
	  if (r < 0)
	    return MEMIFGO_FP (MEMIF_ERR_DISCONNECTED, 0, 0, 0);
	  if (r == 0)
	    return MEMIFGO_FP (MEMIF_ERR_SUCCESS, 0, 0, 0);
	}
      else if (MEMIFGO_UNLIKELY (memifgo_down (g)))
	return MEMIFGO_FP (MEMIF_ERR_DISCONNECTED, 0, 0, 0);
      uint64_t r = memifgo_copy_rx_in (conn, g_, qid, bufs, cap, headroom,
				       dst, dstlen, offs, maxpkts, seg);
      if (r) // packets, an error or a flag
	return r;
      if (q->ring ? memifgo_wait_over (&w) : memifgo_unknown_over (q, &w))
	return r;
    }
}

// The entry points, as the queue's owner (own.h): a link going down ends
// the wait (down), and its disconnect waits for it to leave.
static uint64_t
memifgo_refill_rx_wait (uintptr_t conn, uintptr_t g, uint16_t qid,
			uint16_t refill, uint16_t headroom, uintptr_t bufs,
			uint16_t count, uint64_t budget, int noarm, int claim)
{
  return MEMIFGO_OWNED (g, memifgo_rxq (g, qid), claim,
			memifgo_refill_rx_wait_in (conn, g, qid, refill,
						   headroom, bufs, count,
						   budget, noarm));
}

static uint64_t
memifgo_copy_rx_wait (uintptr_t conn, uintptr_t g, uint16_t qid,
		      uintptr_t bufs, uint32_t cap, uint16_t headroom,
		      uint8_t *dst, uint32_t dstlen, int32_t *offs,
		      uint32_t maxpkts, uint32_t seg, uint64_t budget, int claim)
{
  return MEMIFGO_OWNED (g, memifgo_rxq (g, qid), claim,
			memifgo_copy_rx_wait_in (conn, g, qid, bufs, cap,
						 headroom, dst, dstlen, offs,
						 maxpkts, seg, budget));
}

#endif // MEMIF_GO_SPIN_H
