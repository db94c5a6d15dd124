// cgo_helpers.h: the only place memif-go includes libmemif. It holds the
// callback adapters with libmemif's exact signatures and the fused fast paths
// that let one cgo crossing do a whole burst.
//
// libmemif is an installed system library (FD.io's libmemif-dev package, or a
// build of upstream extras/libmemif v26.06 installed by hand); see README.md.
#ifndef MEMIF_GO_CGO_HELPERS_H
#define MEMIF_GO_CGO_HELPERS_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmemif.h>

#include "readskip.h" // libmemif's eventfd read skipped in polling mode

#ifndef LIBMEMIF_VERSION
#error "memif-go needs libmemif 4.0: libmemif.h does not define LIBMEMIF_VERSION"
#endif
// The preprocessor cannot compare strings, so the check is a negative array
// size: the compiler then names this typedef in its error.
typedef char memif_go_requires_libmemif_4_0
    [__builtin_strcmp (LIBMEMIF_VERSION, "4.0") == 0 ? 1 : -1];

// Go exports (callbacks.go). Contexts are runtime/cgo.Handle values: C never
// stores a Go pointer.
extern int memifGoOnConnect (uintptr_t h);
extern int memifGoOnDisconnect (uintptr_t h);
extern int memifGoOnInterrupt (uintptr_t h, uint16_t qid);
extern int memifGoOnControlFDUpdate (uintptr_t h, int fd, uint32_t type,
				     void *data);
extern int memifGoAddExtRegion (uintptr_t h, uint32_t size, void **addr,
				int *fd);
extern void *memifGoGetExtRegionAddr (uintptr_t h, uint32_t size, int fd);
extern int memifGoDelExtRegion (uintptr_t h, void *addr, uint32_t size,
				int fd);
extern uint32_t memifGoGetExtBufferOffset (uintptr_t h);

// The eventfd read skip (readskip.h) around libmemif's calls.
// memif_set_rx_mode that keeps rx queue qid's flag true: cleared before
// interrupts are asked for (no read is skipped once one can come), set
// only once polling is. *flagged: the fd flagged, -1 if none.
static inline int
memifgo_set_rx_mode (memif_conn_handle_t conn, memif_rx_mode_t mode,
		     uint16_t qid, int *flagged)
{
  int fd = -1;
  *flagged = -1;
  if (memif_get_queue_efd (conn, qid, &fd) != MEMIF_ERR_SUCCESS)
    fd = -1;
  if (mode != MEMIF_RX_MODE_POLLING && fd >= 0)
    memifgo_readskip_set (fd, 0);
  int err = memif_set_rx_mode (conn, mode, qid);
  if (err == MEMIF_ERR_SUCCESS && mode == MEMIF_RX_MODE_POLLING && fd >= 0
      && MEMIFGO_READSKIP)
    {
      memifgo_readskip_set (fd, 1);
      *flagged = fd;
    }
  return err;
}

// Clear the flag of every rx queue of conn, while the eventfds are still
// open: for the C bench twin's on_disconnect, on a connection that was up
// (memif_get_queue_efd trusts the ring count, which a failed handshake may
// have set before the queues exist).
static inline void
memifgo_unpoll_conn (memif_conn_handle_t conn)
{
#if MEMIFGO_READSKIP
  for (uint16_t i = 0; i < 256; i++)
    {
      int fd = -1;
      if (memif_get_queue_efd (conn, i, &fd) != MEMIF_ERR_SUCCESS)
	break; // past the last queue, or no queues (not connected)
      if (fd >= 0)
	memifgo_readskip_set (fd, 0);
    }
#endif
}

// In polling mode memif_rx_burst no longer consumes a signal: one a peer
// sends anyway (it has not seen the mode change yet, or ignores it) is
// consumed here before on_interrupt reports it, or the readable eventfd
// would bring the event loop straight back (its epoll is level-triggered).
static inline void
memifgo_drain_polled (memif_conn_handle_t conn, uint16_t qid)
{
#if MEMIFGO_READSKIP
  int fd = -1;
  uint64_t b;
  if (memif_get_queue_efd (conn, qid, &fd) == MEMIF_ERR_SUCCESS && fd >= 0
      && memifgo_readskip_polled (fd))
    {
      // One read: the fd was readable, and an eventfd gives its whole count.
      ssize_t r;
      while ((r = memifgo_read_raw (fd, &b, sizeof (b))) < 0 && errno == EINTR)
	;
      // SetRxMode(Interrupt) may have cleared the flag and the peer signalled
      // since the look above: that signal is a waiter's, give it back.
      if (r == sizeof (b) && !memifgo_readskip_polled (fd))
	(void) !write (fd, &b, sizeof (b));
    }
#endif
}

static int
memifgo_on_connect (memif_conn_handle_t conn, void *ctx)
{
  return memifGoOnConnect ((uintptr_t) ctx);
}

static int
memifgo_on_disconnect (memif_conn_handle_t conn, void *ctx)
{
  // The read-skip flags are cleared in Go (link.unpoll, in downLink once
  // down is set, before libmemif closes the eventfds): only the fds
  // SetRxMode recorded. memifgo_unpoll_conn would
  // ask libmemif for every queue's eventfd, and during a failed handshake
  // libmemif may know the ring count before it allocated the queues
  // (memif_get_queue_efd then reads through NULL).
  return memifGoOnDisconnect ((uintptr_t) ctx);
}

static int
memifgo_on_interrupt (memif_conn_handle_t conn, void *ctx, uint16_t qid)
{
  memifgo_drain_polled (conn, qid);
  return memifGoOnInterrupt ((uintptr_t) ctx, qid);
}

static int
memifgo_on_control_fd_update (memif_fd_event_t fde, void *ctx)
{
  return memifGoOnControlFDUpdate ((uintptr_t) ctx, fde.fd,
				   (uint32_t) fde.type, fde.private_ctx);
}

// External-region callbacks get the connection's private_ctx (a Conn handle).
static int
memifgo_add_ext_region (void **addr, uint32_t size, int *fd, void *ctx)
{
  return memifGoAddExtRegion ((uintptr_t) ctx, size, addr, fd);
}

static void *
memifgo_get_ext_region_addr (uint32_t size, int fd, void *ctx)
{
  return memifGoGetExtRegionAddr ((uintptr_t) ctx, size, fd);
}

static int
memifgo_del_ext_region (void *addr, uint32_t size, int fd, void *ctx)
{
  return memifGoDelExtRegion ((uintptr_t) ctx, addr, size, fd);
}

static uint32_t
memifgo_get_ext_buffer_offset (void *ctx)
{
  return memifGoGetExtBufferOffset ((uintptr_t) ctx);
}

// Always control-fd mode: the binding learns every fd libmemif opens and
// reads control messages before libmemif does (fds.go, guard.go).
static int
memifgo_create_socket (memif_socket_handle_t *sock, memif_socket_args_t *args,
		       uintptr_t h)
{
  args->on_control_fd_update = memifgo_on_control_fd_update;
  return memif_create_socket (sock, args, (void *) h);
}

static void
memifgo_register_external_region (memif_socket_handle_t sock, int with_offset)
{
  memif_register_external_region (
    sock, memifgo_add_ext_region, memifgo_get_ext_region_addr,
    memifgo_del_ext_region,
    with_offset ? memifgo_get_ext_buffer_offset : NULL);
}

static int
memifgo_create (memif_conn_handle_t *conn, memif_conn_args_t *args,
		uintptr_t h, int with_interrupt)
{
  return memif_create (conn, args, memifgo_on_connect, memifgo_on_disconnect,
		       with_interrupt ? memifgo_on_interrupt : NULL,
		       (void *) h);
}

// memif_conn_args_t.mode is a bit-field, which cgo cannot set.
static void
memifgo_set_mode (memif_conn_args_t *args, uint8_t mode)
{
  args->mode = (memif_interface_mode_t) mode;
}

static int
memifgo_set_timer (memif_socket_handle_t sock, int64_t ns)
{
  struct itimerspec t;
  memset (&t, 0, sizeof (t));
  t.it_value.tv_sec = ns / 1000000000;
  t.it_value.tv_nsec = ns % 1000000000;
  t.it_interval = t.it_value;
  return memif_set_connection_request_timer (sock, t);
}

// memif_get_details packs its region and queue arrays right after the
// strings, unaligned: copy elements out bytewise.
static void
memifgo_region_at (const memif_details_t *md, int i,
		   memif_region_details_t *out)
{
  memcpy (out, (const char *) md->regions + i * sizeof (*out), sizeof (*out));
}

static void
memifgo_queue_at (const memif_queue_details_t *q, int i,
		  memif_queue_details_t *out)
{
  memcpy (out, (const char *) q + i * sizeof (*out), sizeof (*out));
}

// Hot-path wrappers return counts, a code and flags packed in one uint64, so
// no Go pointer crosses and nothing escapes to the heap: a (bits 0-15), b
// (16-31), code (32-47: memif_err_t, MEMIFGO_E* or MEMIFGO_OWN_*), flags
// (48-55). The handle and the batch (C memory) come as uintptr_t: cgo checks
// every pointer argument on each call, ~25 ns.
#define MEMIFGO_FP(code, flags, a, b)                                          \
  (((uint64_t) (uint16_t) (code) << 32) | ((uint64_t) (flags) << 48) |         \
   ((uint64_t) (uint16_t) (b) << 16) | (uint64_t) (uint16_t) (a))
#define MEMIFGO_PACK(err, n) MEMIFGO_FP (err, 0, n, 0)
#define MEMIFGO_FP_TX 1	     // the code came from memif_tx_burst
#define MEMIFGO_FP_MORE 2    // rx: more packets wait in the ring
#define MEMIFGO_FP_PARTIAL 4 // rx: the last packet is an open chain
#define MEMIFGO_FP_BIG 8     // rx: a peer buffer beyond its size was dropped
#define MEMIFGO_FP_CUT 16    // rx: the chain the last burst left open was dropped

#include "descriptors.h"

// Every hot entry point takes claim (0 on the first try, 1 from own.go's
// slow path under the queue's lock) and runs its body as the queue's owner:
// the body's result, or the MEMIFGO_OWN_* code that kept it out. The body
// may return anywhere: leaving is here, once.
#define MEMIFGO_OWNED(guard, queue, claim, body)                               \
  ({                                                                           \
    memifgo_guard_t *own_g_ = (memifgo_guard_t *) (guard);                     \
    memifgo_q_t *own_q_ = (queue);                                             \
    int own_ = memifgo_enter (&own_q_->owner, &own_g_->down, own_q_, (claim)); \
    uint64_t own_r_ = own_ ? MEMIFGO_FP (own_, 0, 0, 0) : (uint64_t) (body);   \
    if (!own_)                                                                 \
      memifgo_leave ();                                                        \
    own_r_;                                                                    \
  })

// MEMIFGO_OWNED for a body that works on two queues (of one guard or two):
// own.go's burst2. The queues must differ.
#define MEMIFGO_OWNED2(guard, queue, guard2, queue2, claim, body)              \
  ({                                                                           \
    memifgo_guard_t *own_g_ = (memifgo_guard_t *) (guard);                     \
    memifgo_guard_t *own_g2_ = (memifgo_guard_t *) (guard2);                   \
    memifgo_q_t *own_q_ = (queue), *own_q2_ = (queue2);                        \
    int own_ = memifgo_enter2 (&own_q_->owner, &own_g_->down, own_q_,          \
			       &own_q2_->owner, &own_g2_->down, own_q2_,       \
			       (claim));                                       \
    uint64_t own_r_ = own_ ? MEMIFGO_FP (own_, 0, 0, 0) : (uint64_t) (body);   \
    if (!own_)                                                                 \
      memifgo_leave2 ();                                                       \
    own_r_;                                                                    \
  })

// Tests (own_test.go): bump the probe counters of rx queue qid (and of tx
// queue qid, both) slowly and not atomically, as the queues' owner: two
// threads inside one queue at once would lose updates.
static uint64_t
memifgo_own_probe_in (memifgo_q_t *q, memifgo_q_t *q2)
{
  volatile uint64_t *p = &q->probe, *p2 = q2 ? &q2->probe : NULL;
  uint64_t v = *p, v2 = p2 ? *p2 : 0;
  for (volatile int i = 0; i < 300; i++)
    ;
  *p = v + 1;
  if (p2)
    *p2 = v2 + 1;
  return 0;
}

static uint64_t
memifgo_own_probe (uintptr_t g, uint16_t qid, int both, int claim)
{
  memifgo_q_t *rx = memifgo_rxq (g, qid), *tx = memifgo_txq (g, qid);
  if (both)
    return MEMIFGO_OWNED2 (g, rx, g, tx, claim,
			   memifgo_own_probe_in (rx, tx));
  return MEMIFGO_OWNED (g, rx, claim, memifgo_own_probe_in (rx, NULL));
}

static uint64_t
memifgo_own_probe_count (uintptr_t g, int tx, uint16_t qid)
{
  memifgo_q_t *q = tx ? memifgo_txq (g, qid) : memifgo_rxq (g, qid);
  return __atomic_load_n (&q->probe, __ATOMIC_RELAXED);
}

static uint64_t
memifgo_rx_burst_in (uintptr_t conn_, uintptr_t g_, uint16_t qid,
		     uintptr_t bufs_, uint16_t count)
{
  uint16_t rx;
  int cut, err = memifgo_rx_take (conn_, (const memifgo_guard_t *) g_,
				  memifgo_rxq (g_, qid), qid,
				  (memif_buffer_t *) bufs_, count, &rx, &cut);
  return MEMIFGO_FP (err, cut ? MEMIFGO_FP_CUT : 0, rx, 0);
}

static uint64_t
memifgo_rx_burst (uintptr_t conn, uintptr_t g, uint16_t qid, uintptr_t bufs,
		  uint16_t count, int claim)
{
  return MEMIFGO_OWNED (g, memifgo_rxq (g, qid), claim,
			memifgo_rx_burst_in (conn, g, qid, bufs, count));
}

// Fused receive: give back the previous burst's buffers and take the next
// burst in one crossing.
static uint64_t
memifgo_refill_rx_burst_in (uintptr_t conn_, uintptr_t g_, uint16_t qid,
			    uint16_t refill, uint16_t headroom,
			    uintptr_t bufs_, uint16_t count)
{
  const memifgo_guard_t *g = (const memifgo_guard_t *) g_;
  memifgo_q_t *q = memifgo_rxq (g_, qid);
  if (refill || q->ndrop)
    {
      int err = memifgo_refill (conn_, g, q, qid, refill, headroom);
      if (err != MEMIF_ERR_SUCCESS)
	return MEMIFGO_PACK (err, 0);
    }
  return memifgo_rx_burst_in (conn_, g_, qid, bufs_, count);
}

static uint64_t
memifgo_refill_rx_burst (uintptr_t conn, uintptr_t g, uint16_t qid,
			 uint16_t refill, uint16_t headroom, uintptr_t bufs,
			 uint16_t count, int claim)
{
  return MEMIFGO_OWNED (g, memifgo_rxq (g, qid), claim,
			memifgo_refill_rx_burst_in (conn, g, qid, refill,
						    headroom, bufs, count));
}

static uint64_t
memifgo_refill_queue (uintptr_t conn, uintptr_t g, uint16_t qid,
		      uint16_t count, uint16_t headroom, int claim)
{
  memifgo_q_t *q = memifgo_rxq (g, qid);
  return MEMIFGO_OWNED (g, q, claim,
			MEMIFGO_PACK (memifgo_refill (conn,
						      (const memifgo_guard_t *) g,
						      q, qid, count, headroom),
				      0));
}

static uint64_t
memifgo_tx_burst_in (uintptr_t conn, uintptr_t g, uint16_t qid,
		     uintptr_t bufs, uint16_t count)
{
  uint16_t tx = 0;
  int err = memifgo_send (conn, (const memifgo_guard_t *) g,
			  memifgo_txq (g, qid), qid, (memif_buffer_t *) bufs,
			  count, &tx);
  return MEMIFGO_PACK (err, tx);
}

static uint64_t
memifgo_tx_burst (uintptr_t conn, uintptr_t g, uint16_t qid, uintptr_t bufs,
		  uint16_t count, int claim)
{
  return MEMIFGO_OWNED (g, memifgo_txq (g, qid), claim,
			memifgo_tx_burst_in (conn, g, qid, bufs, count));
}

// Give back every unsent allocation of tx queue qid (a rejected send,
// ReleaseTx): a = how many, b = how many remain.
static uint64_t
memifgo_tx_rollback_in (uintptr_t conn, uintptr_t g, uint16_t qid)
{
  memifgo_q_t *q = memifgo_txq (g, qid);
  uint16_t before = q->cur - q->rel;
  memifgo_tx_flush (conn, (const memifgo_guard_t *) g, q, qid);
  uint16_t left = q->cur - q->rel;
  return MEMIFGO_FP (0, 0, before - left, left);
}

static uint64_t
memifgo_tx_rollback (uintptr_t conn, uintptr_t g, uint16_t qid, int claim)
{
  return MEMIFGO_OWNED (g, memifgo_txq (g, qid), claim,
			memifgo_tx_rollback_in (conn, g, qid));
}

// worst != 0: allocate packet by packet while the batch (nbufs) can hold
// the worst case of one more packet. A master's tx descriptors have the
// lengths the slave gave them and memif_buffer_alloc writes one
// memif_buffer_t per segment, bounded only by the ring.
static uint64_t
memifgo_buffer_alloc_in (uintptr_t conn, uintptr_t g, uint16_t qid,
			 uintptr_t bufs, uint16_t nbufs, uint16_t count,
			 uint16_t size, uint16_t worst)
{
  uint16_t n = 0;
  int err = memifgo_alloc (conn, (const memifgo_guard_t *) g,
			   memifgo_txq (g, qid), qid, (memif_buffer_t *) bufs,
			   nbufs, count, size, worst, worst != 0, &n);
  return MEMIFGO_PACK (err, n);
}

static uint64_t
memifgo_buffer_alloc (uintptr_t conn, uintptr_t g, uint16_t qid,
		      uintptr_t bufs, uint16_t nbufs, uint16_t count,
		      uint16_t size, uint16_t worst, int claim)
{
  return MEMIFGO_OWNED (g, memifgo_txq (g, qid), claim,
			memifgo_buffer_alloc_in (conn, g, qid, bufs, nbufs,
						 count, size, worst));
}

static uint64_t
memifgo_buffer_enq_tx_in (uintptr_t conn_, uintptr_t g, uint16_t qid,
			  uintptr_t bufs_, uint16_t count)
{
  memif_conn_handle_t conn = (memif_conn_handle_t) conn_;
  memif_buffer_t *bufs = (memif_buffer_t *) bufs_;
  uint16_t n = 0;
  int err = memif_buffer_enq_tx (conn, qid, bufs, count, &n);
  memifgo_txq (g, qid)->cur += n;
  return MEMIFGO_PACK (err, n);
}

static uint64_t
memifgo_buffer_enq_tx (uintptr_t conn, uintptr_t g, uint16_t qid,
		       uintptr_t bufs, uint16_t count, int claim)
{
  return MEMIFGO_OWNED (g, memifgo_txq (g, qid), claim,
			memifgo_buffer_enq_tx_in (conn, g, qid, bufs, count));
}

static uint64_t
memifgo_set_next_free_buffer_in (uintptr_t conn, uintptr_t g, uint16_t qid,
				 memif_buffer_t *b)
{
  int err = memif_set_next_free_buffer ((void *) conn, qid, b);
  if (err == MEMIF_ERR_SUCCESS)
    memifgo_txq (g, qid)->cur = b->desc_index;
  return MEMIFGO_PACK (err, 0);
}

static uint64_t
memifgo_set_next_free_buffer (uintptr_t conn, uintptr_t g, uint16_t qid,
			      uintptr_t b, int claim)
{
  return MEMIFGO_OWNED (g, memifgo_txq (g, qid), claim,
			memifgo_set_next_free_buffer_in (conn, g, qid,
							 (memif_buffer_t *) b));
}

// ==== fastpath.go: fused bursts (bench-driven) ===========================
// Handles and batches come as uintptr_t: a void * or a pointer to a struct
// holding pointers makes cgo run cgoCheckPointer on it at every call (about
// 10 ns each here); Go byte/int32/uint32 slices come as typed pointers for
// the same reason. Results: MEMIFGO_FP.

#define MEMIFGO_EBADLEN 0x1000 // tx buffer b longer than it was allocated
#define MEMIFGO_EBADPKT 0x1001 // CopyTx packet b: bad offsets or length
#define MEMIFGO_EBATCH 0x1002  // CopyTx packet b cannot fit an empty batch

// Send bufs[0:ntx] (lengths checked against caps), then allocate nalloc
// packets of size bytes into bufs from 0: the pipelined zero-copy tx loop.
// worst != 0 (a master, batch smaller than the ring): the slave chose the
// segment lengths, so allocate packet by packet while the batch can hold
// worst more buffers, as memifgo_buffer_alloc does. A rejected send gives
// back every unsent allocation (b: the offending buffer).
static uint64_t
memifgo_tx_alloc_in (uintptr_t conn, uintptr_t g_, uint16_t qid,
		     uintptr_t bufs, uint32_t *caps, uint16_t cap, uint16_t ntx,
		     uint16_t nalloc, uint16_t size, uint16_t worst)
{
  const memifgo_guard_t *g = (const memifgo_guard_t *) g_;
  memifgo_q_t *q = memifgo_txq (g_, qid);
  memif_buffer_t *b = (memif_buffer_t *) bufs;
  uint16_t tx = 0, n = 0, i;
  uint32_t bad = 0;
  int err;
  uint16_t rel = q->rel;
  // One branch-free pass per buffer: lengths within what was allocated, and
  // the descriptor indexes memifgo_tx_check would otherwise walk again.
  for (i = 0; i < ntx; i++)
    bad |= (b[i].len > caps[i]) | (b[i].desc_index != (uint16_t) (rel + i));
  if (bad)
    for (i = 0; i < ntx; i++)
      if (b[i].len > caps[i])
	{
	  memifgo_tx_flush (conn, g, q, qid);
	  return MEMIFGO_FP (MEMIFGO_EBADLEN, 0, 0, i);
	}
  if (ntx)
    {
      err = memifgo_send_in (conn, g, q, qid, b, ntx, &tx, !bad);
      if (err != MEMIF_ERR_SUCCESS)
	return MEMIFGO_FP (err, MEMIFGO_FP_TX, 0, tx);
    }
  if (!nalloc)
    return MEMIFGO_FP (0, 0, 0, tx);
  err = memifgo_alloc (conn, g, q, qid, b, cap, nalloc, size, worst,
		       worst != 0, &n);
  for (i = 0; i < n; i++)
    caps[i] = b[i].len;
  return MEMIFGO_FP (err, 0, n, tx);
}

static uint64_t
memifgo_tx_alloc (uintptr_t conn, uintptr_t g, uint16_t qid, uintptr_t bufs,
		  uint32_t *caps, uint16_t cap, uint16_t ntx, uint16_t nalloc,
		  uint16_t size, uint16_t worst, int claim)
{
  return MEMIFGO_OWNED (g, memifgo_txq (g, qid), claim,
			memifgo_tx_alloc_in (conn, g, qid, bufs, caps, cap,
					     ntx, nalloc, size, worst));
}

// Copy packets data[offs[i]:offs[i+1]] (i < npkts) into newly allocated tx
// buffers and send them: a = packets sent. Runs of equal length share one
// memif_buffer_alloc. seg bounds the segments per packet so libmemif never
// writes past the batch (0: the batch holds the whole ring, no bound).
static uint64_t
memifgo_copy_tx_in (uintptr_t conn, uintptr_t g_, uint16_t qid,
		    uintptr_t bufs, uint32_t cap, const uint8_t *data,
		    uint32_t datalen, const int32_t *offs, uint32_t npkts,
		    uint32_t seg)
{
  const memifgo_guard_t *g = (const memifgo_guard_t *) g_;
  memifgo_q_t *q = memifgo_txq (g_, qid);
  memif_buffer_t *b = (memif_buffer_t *) bufs;
  uint32_t p = 0, nb = 0, i;
  uint16_t tx = 0;
  int aerr = MEMIF_ERR_SUCCESS, err;
  // Validate everything first: nothing may stay allocated but unsent.
  for (i = 0; i < npkts; i++)
    {
      int64_t s = offs[i], e = offs[i + 1];
      if (s < 0 || e <= s || e > (int64_t) datalen || e - s > 0xffff)
	return MEMIFGO_FP (MEMIFGO_EBADPKT, 0, 0, i);
    }
  if (q->cur != q->rel) // allocations nobody will send: give them back
    memifgo_tx_flush (conn, g, q, qid);
  if (seg && g->master) // the slave's buffers, as learned (the caller assumed minseg)
    seg = memifgo_tx_seg (g, q);
  while (p < npkts)
    {
      uint32_t len = (uint32_t) (offs[p + 1] - offs[p]);
      uint32_t run = 1, fit;
      uint16_t got = 0;
      while (p + run < npkts && (uint32_t) (offs[p + run + 1] - offs[p + run]) == len
	     && run < 0xffff)
	run++;
      if (seg)
	{
	  fit = (cap - nb) / ((len + seg - 1) / seg);
	  if (run > fit)
	    run = fit;
	}
      if (run == 0)
	{
	  if (nb == 0)
	    return MEMIFGO_FP (MEMIFGO_EBATCH, 0, 0, p);
	  break; // batch full
	}
      // keep: an allocation a racing slave overran stays queued behind
      // ours, which go out first.
      aerr = memifgo_alloc_keep (conn, g, q, qid, b + nb, cap - nb,
				 (uint16_t) run, (uint16_t) len, 0, seg != 0, 1,
				 &got);
      if (seg && g->master) // the allocation may have lowered it
	seg = memifgo_tx_seg (g, q);
      const uint8_t *base = data + offs[p], *src = base;
      for (i = nb; i < nb + got; i++)
	{
	  memcpy (b[i].data, src, b[i].len);
	  src += b[i].len;
	}
      nb += got;
      p += (uint32_t) (src - base) / len; // alloc never leaves a partial chain
      if (aerr != MEMIF_ERR_SUCCESS || !got)
	break; // !got: the worst case of one more packet does not fit
    }
  // b[0:nb] is in ring order from rel, as in Forward (descriptors.h,
  // memifgo_send_in): no check.
  err = memifgo_send_in (conn, g, q, qid, b, (uint16_t) nb, &tx, 1);
  if (q->cur != q->rel) // an overrun allocation: libmemif cannot take it back
    memifgo_tx_flush (conn, g, q, qid);
  if (err != MEMIF_ERR_SUCCESS)
    {
      uint32_t sent = 0;
      for (i = 0; i < tx; i++)
	sent += !(b[i].flags & MEMIF_BUFFER_FLAG_NEXT);
      return MEMIFGO_FP (err, MEMIFGO_FP_TX, sent, 0);
    }
  return MEMIFGO_FP (aerr, 0, p, 0);
}

static uint64_t
memifgo_copy_tx (uintptr_t conn, uintptr_t g, uint16_t qid, uintptr_t bufs,
		 uint32_t cap, const uint8_t *data, uint32_t datalen,
		 const int32_t *offs, uint32_t npkts, uint32_t seg, int claim)
{
  return MEMIFGO_OWNED (g, memifgo_txq (g, qid), claim,
			memifgo_copy_tx_in (conn, g, qid, bufs, cap, data,
					    datalen, offs, npkts, seg));
}

// Receive into bufs, copy packets back to back into dst (packet i is
// dst[offs[i]:offs[i+1]], offs[0] = 0), and give every buffer back with one
// memif_refill_queue: a = packets. At most cap buffers are taken, each burst
// bounded so its buffers (seg bytes at most) fit in dst; an open chain is
// then completed one buffer at a time. A chain that cannot complete (dst
// full, or the peer has not published the rest) comes last, flagged
// PARTIAL: the next call's first packet continues it.
static uint64_t
memifgo_copy_rx_in (uintptr_t conn, uintptr_t g_, uint16_t qid,
		    uintptr_t bufs, uint32_t cap, uint16_t headroom,
		    uint8_t *dst, uint32_t dstlen, int32_t *offs,
		    uint32_t maxpkts, uint32_t seg)
{
  const memifgo_guard_t *g = (const memifgo_guard_t *) g_;
  memifgo_q_t *q = memifgo_rxq (g_, qid);
  memif_buffer_t *b = (memif_buffer_t *) bufs;
  uint32_t pos = 0, start = 0, pk = 0, used = 0, pb = 0, k, i;
  int open = 0, err = MEMIF_ERR_SUCCESS, rerr, flags = 0;
  // A chain open at the last receive's end: its start went out (PARTIAL),
  // or it is being dropped (chain), its rest arriving now.
  int within = q->open, drop = q->chain, cont = within && !drop;
  offs[0] = 0;
  for (;;)
    {
      uint16_t rx = 0;
      if (open)
	k = 1;
      else
	{
	  k = cap < maxpkts - pk ? cap : maxpkts - pk;
	  if (used)
	    k = 0; // one batch per call, beyond completing a chain
	}
      if (k > (dstlen - pos) / seg)
	k = (dstlen - pos) / seg;
      if (k > 0xffffu - used)
	k = 0xffffu - used;
      if (k == 0)
	{
	  flags |= MEMIFGO_FP_MORE;
	  break;
	}
      err = memif_rx_burst ((void *) conn, qid, b,
			    memifgo_rx_pre (g, q, (uint16_t) k), &rx);
      q->cur += rx;
      for (i = 0; i < rx; i++)
	{
	  uint32_t len = b[i].len;
	  int next = (b[i].flags & MEMIF_BUFFER_FLAG_NEXT) != 0;
	  // A packet of one empty buffer is dropped as empty (a peer giving
	  // back allocations); an empty buffer in a chain is bad.
	  int alone = len == 0 && !open && !within && !next;
	  int bad = !alone && memifgo_bad_buf (g, &b[i]);
	  q->bad += bad;
	  q->empty += alone;
	  q->dropped += alone;
	  if (len > seg || bad) // a peer that ignores its buffer or regions
	    {
	      if (cont && !drop) // the caller holds its start: drop that too
		flags |= MEMIFGO_FP_CUT;
	      if (!drop) // the packet's buffers copied so far go too
		{
		  q->dropped += pb;
		  drop = 1; // (2 stays: ForwardDrop counted this packet)
		}
	      flags |= MEMIFGO_FP_BIG;
	    }
	  if (!drop)
	    {
	      memcpy (dst + pos, b[i].data, len);
	      pos += len;
	      pb++;
	    }
	  else
	    {
	      q->dropped++;
	      q->rest += drop == 2;
	      if (!g->master && q->canon != ~0u)
		memifgo_repair (g, q, b[i].desc_index, 0);
	    }
	  open = next;
	  if (!next)
	    {
	      if (drop)
		pos = start; // forget the whole packet
	      else if (!alone)
		offs[++pk] = (int32_t) pos;
	      start = pos;
	      drop = cont = within = 0;
	      pb = 0;
	    }
	}
      used += rx;
      if (rx)
	q->open = (uint8_t) open;
      if (err == MEMIF_ERR_NOBUF)
	{
	  err = MEMIF_ERR_SUCCESS;
	  flags |= MEMIFGO_FP_MORE;
	  if (open)
	    continue;
	  break;
	}
      flags &= ~MEMIFGO_FP_MORE;
      break; // ring drained (or an error)
    }
  q->chain = (uint8_t) drop; // the rest of a dropped chain goes as it arrives
  if (open)
    {
      if (drop)
	pos = start;
      else
	{
	  offs[++pk] = (int32_t) pos;
	  flags |= MEMIFGO_FP_PARTIAL;
	}
    }
  if (used)
    {
      rerr = memifgo_refill_slots (conn, g, q, qid, (uint16_t) used, headroom);
      if (err == MEMIF_ERR_SUCCESS)
	err = rerr;
    }
  return MEMIFGO_FP (err, flags, pk, 0);
}

static uint64_t
memifgo_copy_rx (uintptr_t conn, uintptr_t g, uint16_t qid, uintptr_t bufs,
		 uint32_t cap, uint16_t headroom, uint8_t *dst,
		 uint32_t dstlen, int32_t *offs, uint32_t maxpkts,
		 uint32_t seg, int claim)
{
  return MEMIFGO_OWNED (g, memifgo_rxq (g, qid), claim,
			memifgo_copy_rx_in (conn, g, qid, bufs, cap, headroom,
					    dst, dstlen, offs, maxpkts, seg));
}
// ==== end fastpath.go ====================================================

#include "spin.h"    // waiting receives (rxwait.go), built on the two above
#include "forward.h" // the fused forward (forward.go)
#include "fwdwait.h" // the waiting forward (fwdwait.go), built on the two above

#endif // MEMIF_GO_CGO_HELPERS_H
