//go:build linux && cgo

// readskip.c: the process's read(), which returns EAGAIN with no system
// call for an rx queue eventfd the binding flagged as polled (readskip.h
// says why and when). The executable's read is what the dynamic linker
// binds libmemif's call to, as with munmap (munmap.c). Every other fd goes
// to glibc's read itself (__read: the same function, so cancellation and
// errno behave as before). The flags are one byte per fd, relaxed: a flag
// is set and cleared on the control path while the queue's owner may be
// inside memif_rx_burst, and either answer is right then (EAGAIN or a
// real read of an eventfd nobody signals). Fds past the table are never
// flagged. Built only with the memif_readskip build tag, never under
// AddressSanitizer (readskip.h): the functions otherwise do nothing.
#include "readskip.h"

#if MEMIFGO_READSKIP

#define MEMIFGO_READSKIP_FDS 65536

static unsigned char memifgo_polled[MEMIFGO_READSKIP_FDS];

ssize_t
read (int fd, void *buf, size_t n)
{
  if ((unsigned) fd < MEMIFGO_READSKIP_FDS
      && __atomic_load_n (&memifgo_polled[fd], __ATOMIC_RELAXED))
    {
      errno = EAGAIN;
      return -1;
    }
  return __read (fd, buf, n);
}

int
memifgo_readskip_on (void)
{
  return 1;
}

void
memifgo_readskip_set (int fd, int polled)
{
  if ((unsigned) fd < MEMIFGO_READSKIP_FDS)
    __atomic_store_n (&memifgo_polled[fd], polled != 0, __ATOMIC_RELAXED);
}

int
memifgo_readskip_polled (int fd)
{
  return (unsigned) fd < MEMIFGO_READSKIP_FDS
	 && __atomic_load_n (&memifgo_polled[fd], __ATOMIC_RELAXED);
}

#else

int
memifgo_readskip_on (void)
{
  return 0;
}

void
memifgo_readskip_set (int fd, int polled)
{
}

int
memifgo_readskip_polled (int fd)
{
  return 0;
}

#endif
