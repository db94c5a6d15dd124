//go:build linux && cgo && memif_readskip

package memif

// The memif_readskip tag builds the eventfd read skip in (readskip.h): the
// binding then defines the process's read(), and libmemif's read of a
// polling queue's eventfd returns EAGAIN with no system call. It pays in a
// loop that sends and receives on one thread; with the consumer on a CPU
// of its own it cost (BENCHMARKS.md, "Session 5").

// #cgo CFLAGS: -DMEMIFGO_READSKIP_ON
import "C"
