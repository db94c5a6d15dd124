//go:build linux && cgo

// Package memif is a cgo binding of FD.io libmemif 4.0, the C library that
// moves packets between processes through shared memory (memif), as VPP,
// DPDK and CNFs do on one host.
//
// The binding mirrors libmemif one call to one method; each method's doc
// names the C call it wraps. A Socket (memif_create_socket) carries one or
// more Conns (memif_create). Packets move in bursts through a Buffers batch
// whose Data views point straight into shared memory: see [Buffers] for the
// lifetime rule of those views.
//
// # Threading
//
// One goroutine at a time drives a socket's control path (PollEvent,
// ControlFDHandler, Create, Delete, RequestConnection, Details, ...); the
// callbacks run on that goroutine, inside those calls, and may call Conn
// methods. Each queue is driven by one goroutine at a time; different queues
// may run on different goroutines, concurrently with the control path.
// CancelPollEvent may be called from any goroutine.
package memif

/*
#cgo CFLAGS: -O2 -I/usr/include/memif
#cgo LDFLAGS: -lmemif -Wl,--export-dynamic
// rx/tx bursts never call back into Go (cheaper crossings); alloc and refill
// may (external buffer offsets), so they are not marked nocallback.
#cgo nocallback memifgo_rx_burst
#cgo nocallback memifgo_tx_burst
#cgo nocallback memifgo_buffer_enq_tx
#include "cgo_helpers.h"
*/
import "C"

// LibraryVersion is the libmemif API version this package is built for
// (LIBMEMIF_VERSION); cgo_helpers.h refuses to build against any other.
const LibraryVersion = C.LIBMEMIF_VERSION

// Version wraps memif_get_version: the memif protocol version,
// major<<8 | minor.
func Version() uint16 { return uint16(C.memif_get_version()) }

// VersionString wraps memif_get_version_str: the protocol version as
// "major.minor".
func VersionString() string { return C.GoString(C.memif_get_version_str()) }
