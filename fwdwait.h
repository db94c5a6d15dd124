// fwdwait.h: the waiting forward (fwdwait.go): forward.h's forward that,
// when nothing waits for B (an open chain waiting for its rest waits on A)
// and A's rx ring is empty, first waits for A's
// next burst as the waiting receive does (spin.h: a bounded spin on A's
// producer index, then A's eventfd consumed and the ring looked at once
// more), in the same crossing. An empty answer then means any later packet
// signals A's eventfd anew: the caller may park on it, no wake-up lost.
#ifndef MEMIF_GO_FWDWAIT_H
#define MEMIF_GO_FWDWAIT_H

// forward.h's result for a wait that ended with a link going down: B's
// when only B went (the code is then B's, as for a send).
static inline uint64_t
memifgo_fwd_down (const memifgo_guard_t *ga, uint32_t pend)
{
  return MEMIFGO_FWD (MEMIF_ERR_DISCONNECTED,
		      memifgo_down (ga) ? 0 : MEMIFGO_FWD_TX, 0, pend, 0);
}

// Whether the pend buffers waiting in rb are one open chain only (its rest
// not yet arrived from A): then Forward waits on A, not for B. True for 0.
static inline int
memifgo_fwd_open_only (const memif_buffer_t *rb, uint32_t pend)
{
  for (uint32_t i = 0; i < pend; i++)
    if (!(rb[i].flags & MEMIF_BUFFER_FLAG_NEXT))
      return 0;
  return 1;
}

static uint64_t
memifgo_forward_wait_in (uintptr_t ca, uintptr_t ga_, uint16_t qa,
			 uint16_t headroom, uintptr_t rb, uint32_t rcap,
			 uint32_t pend, uintptr_t cb, uintptr_t gb_,
			 uint16_t qb, uintptr_t tb, uint32_t tcap,
			 uint32_t seg, uint64_t budget, int noarm)
{
  const memifgo_guard_t *ga = (const memifgo_guard_t *) ga_;
  memifgo_q_t *q = memifgo_rxq (ga_, qa);
  memifgo_wait_t w;
  if (!memifgo_fwd_open_only ((const memif_buffer_t *) rb, pend))
    // packets wait for B: that is no wait on A
    return memifgo_forward_in (ca, ga_, qa, headroom, rb, rcap, pend, cb,
			       gb_, qb, tb, tcap, seg);
  memifgo_q_t *qtb = memifgo_txq (gb_, qb);
  if (qtb->cur != qtb->rel) // B's unsent allocations go back, as forward_in does
    memifgo_tx_flush (cb, (const memifgo_guard_t *) gb_, qtb, qb);
  if (q->ndrop) // slots of dropped buffers go back before the wait
    {
      int err = memifgo_refill (ca, ga, q, qa, 0, headroom);
      if (err != MEMIF_ERR_SUCCESS)
	return MEMIFGO_FWD (err, 0, 0, pend, 0);
    }
  memifgo_wait_init (&w, budget);
  w.noarm = noarm != 0;
  w.also = (const memifgo_guard_t *) gb_; // B going down ends it too
  for (;;)
    {
      if (q->ring)
	{
	  int r = memifgo_wait_ring (ga, q, &w);
	  if (r < 0)
	    return memifgo_fwd_down (ga, pend);
	  if (r == 0) // an open chain still waits for its rest
	    return MEMIFGO_FWD (MEMIF_ERR_SUCCESS, 0, 0, pend, 0);
	}
      else if (MEMIFGO_UNLIKELY (memifgo_down (ga) || memifgo_down (w.also)))
	return memifgo_fwd_down (ga, pend);
      uint64_t r = memifgo_forward_in (ca, ga_, qa, headroom, rb, rcap, pend,
				       cb, gb_, qb, tb, tcap, seg);
      // forward_in flags "more" for any pending buffers: the same open
      // chain (pend on entry) with nothing sent or dropped is no progress,
      // so wait on (an unknown ring is polled here: else the caller spins).
      if (pend && r == MEMIFGO_FWD (MEMIF_ERR_SUCCESS, MEMIFGO_FWD_MORE, 0, pend, 0))
	r = 0;
      if (r) // sent, pending, dropped, an error or a flag
	return r;
      // Slots seen, nothing kept (an unknown ring polls; a hostile one may
      // publish what the guard refuses): bounded as the waiting receive,
      // which on an unknown ring consumes the eventfd before its last poll.
      if (q->ring ? memifgo_wait_over (&w) : memifgo_unknown_over (q, &w))
	return MEMIFGO_FWD (MEMIF_ERR_SUCCESS, 0, 0, pend, 0);
    }
}

// The entry point, as the owner of both queues (own.h), as memifgo_forward.
static uint64_t
memifgo_forward_wait (uintptr_t ca, uintptr_t ga, uint16_t qa,
		      uint16_t headroom, uintptr_t rb, uint32_t rcap,
		      uint32_t pend, uintptr_t cb, uintptr_t gb, uint16_t qb,
		      uintptr_t tb, uint32_t tcap, uint32_t seg, uint64_t budget,
		      int noarm, int claim)
{
  return MEMIFGO_OWNED2 (ga, memifgo_rxq (ga, qa), gb, memifgo_txq (gb, qb),
			 claim,
			 memifgo_forward_wait_in (ca, ga, qa, headroom, rb, rcap,
						  pend, cb, gb, qb, tb, tcap,
						  seg, budget, noarm));
}

#endif // MEMIF_GO_FWDWAIT_H
