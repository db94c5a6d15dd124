// Command cgocall times a cgo call, on one thread or on two at once (each
// goroutine locked to its thread, the threads pinned to CPUs 0 and 1):
// whether the runtime's cgo path contends when the bench's two workers
// cross at the same time (BENCHMARKS.md, "Where the time goes now").
//
// With -read each call makes the syscall libmemif's memif_rx_burst makes
// when it drains a ring (a read of an empty non-blocking eventfd), and the
// same reads are also timed in one C loop: the difference is what a cgo
// call around a syscall costs beyond the syscall (BENCHMARKS.md, "Session
// 6"). -yield calls runtime.Gosched every so many calls, as the binding's
// pacer does (pace.go).
//
//	go run ./bench/cgocall -threads 2
//	go run ./bench/cgocall -read -calls 1000000 -yield 4000
package main

/*
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void nop(void) {}

static int efd = -1;
static int efd_open(void) { efd = eventfd(0, EFD_NONBLOCK); return efd; }
static void efd_read(void) { uint64_t v; (void) !read(efd, &v, sizeof v); }
static void efd_reads(long n) { for (long i = 0; i < n; i++) efd_read(); }
*/
import "C"

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	threads := flag.Int("threads", 1, "threads calling at once (1 or 2)")
	calls := flag.Int("calls", 20_000_000, "calls per thread")
	read := flag.Bool("read", false, "each call reads an empty eventfd; also time the reads in one C loop")
	yield := flag.Int("yield", 0, "runtime.Gosched every this many calls (0: never)")
	flag.Parse()
	if *threads != 1 && *threads != 2 {
		fmt.Fprintln(os.Stderr, "cgocall: -threads is 1 or 2")
		os.Exit(2)
	}
	if *read && C.efd_open() < 0 {
		fmt.Fprintln(os.Stderr, "cgocall: eventfd failed")
		os.Exit(1)
	}
	call := func() { C.nop() }
	if *read {
		call = func() { C.efd_read() }
	}
	var cloop time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for t := range *threads {
		wg.Add(1)
		go func(cpu int) {
			defer wg.Done()
			runtime.LockOSThread()
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				fmt.Fprintln(os.Stderr, "cgocall: pinning:", err)
				os.Exit(1)
			}
			for i := range *calls {
				call()
				if *yield > 0 && i%*yield == 0 {
					runtime.Gosched()
				}
			}
			if *read && cpu == 1 {
				t := time.Now()
				C.efd_reads(C.long(*calls))
				cloop = time.Since(t)
			}
		}(t + 2 - *threads) // one thread: CPU 1, as compare pins it
	}
	wg.Wait()
	elapsed := time.Since(start) - cloop
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(*calls) }
	fmt.Printf("%d thread(s): %.1f ns per call per thread\n", *threads, per(elapsed))
	if *read {
		fmt.Printf("the same reads in one C loop (CPU 1): %.1f ns each; a cgo call around one costs %.1f ns more\n",
			per(cloop), per(elapsed)-per(cloop))
	}
}
