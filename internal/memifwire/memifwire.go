// Package memifwire is a memif peer for tests, written from memif.h's wire
// format: it sends raw control messages (any of them, valid or not) on a
// SOCK_SEQPACKET socket, so tests can play a broken or hostile peer.
package memifwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Message types and sizes from memif.h.
const (
	Size           = 128
	TypeAck        = 1
	TypeHello      = 2
	TypeInit       = 3
	TypeAddRegion  = 4
	TypeAddRing    = 5
	TypeConnect    = 6
	TypeConnected  = 7
	TypeDisconnect = 8

	Version     = 2<<8 | 0
	RingFlagS2M = 1
)

// Msg is one control message; the setters write memif.h's packed fields.
type Msg [Size]byte

// New returns a message of type typ, all other bytes zero.
func New(typ uint16) *Msg {
	var m Msg
	binary.LittleEndian.PutUint16(m[0:], typ)
	return &m
}

// Type is the message's type field.
func (m *Msg) Type() uint16 { return binary.LittleEndian.Uint16(m[0:]) }

func (m *Msg) U8(off int, v uint8) *Msg { m[off] = v; return m }
func (m *Msg) U16(off int, v uint16) *Msg {
	binary.LittleEndian.PutUint16(m[off:], v)
	return m
}
func (m *Msg) U32(off int, v uint32) *Msg {
	binary.LittleEndian.PutUint32(m[off:], v)
	return m
}
func (m *Msg) U64(off int, v uint64) *Msg {
	binary.LittleEndian.PutUint64(m[off:], v)
	return m
}

// Str writes s at off in an n-byte field; with fill, the rest of the field
// is 'A' and no NUL is left (an unterminated string).
func (m *Msg) Str(off, n int, s string, fill bool) *Msg {
	copy(m[off:off+n], s)
	if fill {
		for i := off + len(s); i < off+n; i++ {
			m[i] = 'A'
		}
	}
	return m
}

// Valid messages, ready to be spoiled by the setters.
func Init(id uint32) *Msg {
	return New(TypeInit).U16(2, Version).U32(4, id).Str(33, 32, "hostile", false)
}
func Region(idx uint16, size uint64) *Msg { return New(TypeAddRegion).U16(2, idx).U64(4, size) }
func Ring(s2m bool, idx, region uint16, off uint32, log2 uint8) *Msg {
	m := New(TypeAddRing).U16(4, idx).U16(6, region).U32(8, off).U8(12, log2)
	if s2m {
		m.U16(2, RingFlagS2M)
	}
	return m
}
func Connect() *Msg    { return New(TypeConnect).Str(2, 32, "hostile", false) }
func Disconnect() *Msg { return New(TypeDisconnect).U32(2, 1).Str(6, 96, "bye", false) }
func Hello() *Msg {
	return New(TypeHello).Str(2, 32, "hostile-master", false).U16(34, Version).U16(36, Version).
		U16(38, 255).U16(40, 255).U16(42, 255).U8(44, 14)
}

// Peer is one end of a memif control channel.
type Peer struct {
	T         testing.TB
	FD        int
	SendFlags int // e.g. MSG_DONTWAIT: a peer that gives up rather than wait
}

// Dial connects to a memif socket (a leading '@' is abstract); the test's
// cleanup closes it.
func Dial(t testing.TB, path string) *Peer {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		t.Fatalf("connect %s: %v", path, err)
	}
	p := &Peer{T: t, FD: fd}
	t.Cleanup(p.Close)
	return p
}

// Close closes the peer's end (again: no-op).
func (p *Peer) Close() {
	if p.FD >= 0 {
		unix.Close(p.FD)
		p.FD = -1
	}
}

// Send writes raw bytes with fds; errors are returned, not fatal: the other
// side may already have closed.
func (p *Peer) Send(b []byte, fds ...int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	return unix.Sendmsg(p.FD, b, oob, nil, unix.MSG_NOSIGNAL|p.SendFlags)
}

// Msg sends one message with fds.
func (p *Peer) Msg(m *Msg, fds ...int) error { return p.Send(m[:], fds...) }

// Readable waits up to timeout for something to read, reading nothing.
func (p *Peer) Readable(timeout time.Duration) bool {
	pfd := []unix.PollFd{{Fd: int32(p.FD), Events: unix.POLLIN}}
	deadline := time.Now().Add(timeout)
	for {
		n, err := unix.Poll(pfd, int(max(time.Until(deadline), 0)/time.Millisecond))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n > 0
	}
}

// Recv reads one message within timeout: its type, or eof when the other
// side closed.
func (p *Peer) Recv(timeout time.Duration) (typ uint16, eof bool, err error) {
	if !p.Readable(timeout) {
		return 0, false, fmt.Errorf("nothing to read within %v", timeout)
	}
	var b [Size]byte
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(4*8))
	n, oobn, _, _, err := unix.Recvmsg(p.FD, b[:], oob, unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT)
	closeFDs(oob[:oobn])
	switch {
	case errors.Is(err, unix.ECONNRESET):
		return 0, true, nil
	case err != nil:
		return 0, false, err
	case n == 0:
		return 0, true, nil
	}
	return binary.LittleEndian.Uint16(b[:]), false, nil
}

// Expect reads until a message of type typ arrives, within timeout.
func (p *Peer) Expect(typ uint16, timeout time.Duration) {
	p.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, eof, err := p.Recv(time.Until(deadline))
		if err != nil {
			p.T.Fatalf("waiting for message type %d: %v", typ, err)
		}
		if eof {
			p.T.Fatalf("the other side closed while we waited for message type %d", typ)
		}
		if got == typ {
			return
		}
	}
}

// ExpectClosed waits for the other side to close the channel (it may send
// a DISCONNECT first, or answers still queued).
func (p *Peer) ExpectClosed(timeout time.Duration) {
	p.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, eof, err := p.Recv(time.Until(deadline))
		if err != nil {
			p.T.Fatalf("waiting for the channel to be closed: %v", err)
		}
		if eof {
			return
		}
	}
}

func closeFDs(oob []byte) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for i := range msgs {
		if fds, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
	}
}

// MemFD returns a memfd of size bytes, closed at the test's cleanup; it
// cannot be sealed (SealableMemFD can, as libmemif's).
func MemFD(t testing.TB, size int64) int {
	t.Helper()
	return memFD(t, size, 0)
}

// SealableMemFD is MemFD created with MFD_ALLOW_SEALING.
func SealableMemFD(t testing.TB, size int64) int {
	t.Helper()
	return memFD(t, size, unix.MFD_ALLOW_SEALING)
}

func memFD(t testing.TB, size int64, flags int) int {
	t.Helper()
	fd, err := unix.MemfdCreate("memifwire", unix.MFD_CLOEXEC|flags)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Ftruncate(fd, size); err != nil {
		t.Fatal(err)
	}
	return fd
}

// EventFD returns an eventfd, closed at the test's cleanup.
func EventFD(t testing.TB) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}
