//go:build linux && cgo && memif_noreadskip

package memif

// The memif_noreadskip tag leaves the process's read() alone (readskip.h):
// for programs that cannot accept a read() defined by a library. libmemif
// then reads a polling queue's eventfd in every burst, as in C.

// #cgo CFLAGS: -DMEMIFGO_NOREADSKIP
import "C"
