//go:build linux && cgo && (amd64 || arm64 || ppc64le || riscv64 || s390x || loong64)

package memif

import "unsafe"

// The cache-line padding, checked when the package compiles: a field added
// to one of these types without taking its bytes from the padding fails
// the build here instead of silently putting hot fields of two threads on
// one line again (or pushing a type into the next size class). Each array
// has length 0 only at the intended size: larger makes the length
// positive (a type mismatch), smaller makes it negative (an overflow).
// The sizes assume 64-bit words, hence the build tags.
var (
	_ [0]struct{} = [unsafe.Sizeof(Conn{}) - 192]struct{}{}          // conn.go: the 192-byte size class
	_ [0]struct{} = [unsafe.Sizeof(link{}) - 128]struct{}{}          // conn.go: the 128-byte size class
	_ [0]struct{} = [unsafe.Sizeof(queue{}) - 128]struct{}{}         // conn.go: one queue per 128 bytes
	_ [0]struct{} = [unsafe.Sizeof(batchMeta{}) - 64]struct{}{}      // buffers.go: a cache line of its own
	_ [0]struct{} = [unsafe.Sizeof(queueCounters{}) - 128]struct{}{} // stats.go: whole lines per queue
)
