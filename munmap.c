//go:build linux && cgo

// libmemif v26.06 cleans up a handshake that fails after the peer declared
// its regions, but before they were mapped, with munmap(NULL, size) per
// region: that unmaps [0, size), which holds a non-PIE Go binary's code
// once size passes 4 MiB, and the Go heap (0xc000000000) once the peer
// declares a region that large. A slave that sends ADD_REGION and hangs up
// could kill its master. munmap(NULL, ...) never unmaps anything a program
// meant to unmap (page 0 is never mapped), so the binding defines munmap
// in the executable, which the dynamic linker binds libmemif's call to, and
// makes that one case a no-op. Everything else goes to the system call.
// Under AddressSanitizer, whose own munmap interceptor must stay in place,
// this is left out.
#if !defined(__SANITIZE_ADDRESS__)
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/syscall.h>
#include <unistd.h>

int
munmap (void *addr, size_t len)
{
  if (addr == NULL)
    return 0;
  return (int) syscall (SYS_munmap, addr, len);
}
#endif
