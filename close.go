//go:build linux && cgo

package memif

import "io"

// Close methods make the resource-owning types io.Closers (defer x.Close(),
// generic cleanup helpers) while the 1:1 names stay the libmemif ones.

var (
	_ io.Closer = (*Socket)(nil)
	_ io.Closer = (*Conn)(nil)
	_ io.Closer = (*Buffers)(nil)
)

// Close is Delete: it deletes the socket (memif_delete_socket).
func (s *Socket) Close() error { return s.Delete() }

// Close is Delete: it deletes the connection (memif_delete).
func (c *Conn) Close() error { return c.Delete() }

// Close is Free; it always returns nil.
func (b *Buffers) Close() error { b.Free(); return nil }
