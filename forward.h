// forward.h: the fused forward path (forward.go). One crossing receives a
// burst on rx queue qa of connection A, copies every complete packet into
// newly allocated tx buffers of queue qb of connection B (chains on either
// side: A's are reassembled, B's cut to its segments), sends them and gives
// A's buffers back. A may be B (hairpin). Included by cgo_helpers.h after
// descriptors.h: every descriptor goes through the same guard as the
// separate paths (memifgo_rx_pre/post, memifgo_alloc, memifgo_send,
// memifgo_refill).
//
// Backpressure, not loss: packets B cannot take now (its ring is full, or
// the tx batch is) stay in the rx batch, unrefilled, in ring order, and the
// next call sends them before anything newer; the batch then takes fewer
// new buffers, and once it is full A's ring fills and A's peer waits. A
// packet that can never fit (memif's 64 KiB, the tx batch, B's whole ring)
// is dropped, counted once.
#ifndef MEMIF_GO_FORWARD_H
#define MEMIF_GO_FORWARD_H

// Packets per call: the stack array mapping each allocated packet to the
// end of its A buffers (what stays pending if a send stops short).
#define MEMIFGO_FWD_MAXPKT 1024

// Result: packets sent (bits 0-15), buffers left pending in the rx batch
// (16-31), code (32-47: memif_err_t, MEMIFGO_FWD_EBADDESC, or own.h's
// MEMIFGO_OWN_* when the queues were not entered, as every hot entry
// point), A buffers dropped in this call (48-61: the rx batch holds at most
// MEMIFGO_FWD_MAXRX), flags (62-63).
#define MEMIFGO_FWD(code, flags, pkts, pend, drop)                            \
  (((uint64_t) ((flags) &3) << 62) | ((uint64_t) ((drop) &0x3fff) << 48)     \
   | ((uint64_t) (uint16_t) (code) << 32) | ((uint64_t) (uint16_t) (pend) << 16) \
   | (uint64_t) (uint16_t) (pkts))
#define MEMIFGO_FWD_MAXRX 0x3fff
#define MEMIFGO_FWD_TX 1	  // the code is B's (alloc, send), else A's
#define MEMIFGO_FWD_MORE 2	  // call again: A has more, or packets wait
#define MEMIFGO_FWD_EBADDESC 0xfe // B's allocation stopped before a bad slot

// Copy one packet from A's buffers s[*si..] (its chain ends at the first
// buffer without NEXT) into B's d[*di..] (same), advancing both past it.
// The lengths agree unless a peer rewrote a descriptor meanwhile: then the
// copy stops at the shorter side, never outside either chain.
static inline void
memifgo_fwd_copy (const memif_buffer_t *s, uint32_t *si, uint32_t send,
		  memif_buffer_t *d, uint32_t *di, uint32_t dend)
{
  uint32_t i = *si, j = *di, so = 0, dof = 0;
  int slast = 0, dlast = 0;
  while (i < send && j < dend)
    {
      uint32_t n = s[i].len - so, room = d[j].len - dof;
      if (n > room)
	n = room;
      memcpy ((uint8_t *) d[j].data + dof, (const uint8_t *) s[i].data + so,
	      n);
      so += n;
      dof += n;
      slast = !(s[i].flags & MEMIF_BUFFER_FLAG_NEXT);
      dlast = !(d[j].flags & MEMIF_BUFFER_FLAG_NEXT);
      if (so == s[i].len)
	{
	  if (slast)
	    break;
	  i++;
	  so = 0;
	}
      if (dof == d[j].len)
	{
	  if (dlast)
	    break;
	  j++;
	  dof = 0;
	}
    }
  // Skip what is left of either chain.
  while (i < send && (s[i].flags & MEMIF_BUFFER_FLAG_NEXT))
    i++;
  while (j < dend && (d[j].flags & MEMIF_BUFFER_FLAG_NEXT))
    j++;
  *si = i + 1;
  *di = j + 1;
}

// The guard dropped the rest of the chain open at the end of rb[0:pend]
// (a bad buffer in it): drop its start too, counted, and move the rx
// buffers received after it down. Returns the buffers kept.
static inline uint32_t
memifgo_fwd_cut (const memifgo_guard_t *g, memifgo_q_t *q, memif_buffer_t *rb,
		 uint32_t pend, uint32_t rx)
{
  uint32_t s = pend;
  while (s > 0 && (rb[s - 1].flags & MEMIF_BUFFER_FLAG_NEXT))
    s--;
  for (uint32_t j = s; j < pend; j++)
    memifgo_mark_drop (g, q, rb[j].desc_index);
  memmove (rb + s, rb + pend, rx * sizeof (*rb));
  return s + rx;
}

// rb holds pend buffers left from the previous call (A's, received, not
// refilled) and room for rcap in all; tb is B's scratch of tcap
// descriptors; seg bounds B's segments as in memifgo_copy_tx (0: tb holds
// B's whole ring). headroom is A's refill headroom.
static uint64_t
memifgo_forward_in (uintptr_t ca, uintptr_t ga_, uint16_t qa, uint16_t headroom,
		 uintptr_t rb_, uint32_t rcap, uint32_t pend, uintptr_t cb,
		 uintptr_t gb_, uint16_t qb, uintptr_t tb_, uint32_t tcap,
		 uint32_t seg)
{
  const memifgo_guard_t *ga = (const memifgo_guard_t *) ga_;
  const memifgo_guard_t *gb = (const memifgo_guard_t *) gb_;
  memifgo_q_t *qra = memifgo_rxq (ga_, qa), *qtb = memifgo_txq (gb_, qb);
  memif_buffer_t *rb = (memif_buffer_t *) rb_, *tb = (memif_buffer_t *) tb_;
  // The rest of a chain ForwardDrop gave up is that packet's: not again.
  uint64_t dropped0 = qra->dropped - qra->rest;
  uint16_t rxend[MEMIFGO_FWD_MAXPKT];
  if (seg && gb->master) // B's slave's buffers, as learned (the caller assumed minseg)
    seg = memifgo_tx_seg (gb, qtb);
  // tb holds B's whole ring: a packet longer than the ring's buffers can
  // ever hold never fits (0: B's buffer size unknown).
  uint64_t maxlen = seg ? 0 : (uint64_t) (qtb->mask + 1) * gb->bufsize;
  uint32_t i = 0, done = 0, base = 0, nb = 0, npk = 0, sent = 0, k;
  int rerr = MEMIF_ERR_SUCCESS, terr = MEMIF_ERR_SUCCESS, flags = 0;

  // 1. Top the batch up from A's ring.
  if (pend < rcap)
    {
      uint16_t rx;
      int cut;
      rerr = memifgo_rx_take (ca, ga, qra, qa, rb + pend,
			      (uint16_t) (rcap - pend), &rx, &cut);
      if (MEMIFGO_UNLIKELY (cut))
	pend = memifgo_fwd_cut (ga, qra, rb, pend, rx);
      else
	pend += rx;
      if (rerr == MEMIF_ERR_NOBUF)
	{
	  rerr = MEMIF_ERR_SUCCESS;
	  flags |= MEMIFGO_FWD_MORE;
	}
    }
  if (qtb->cur != qtb->rel) // allocations nobody will send: give them back
    memifgo_tx_flush (cb, gb, qtb, qb);

  // 2. Allocate on B for every complete packet, runs of equal length in
  // one memif_buffer_alloc, and copy.
  while (i < pend && npk < MEMIFGO_FWD_MAXPKT)
    {
      uint32_t e = i, len = 0, run = 0, fit, per, p, end;
      int allfree;
      uint16_t got = 0;
      while (e < pend && (rb[e].flags & MEMIF_BUFFER_FLAG_NEXT))
	len += rb[e++].len;
      if (e == pend)
	break; // an open chain: its rest has not arrived yet
      len += rb[e++].len;
      // Packets that never fit are dropped only ahead of every allocation
      // (else in the next call): a send falling short keeps what follows
      // the last packet sent, and a drop there would count again.
      if (len > 0xffff || (maxlen && len > maxlen)) // memif, or B's ring, cannot carry it
	{
	  if (npk)
	    break;
	  qra->dropped += e - i;
	  i = e;
	  continue;
	}
      // The run: following packets of the same length.
      for (p = e, run = 1; p < pend && run < MEMIFGO_FWD_MAXPKT - npk; run++)
	{
	  uint32_t l2 = 0, q2 = p;
	  while (q2 < pend && (rb[q2].flags & MEMIF_BUFFER_FLAG_NEXT))
	    l2 += rb[q2++].len;
	  if (q2 == pend || (l2 += rb[q2].len) != len)
	    break;
	  p = q2 + 1;
	}
      if (seg)
	{
	  per = (len + seg - 1) / seg;
	  fit = (tcap - nb) / per;
	  if (run > fit)
	    run = fit;
	}
      if (run == 0)
	{
	  if (nb == 0) // cannot fit an empty batch: never will
	    {
	      qra->dropped += e - i;
	      i = e;
	      continue;
	    }
	  break; // batch full
	}
      if (!npk)
	base = i; // everything before the first allocation was dropped
      // Before the allocation: the peer may free slots right after it.
      allfree = !seg && !npk && memifgo_tx_all_free (gb, qtb);
      // keep: an allocation a racing slave overran stays queued behind
      // ours, which go out first (3.).
      terr = memifgo_alloc_keep (cb, gb, qtb, qb, tb + nb, tcap - nb,
				 (uint16_t) run, (uint16_t) len, 0, seg != 0, 1,
				 &got);
      if (seg && gb->master) // the allocation may have lowered it
	seg = memifgo_tx_seg (gb, qtb);
      if (terr == MEMIF_ERR_NOBUF_RING && !got && allfree)
	{ // B's whole ring was free and could not take it: it never will
	  qra->dropped += e - i;
	  i = e;
	  terr = MEMIF_ERR_SUCCESS;
	  continue;
	}
      end = nb + got;
      while (nb < end && i < pend && npk < MEMIFGO_FWD_MAXPKT)
	{
	  memifgo_fwd_copy (rb, &i, pend, tb, &nb, end);
	  rxend[npk++] = (uint16_t) i;
	}
      if (terr != MEMIF_ERR_SUCCESS || !got)
	break; // ring or batch full (backpressure), or a bad slot ahead
    }

  // 3. Send.
  if (nb)
    {
      uint16_t tx = 0;
      // tb[0:nb] is in ring order from rel (memifgo_send_in): no check.
      int err = memifgo_send_in (cb, gb, qtb, qb, tb, (uint16_t) nb, &tx, 1);
      for (k = 0; k < tx; k++)
	sent += !(tb[k].flags & MEMIF_BUFFER_FLAG_NEXT);
      if (err != MEMIF_ERR_SUCCESS
	  && (terr == MEMIF_ERR_SUCCESS || terr == MEMIF_ERR_NOBUF_RING))
	terr = err; // MEMIF_ERR_INT_WRITE: sent, only the interrupt failed
    }
  // An overrun allocation (MEMIFGO_EBADDESC) is still queued: libmemif
  // cannot take buffers back, so they go to the peer empty (counted).
  if (qtb->cur != qtb->rel)
    memifgo_tx_flush (cb, gb, qtb, qb);
  if (terr == MEMIF_ERR_NOBUF_RING)
    terr = MEMIF_ERR_SUCCESS; // backpressure: the rest stays pending
  // Packets allocated but not sent (a send refused: only a peer rewriting
  // a slot gets here) stay pending too, from the end of the last one sent.
  done = sent < npk ? (sent ? rxend[sent - 1] : base) : i;

  // A batch that is one open chain can never complete: drop it, and the
  // guard drops the rest as it arrives.
  for (k = 0; done == 0 && pend == rcap && k < pend; k++)
    if (!(rb[k].flags & MEMIF_BUFFER_FLAG_NEXT))
      break; // a complete packet: B is full, not the chain too long
  if (done == 0 && pend == rcap && pend && k == pend)
    {
      qra->dropped += pend;
      qra->chain = 1;
      done = pend;
    }

  // 4. Give A's buffers of the packets sent or dropped back, keep the rest
  // at the front of the batch.
  if (done || qra->ndrop)
    {
      int err = memifgo_refill (ca, ga, qra, qa, (uint16_t) done, headroom);
      if (rerr == MEMIF_ERR_SUCCESS)
	rerr = err;
    }
  if (done && done < pend)
    memmove (rb, rb + done, (pend - done) * sizeof (*rb));
  pend -= done;
  if (pend)
    flags |= MEMIFGO_FWD_MORE;
  if (terr == MEMIFGO_EBADDESC)
    terr = MEMIFGO_FWD_EBADDESC;
  uint64_t drop = qra->dropped - qra->rest - dropped0;
  if (drop > MEMIFGO_FWD_MAXRX)
    drop = MEMIFGO_FWD_MAXRX; // cannot be: at most one per buffer received
  if (terr != MEMIF_ERR_SUCCESS)
    return MEMIFGO_FWD (terr, flags | MEMIFGO_FWD_TX, sent, pend, drop);
  return MEMIFGO_FWD (rerr, flags, sent, pend, drop);
}

// Give back the pend buffers a forward left in its batch (ForwardDrop),
// counted as dropped; open: the last is an open chain, whose rest the
// guard then drops as it arrives, in DescriptorStats but not in Forward's
// dropped (chain 2): the caller counted that packet once, here.
static int
memifgo_fwd_drop_in (uintptr_t ca, uintptr_t ga_, uint16_t qa,
		     uint16_t headroom, uint32_t pend, int open)
{
  const memifgo_guard_t *ga = (const memifgo_guard_t *) ga_;
  memifgo_q_t *q = memifgo_rxq (ga_, qa);
  q->dropped += pend;
  if (open)
    q->chain = 2;
  return memifgo_refill (ca, ga, q, qa, (uint16_t) pend, headroom);
}

// The entry points, as the owner of both queues (own.h): A's rx queue and
// B's tx queue are never the same queue, even in a hairpin.
static uint64_t
memifgo_forward (uintptr_t ca, uintptr_t ga, uint16_t qa, uint16_t headroom,
		 uintptr_t rb, uint32_t rcap, uint32_t pend, uintptr_t cb,
		 uintptr_t gb, uint16_t qb, uintptr_t tb, uint32_t tcap,
		 uint32_t seg, int claim)
{
  return MEMIFGO_OWNED2 (ga, memifgo_rxq (ga, qa), gb, memifgo_txq (gb, qb),
			 claim,
			 memifgo_forward_in (ca, ga, qa, headroom, rb, rcap, pend,
					     cb, gb, qb, tb, tcap, seg));
}

static uint64_t
memifgo_fwd_drop (uintptr_t ca, uintptr_t ga, uint16_t qa, uint16_t headroom,
		  uint32_t pend, int open, int claim)
{
  return MEMIFGO_OWNED (ga, memifgo_rxq (ga, qa), claim,
			MEMIFGO_PACK (memifgo_fwd_drop_in (ca, ga, qa, headroom,
							   pend, open),
				      0));
}

#endif // MEMIF_GO_FORWARD_H
