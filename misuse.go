//go:build linux && cgo

package memif

import "errors"

// Misuse that must fail cleanly, not crash: nil receivers, Delete from
// inside a callback, stale views.

// ErrDeleteInCallback is returned by Conn.Delete called from inside a
// callback (OnConnect, OnDisconnect, OnInterrupt...): libmemif keeps using
// the connection after the callback returns, so deleting it there is a
// use-after-free. Delete after the call that ran the callback returns.
var ErrDeleteInCallback = errors.New("memif: Delete inside a callback; call it after the control call that ran the callback returns")

// ErrStaleView is returned by Buffers.View for a batch filled on a session
// that has ended: its region is unmapped (or about to be).
var ErrStaleView = errors.New("memif: view of a session that has ended (its shared memory is unmapped)")

func nilConnErr(op string) error { return argErr(op, "connection", "nil *Conn") }
