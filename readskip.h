// readskip.h: libmemif's eventfd read() skipped on rx queues in polling mode
// (readskip.c defines read). Included by cgo_helpers.h, which holds the
// calls that set and clear the flags around libmemif's.
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

// Built in only with the memif_readskip build tag (readskip_on.go): the
// read is a useless system call, but also the pause that keeps a consumer
// polling on a CPU of its own from pulling the ring's cache lines from the
// producer at every look. On this project's 2-vCPU VM, 2 threads at burst
// 64 ran 25-30 % slower without it, 1 thread 2.6x faster (BENCHMARKS.md,
// "Session 5"). Never under AddressSanitizer (its read interceptor must
// stay), nor off glibc (the pass-through calls glibc's __read).
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)                      \
    && defined(MEMIFGO_READSKIP_ON)
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

#endif // MEMIF_GO_READSKIP_H
