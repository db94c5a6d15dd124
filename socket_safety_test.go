//go:build linux && cgo

package memif

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestStaleSocketFileReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "memif.sock")
	// What a master killed with -9 leaves: a socket file nobody listens on.
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET, 0)
	require.NoError(t, err)
	require.NoError(t, unix.Bind(fd, &unix.SockaddrUnix{Name: path}))
	unix.Close(fd)

	g := &guarded{t: t, path: path, mev: newEvents()}
	g.loop, g.stop = startLoop(t, &LoopArgs{Socket: SocketArgs{Path: path, FileMode: 0o660}})
	a := g.mev.wire(ConnArgs{Socket: g.loop.Socket(), IsMaster: true})
	_, err = Create(&a)
	require.NoError(t, err, "a stale socket file is replaced")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o660), fi.Mode().Perm(), "the socket file has the mode asked for")
	g.serves()

	// A second master on the same path while the first listens: refused,
	// the first one's file left alone.
	s2, err := CreateSocket(&SocketArgs{Path: path})
	require.NoError(t, err)
	_, err = Create(&ConnArgs{Socket: s2, IsMaster: true})
	assert.ErrorIs(t, err, ErrSocketInUse)
	require.NoError(t, s2.Delete())
	_, err = os.Stat(path)
	assert.NoError(t, err)

	// Something that is not a socket is never removed.
	file := filepath.Join(t.TempDir(), "not-a-socket")
	require.NoError(t, os.WriteFile(file, []byte("keep"), 0o600))
	s3, err := CreateSocket(&SocketArgs{Path: file})
	require.NoError(t, err)
	_, err = Create(&ConnArgs{Socket: s3, IsMaster: true})
	assert.ErrorIs(t, err, ErrInvalArg)
	require.NoError(t, s3.Delete())
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, "keep", string(b))
}

func TestSyscallErrorsKeepErrno(t *testing.T) {
	s, err := CreateSocket(&SocketArgs{Path: "/nonexistent-dir/memif.sock"})
	require.NoError(t, err)
	defer s.Delete()
	_, err = Create(&ConnArgs{Socket: s, IsMaster: true})
	assert.ErrorIs(t, err, ErrSyscall)
	assert.ErrorIs(t, err, unix.ENOENT, "the errno libmemif would have dropped")
}

func TestSetListenerFDChecksTheFD(t *testing.T) {
	s, err := CreateSocket(&SocketArgs{Path: testSocketPath(t)})
	require.NoError(t, err)
	defer s.Delete()
	assert.ErrorIs(t, s.SetListenerFD(0), ErrInvalArg, "stdin")
	assert.ErrorIs(t, s.SetListenerFD(-1), ErrInvalArg)
	unbound, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(unbound)
	assert.ErrorIs(t, s.SetListenerFD(unbound), ErrInvalArg, "not listening")
	stream, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(stream)
	require.NoError(t, unix.Bind(stream, &unix.SockaddrUnix{Name: testSocketPath(t)}))
	require.NoError(t, unix.Listen(stream, 1))
	assert.ErrorIs(t, s.SetListenerFD(stream), ErrInvalArg, "a stream socket")
}

func TestTimerAndTimeoutBounds(t *testing.T) {
	_, err := CreateSocket(&SocketArgs{Path: testSocketPath(t), ConnectionRequestTimer: time.Nanosecond})
	assert.ErrorIs(t, err, ErrInvalArg, "a 1 ns request timer would burn a core")
	s, err := CreateSocket(&SocketArgs{Path: testSocketPath(t)})
	require.NoError(t, err)
	defer s.Delete()
	assert.ErrorIs(t, s.SetConnectionRequestTimer(time.Microsecond), ErrInvalArg)
	assert.NoError(t, s.SetConnectionRequestTimer(MinRequestTimer))
	assert.NoError(t, s.SetConnectionRequestTimer(0))

	assert.Equal(t, -1, waitMillis(-1))
	assert.Equal(t, 0, waitMillis(0))
	assert.Equal(t, 1, waitMillis(time.Nanosecond), "short timeouts round up, not to a busy poll")
	assert.Equal(t, maxWaitMS, waitMillis(time.Duration(1<<32)*time.Millisecond), "2^32 ms is clamped, not truncated to 0")
	assert.Equal(t, maxWaitMS, waitMillis(math.MaxInt64))
}

func TestNilSocket(t *testing.T) {
	var s *Socket
	assert.ErrorIs(t, s.Delete(), ErrInvalArg)
	assert.ErrorIs(t, s.PollEvent(0), ErrInvalArg)
	assert.ErrorIs(t, s.CancelPollEvent(), ErrInvalArg)
	assert.ErrorIs(t, s.ControlFDHandler(FDEvent{}, FDEventRead), ErrInvalArg)
	assert.ErrorIs(t, s.SetListenerFD(3), ErrInvalArg)
	assert.ErrorIs(t, s.SetConnectionRequestTimer(time.Second), ErrInvalArg)
	assert.Equal(t, -1, s.ListenerFD())
	assert.Equal(t, "", s.Path())
	assert.Equal(t, GuardStats{}, s.GuardStats())
}
