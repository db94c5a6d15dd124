// readskip.h: libmemif's eventfd read() skipped on rx queues in polling mode
// (readskip.c defines read). Included by cgo_helpers.h after libmemif.h.
//
// memif_rx_burst reads the queue eventfd each time it finds the ring empty
// or empties it: a system call per burst (1-2 us here), which in polling
// mode (the peer was told not to signal) always returns EAGAIN. The
// binding flags an rx eventfd here while its queue polls, so that read
// returns EAGAIN with no system call. A flag never outlives its fd: it is
// set only once memif_set_rx_mode(POLLING) succeeded, cleared before
// memif_set_rx_mode(INTERRUPT) and, at every link down, in on_disconnect,
// which libmemif calls before it closes the eventfds (memif_close_queues
// is reached only through memif_disconnect_internal). The binding's own
// reads of those eventfds (spin.h) go around the skip (memifgo_read_raw).
#ifndef MEMIF_GO_READSKIP_H
#define MEMIF_GO_READSKIP_H

#include <errno.h>
#include <stdint.h>
#include <sys/types.h>
#include <unistd.h>

#include <libmemif.h>

// Left out under AddressSanitizer (its read interceptor must stay), with
// the memif_noreadskip build tag (readskip_off.go), and off glibc (the
// pass-through calls glibc's __read).
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)                      \
    && !defined(MEMIFGO_NOREADSKIP)
#define MEMIFGO_READSKIP 1
#else
#define MEMIFGO_READSKIP 0
#endif

// readskip.c; no-ops (polled always 0) when the skip is left out.
int memifgo_readskip_on (void);
void memifgo_readskip_set (int fd, int polled);
int memifgo_readskip_polled (int fd);

#if MEMIFGO_READSKIP
// glibc's read under another name (the same cancellation point): the
// executable's read is readskip.c's.
extern ssize_t __read (int fd, void *buf, size_t n);
#endif

// A read that is never skipped: the binding consumes eventfds itself.
static inline ssize_t
memifgo_read_raw (int fd, void *buf, size_t n)
{
#if MEMIFGO_READSKIP
  return __read (fd, buf, n);
#else
  return read (fd, buf, n);
#endif
}

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

// Clear the flag of every rx queue of conn: first thing in on_disconnect,
// while the eventfds are still open.
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
    // One read: the fd was readable, and an eventfd gives its whole count.
    while (memifgo_read_raw (fd, &b, sizeof (b)) < 0 && errno == EINTR)
      ;
#endif
}

#endif // MEMIF_GO_READSKIP_H
