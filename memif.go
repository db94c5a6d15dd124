//go:build linux && cgo

// Package memif is a cgo binding of FD.io libmemif 4.0, the C library that
// moves packets between processes through shared memory (memif), as VPP,
// DPDK and CNFs do on one host. It has two layers: the binding, libmemif one
// call to one method, and a Go-native layer built on it.
//
// # The binding
//
// A Socket (memif_create_socket) carries one or more Conns (memif_create);
// each method's doc names the C call it wraps. Packets move in bursts, one
// cgo crossing per burst, through a reusable Buffers batch whose Data views
// point straight into shared memory:
//
//	sock, _ := memif.CreateSocket(&memif.SocketArgs{Path: "/run/vpp/memif.sock"})
//	conn, _ := memif.Create(&memif.ConnArgs{Socket: sock, OnConnect: onUp})
//	for ... { sock.PollEvent(time.Second) } // callbacks (OnConnect, ...) run in here
//
//	bufs, _ := memif.NewBuffers(64)             // one batch per queue, reused
//	n, _, err := conn.RxBurst(0, bufs, bufs.Cap())
//	for i := range n { use(bufs.Data(i)) }      // views into shared memory
//	conn.RefillQueue(0, n, 0)                   // the views die here
//
// Fused calls cut crossings further: RefillRxBurst, TxBurstAlloc, CopyTx,
// CopyRx. The package example below is a complete loopback.
//
// # The Go-native layer
//
// What every application otherwise writes by hand. A [Loop] runs a socket
// on Go's netpoller until its context ends: callbacks run on the goroutine
// that calls Run, other goroutines create connections or hand control work
// to it with Do, and when the context ends it deletes every connection and
// the socket. An [RxReader] and a [TxWriter] move one packet per call over
// one queue, bursting underneath and allocating nothing per packet:
//
//	loop, _ := memif.NewLoop(&memif.LoopArgs{Socket: memif.SocketArgs{Path: "@app"}})
//	go loop.Run(ctx)
//	conn, _ := memif.Create(&memif.ConnArgs{Socket: loop.Socket(), OnConnect: onUp})
//	r, _ := memif.NewRxReader(conn, 0, 64)
//	for { p, err := r.Next(); ... } // p is valid until the next call
//
// An Endpoint (NewEndpoint) owns one interface's link lifecycle: on each
// link-up it sizes batches from the negotiated Link and runs the user's
// Handler on one goroutine per queue; on link-down it cancels them and waits
// until every handler has returned, with its views, before libmemif unmaps
// the memory: the lifetime of views is enforced instead of documented.
//
//	ep, err := memif.NewEndpoint(memif.EndpointConfig{Socket: memif.SocketArgs{Path: "@app"}},
//		func(ctx context.Context, q *memif.Queue) error {
//			for {
//				n, err := q.Receive(ctx) // parks on the queue's eventfd
//				if err != nil {
//					return err
//				}
//				// q.Rx().Data(i) for i < n: views, valid until the next Receive
//				_ = n
//			}
//		})
//	err = ep.Run(ctx)
//
// The module github.com/memif-go/memif/memifpacket makes a queue a gopacket
// PacketDataSource and ZeroCopyPacketDataSource with WritePacketData; it is
// a module of its own, so this one does not pull gopacket in.
//
// # Threading
//
// One goroutine at a time drives a socket's control path (PollEvent,
// ControlFDHandler, Create, Delete, RequestConnection, Details, ...); the
// callbacks run on that goroutine, inside those calls, and may call Conn
// methods. Each queue is driven by one goroutine at a time; different queues
// may run on different goroutines, concurrently with the control path.
// CancelPollEvent may be called from any goroutine. A Loop is the control
// goroutine of its socket.
//
// # Lifetime of views
//
// A view (Buffers.Data, RxReader.Next) is shared memory, valid until its
// buffers are given back (refill) or sent, and never after the link goes
// down: libmemif unmaps the memory when OnDisconnect returns. Bursts that
// race a disconnect are safe (the binding bars them, they return
// ErrDisconnected), but a view a goroutine still reads is not: copy what
// must live longer (Buffers.AppendPacket, RxReader.AppendNext), or make
// OnDisconnect wait for the queue goroutines. The rules are in [Buffers].
//
// # The guard
//
// A memif peer is another process, possibly buggy or hostile, and
// libmemif trusts it. The binding runs libmemif in control-fd mode, so it
// knows every fd libmemif opens (and closes exactly those), and it reads
// every control message before libmemif does: a peer that breaks the
// protocol, does not finish its handshake in time (GuardConfig), or is not
// an allowed user is disconnected and counted (Socket.GuardStats) instead
// of reaching libmemif. Arguments C would misuse fail in Go with an
// *ArgError; a panic in a callback is recovered before it can unwind
// through C and is returned as a *CallbackError.
//
// Every type that owns C resources has Delete or Free, named after
// libmemif, and Close, the same call, for io.Closer.
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
