// Command cgocall times an empty cgo call, on one thread or on two at once
// (each goroutine locked to its thread, the threads pinned to CPUs 0 and
// 1): whether the runtime's cgo path contends when the bench's two workers
// cross at the same time (BENCHMARKS.md, "Where the time goes now").
//
//	go run ./bench/cgocall -threads 2
package main

/*
static void nop(void) {}
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
	flag.Parse()
	if *threads != 1 && *threads != 2 {
		fmt.Fprintln(os.Stderr, "cgocall: -threads is 1 or 2")
		os.Exit(2)
	}
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
			for range *calls {
				C.nop()
			}
		}(t + 2 - *threads) // one thread: CPU 1, as compare pins it
	}
	wg.Wait()
	fmt.Printf("%d thread(s): %.1f ns per call per thread\n", *threads,
		float64(time.Since(start).Nanoseconds())/float64(*calls))
}
