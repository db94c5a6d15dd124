// syscall_tlb: what touching memory costs right after a syscall. It chases
// a pointer through K pages (one dependent load per page, as code after a
// syscall walks its stack, structs and text), with and without a read() of
// an empty non-blocking eventfd before each chase: the syscall libmemif's
// memif_rx_burst makes when it drains a ring. Where the kernel isolates
// its page tables (PTI) without PCID, every syscall flushes the TLB and
// each page then costs a page walk (BENCHMARKS.md, "Session 6").
//
//   cc -O2 -o bin/syscall_tlb bench/c/syscall_tlb.c && taskset -c 1 bin/syscall_tlb 1 16 64
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double
now_ns (void)
{
  struct timespec t;
  clock_gettime (CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

int
main (int argc, char **argv)
{
  const long n = 200000;
  int fd = eventfd (0, EFD_NONBLOCK);
  if (fd < 0 || argc < 2)
    {
      fprintf (stderr, "usage: syscall_tlb K [K ...] (pages per chase)\n");
      return 2;
    }
  for (int a = 1; a < argc; a++)
    {
      int k = atoi (argv[a]);
      if (k < 1 || k > 4096)
	return 2;
      // Pages 4 apart (no adjacent-page prefetch), a different line in each.
      size_t stride = 4 * 4096, sz = (size_t) k * stride;
      char *m = mmap (0, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m == MAP_FAILED)
	return 1;
      madvise (m, sz, MADV_NOHUGEPAGE);
      for (int i = 0; i < k; i++)
	*(char **) (m + i * stride + (i % 64) * 64) =
	  i + 1 < k ? m + (i + 1) * stride + ((i + 1) % 64) * 64 : NULL;
      double t[2];
      for (int sys = 0; sys < 2; sys++)
	{
	  uint64_t v;
	  double t0 = now_ns ();
	  for (long r = 0; r < n; r++)
	    {
	      if (sys && read (fd, &v, sizeof v) > 0)
		return 1;
	      for (char *p = m; p; p = *(char **) p)
		;
	    }
	  t[sys] = (now_ns () - t0) / n;
	}
      uint64_t v;
      double s0 = now_ns ();
      for (long r = 0; r < n; r++)
	if (read (fd, &v, sizeof v) > 0)
	  return 1;
      double s = (now_ns () - s0) / n;
      printf ("%4d pages: chase %.1f ns, read() %.1f ns, both %.1f ns: %.1f ns more per page after the syscall\n",
	      k, t[0], s, t[1], (t[1] - t[0] - s) / k);
      munmap (m, sz);
    }
  return 0;
}
