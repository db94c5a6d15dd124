//go:build linux && cgo

package memif

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A memif peer written from memif.h's wire format, for tests that need a
// peer to misbehave on purpose. It speaks raw messages on a SOCK_SEQPACKET
// socket; every field offset below is memif.h's packed layout.

type wireMsg [msgSize]byte

func newMsg(typ uint16) *wireMsg {
	var m wireMsg
	binary.LittleEndian.PutUint16(m[0:], typ)
	return &m
}

func (m *wireMsg) u8(off int, v uint8) *wireMsg { m[off] = v; return m }
func (m *wireMsg) u16(off int, v uint16) *wireMsg {
	binary.LittleEndian.PutUint16(m[off:], v)
	return m
}
func (m *wireMsg) u32(off int, v uint32) *wireMsg {
	binary.LittleEndian.PutUint32(m[off:], v)
	return m
}
func (m *wireMsg) u64(off int, v uint64) *wireMsg {
	binary.LittleEndian.PutUint64(m[off:], v)
	return m
}

// str writes s at off; with fill, the rest of the n-byte field is filled
// with 'A' and no NUL is left (an unterminated string).
func (m *wireMsg) str(off, n int, s string, fill bool) *wireMsg {
	copy(m[off:off+n], s)
	if fill {
		for i := off + len(s); i < off+n; i++ {
			m[i] = 'A'
		}
	}
	return m
}

// Message builders with valid defaults.
func initMsg(id uint32) *wireMsg {
	return newMsg(msgInit).u16(2, protoVersion).u32(4, id).str(33, 32, "hostile", false)
}
func regionMsg(idx uint16, size uint64) *wireMsg {
	return newMsg(msgAddRegion).u16(2, idx).u64(4, size)
}
func ringMsg(s2m bool, idx, region uint16, off uint32, log2 uint8) *wireMsg {
	m := newMsg(msgAddRing).u16(4, idx).u16(6, region).u32(8, off).u8(12, log2)
	if s2m {
		m.u16(2, ringFlagS2M)
	}
	return m
}
func connectMsg() *wireMsg    { return newMsg(msgConnect).str(2, 32, "hostile", false) }
func disconnectMsg() *wireMsg { return newMsg(msgDisconnect).u32(2, 1).str(6, 96, "bye", false) }
func helloMsg() *wireMsg {
	return newMsg(msgHello).str(2, 32, "hostile-master", false).u16(34, protoVersion).u16(36, protoVersion).
		u16(38, 255).u16(40, 255).u16(42, 255).u8(44, 14)
}

// rawPeer is one end of a memif control channel.
type rawPeer struct {
	t         testing.TB
	fd        int
	sendFlags int // e.g. MSG_DONTWAIT: a peer that gives up rather than wait
}

func dialRaw(t testing.TB, path string) *rawPeer {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	require.NoError(t, unix.Connect(fd, &unix.SockaddrUnix{Name: path}), "connect %s", path)
	p := &rawPeer{t: t, fd: fd}
	t.Cleanup(p.close)
	return p
}

func (p *rawPeer) close() {
	if p.fd >= 0 {
		unix.Close(p.fd)
		p.fd = -1
	}
}

// send writes raw bytes with optional fds; errors are returned, not fatal:
// the other side may already have closed.
func (p *rawPeer) send(b []byte, fds ...int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	return unix.Sendmsg(p.fd, b, oob, nil, unix.MSG_NOSIGNAL|p.sendFlags)
}

func (p *rawPeer) msg(m *wireMsg, fds ...int) error { return p.send(m[:], fds...) }

// recv reads one message within timeout; typ 0 and io EOF as ok=false.
func (p *rawPeer) recv(timeout time.Duration) (typ uint16, eof bool, err error) {
	pfd := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	deadline := time.Now().Add(timeout)
	for {
		n, err := unix.Poll(pfd, int(max(time.Until(deadline), 0)/time.Millisecond))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, false, err
		}
		if n == 0 {
			return 0, false, errors.New("timeout")
		}
		var b [msgSize]byte
		oob := make([]byte, oobSize)
		m, oobn, _, _, err := unix.Recvmsg(p.fd, b[:], oob, unix.MSG_CMSG_CLOEXEC)
		for _, fd := range peekedFDs(oob[:oobn]) {
			unix.Close(fd)
		}
		if err != nil {
			if errors.Is(err, unix.ECONNRESET) {
				return 0, true, nil
			}
			return 0, false, err
		}
		if m == 0 {
			return 0, true, nil
		}
		return binary.LittleEndian.Uint16(b[:]), false, nil
	}
}

// readable waits up to timeout for something to read, reading nothing.
func (p *rawPeer) readable(timeout time.Duration) bool {
	pfd := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	deadline := time.Now().Add(timeout)
	for {
		n, err := unix.Poll(pfd, int(max(time.Until(deadline), 0)/time.Millisecond))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n > 0
	}
}

// expect reads until a message of type typ arrives, within timeout.
func (p *rawPeer) expect(typ uint16, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, eof, err := p.recv(time.Until(deadline))
		require.NoError(p.t, err, "waiting for %s", msgName(typ))
		require.False(p.t, eof, "the other side closed while we waited for %s", msgName(typ))
		if got == typ {
			return
		}
	}
}

// expectClosed waits for the other side to close the channel (it may send
// a DISCONNECT first, or ACKs still queued).
func (p *rawPeer) expectClosed(timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, eof, err := p.recv(time.Until(deadline))
		require.NoError(p.t, err, "waiting for the channel to be closed")
		if eof {
			return
		}
	}
}

// memFD returns a memfd of size bytes (closed at cleanup).
func memFD(t testing.TB, size int64) int {
	t.Helper()
	fd, err := unix.MemfdCreate("hostile", unix.MFD_CLOEXEC)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	require.NoError(t, unix.Ftruncate(fd, size))
	return fd
}

func eventFD(t testing.TB) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}
