//go:build linux && cgo

package memif

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVersion(t *testing.T) {
	assert.Equal(t, "4.0", LibraryVersion)
	v := Version()
	assert.Equal(t, uint16(2<<8|0), v, "memif protocol 2.0")
	assert.Equal(t, "2.0", VersionString())
}

func TestStrErrorEveryCode(t *testing.T) {
	seen := map[string]Errno{}
	for code := errSuccess; code <= errMax; code++ {
		text := StrError(int(code))
		require.NotEmpty(t, text, "code %d", code)
		if prev, dup := seen[text]; dup {
			t.Errorf("codes %d and %d share the text %q", prev, code, text)
		}
		seen[text] = code
		assert.Equal(t, text, code.Error())
		wrapped := &Error{Op: "op", Err: code}
		assert.ErrorIs(t, wrapped, code)
		assert.Equal(t, "memif: op: "+text, wrapped.Error())
	}
	assert.Equal(t, "undefined error", StrError(int(errMax)+1))
	assert.Equal(t, "undefined error", StrError(-1))
	assert.Equal(t, "Secret mismatch.", ErrSecret.Error())
}

func TestSocketCreateDeleteFilesystem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "memif.sock")
	s, err := CreateSocket(&SocketArgs{Path: path, AppName: "fs-test"})
	require.NoError(t, err)
	assert.Equal(t, path, s.Path())
	assert.Equal(t, -1, s.ListenerFD(), "no listener before a master exists")
	c, err := Create(&ConnArgs{Socket: s, IsMaster: true})
	require.NoError(t, err)
	assert.Greater(t, s.ListenerFD(), 0)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.NotZero(t, fi.Mode()&os.ModeSocket, "master bound a socket file")
	err = s.Delete()
	assert.ErrorIs(t, err, ErrInvalArg, "socket in use")
	require.NoError(t, c.Delete())
	require.NoError(t, s.Delete())
	_, err = os.Stat(path)
	assert.True(t, os.IsNotExist(err), "Delete removed the socket file")
	assert.ErrorIs(t, s.Delete(), ErrDeleted)
	assert.ErrorIs(t, c.Delete(), ErrDeleted)

	// The path is reusable at once.
	s2, err := CreateSocket(&SocketArgs{Path: path})
	require.NoError(t, err)
	c2, err := Create(&ConnArgs{Socket: s2, IsMaster: true})
	require.NoError(t, err)
	require.NoError(t, c2.Delete())
	require.NoError(t, s2.Delete())
}

func TestSocketAbstract(t *testing.T) {
	for _, path := range []string{"@memif-go-abstract", "\x00memif-go-abstract-nul"} {
		s, err := CreateSocket(&SocketArgs{Path: path})
		require.NoError(t, err)
		assert.Equal(t, "@"+path[1:], s.Path())
		c, err := Create(&ConnArgs{Socket: s, IsMaster: true})
		require.NoError(t, err)
		_, err = os.Stat(path[1:])
		assert.True(t, os.IsNotExist(err), "abstract socket leaves no file")
		require.NoError(t, c.Delete())
		require.NoError(t, s.Delete())
	}
}

func TestSocketDefaults(t *testing.T) {
	s, err := CreateSocket(nil)
	require.NoError(t, err)
	assert.Equal(t, DefaultSocketPath, s.Path())
	require.NoError(t, s.Delete())
}

func TestConnectAndDetails(t *testing.T) {
	margs := ConnArgs{InterfaceID: 7, InterfaceName: "master-if", Secret: "s3cret", BufferSize: 4096,
		Log2RingSize: 8, NumS2MRings: 2, NumM2SRings: 3, Mode: ModeEthernet}
	sargs := margs
	sargs.InterfaceName = "slave-if"
	p := connectPair(t, margs, sargs)
	assert.True(t, p.master.Connected())
	assert.True(t, p.slave.Connected())
	assert.Same(t, p.d.s, p.master.Socket())

	var md, sd *Details
	var err1, err2 error
	p.d.do(func() {
		md, err1 = p.master.Details()
		sd, err2 = p.slave.Details()
	})
	require.NoError(t, err1)
	require.NoError(t, err2)
	for _, d := range []*Details{md, sd} {
		assert.Equal(t, uint32(7), d.ID)
		assert.Equal(t, "s3cret", d.Secret)
		assert.Equal(t, ModeEthernet, d.Mode)
		assert.Equal(t, p.d.s.Path(), d.SocketPath)
		assert.Equal(t, DefaultAppName, d.InstName)
		assert.Equal(t, DefaultAppName, d.RemoteInstName)
		assert.True(t, d.LinkUp)
		assert.Len(t, d.Regions, 2)
	}
	assert.True(t, md.IsMaster)
	assert.False(t, sd.IsMaster)
	assert.Equal(t, "master-if", md.IfName)
	assert.Equal(t, "slave-if", md.RemoteIfName)
	assert.Equal(t, "slave-if", sd.IfName)
	assert.Equal(t, "master-if", sd.RemoteIfName)
	// Slave's rx are master-to-slave rings, master's rx are slave-to-master.
	assert.Len(t, sd.RxQueues, 3)
	assert.Len(t, sd.TxQueues, 2)
	assert.Len(t, md.RxQueues, 2)
	assert.Len(t, md.TxQueues, 3)
	for _, q := range append(append([]QueueDetails{}, sd.RxQueues...), md.TxQueues...) {
		assert.Equal(t, uint32(256), q.RingSize)
		assert.Equal(t, uint16(4096), q.BufferSize)
	}
}

func TestTrafficBothWays(t *testing.T) {
	count := 100_000 // 2^9 ring: ~195 wraps each way
	if os.Getenv("MEMIF_SOAK") != "" {
		count = 20_000_000
	}
	args := ConnArgs{Log2RingSize: 9}
	p := connectPair(t, args, args)
	size := func(seq uint64) int { return hdrLen + int(seq%1400) }
	runAll(t, 30*time.Minute,
		func(stop <-chan struct{}) error { return sendStream(p.master, 0, 1, count, size, 2048, 64, stop) },
		func(stop <-chan struct{}) error { return recvStream(p.slave, 0, 1, count, stop) },
		func(stop <-chan struct{}) error { return sendStream(p.slave, 0, 2, count, size, 2048, 64, stop) },
		func(stop <-chan struct{}) error { return recvStream(p.master, 0, 2, count, stop) })
}

// waitAll waits for wg, or stops the workers and fails after timeout.
func waitAll(t testing.TB, wg *sync.WaitGroup, stop chan struct{}, timeout time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		close(stop)
		<-done
		t.Errorf("traffic did not finish within %v", timeout)
	}
}

// runAll runs every fn on a goroutine of its own and requires each to
// return nil (every error reported); after timeout it closes their stop
// channel, waits for them and fails the test.
func runAll(t testing.TB, timeout time.Duration, fns ...func(stop <-chan struct{}) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(fns))
	stop := make(chan struct{})
	for _, fn := range fns {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- fn(stop) }()
	}
	waitAll(t, &wg, stop, timeout)
	close(errs)
	ok := true
	for err := range errs {
		ok = assert.NoError(t, err) && ok
	}
	if !ok {
		t.FailNow()
	}
}

func TestFourQueues(t *testing.T) {
	const count, queues = 20_000, 4
	args := ConnArgs{NumS2MRings: queues, NumM2SRings: queues, Log2RingSize: 8}
	p := connectPair(t, args, args)
	size := func(seq uint64) int { return 64 + int(seq%512) }
	var fns []func(stop <-chan struct{}) error
	for q := uint16(0); q < queues; q++ {
		fns = append(fns,
			func(stop <-chan struct{}) error { return sendStream(p.master, q, 100+q, count, size, 2048, 32, stop) },
			func(stop <-chan struct{}) error { return recvStream(p.slave, q, 100+q, count, stop) })
	}
	runAll(t, 120*time.Second, fns...)
}

func TestChainedPackets(t *testing.T) {
	const count = 3000
	args := ConnArgs{BufferSize: 2048, Log2RingSize: 10}
	p := connectPair(t, args, args)
	// 1..5 buffers a packet, sizes straddling buffer boundaries.
	size := func(seq uint64) int { return hdrLen + int(seq*997%9000) }
	runAll(t, 60*time.Second,
		func(stop <-chan struct{}) error { return sendStream(p.slave, 0, 9, count, size, 2048, 16, stop) },
		func(stop <-chan struct{}) error { return recvStream(p.master, 0, 9, count, stop) })
}

func TestInvalidArguments(t *testing.T) {
	long := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = 'a'
		}
		return "/tmp/" + string(b)[5:]
	}
	_, err := CreateSocket(&SocketArgs{Path: long(108)})
	assertArgErr(t, err, "socket path")
	_, err = CreateSocket(&SocketArgs{Path: "@x", AppName: long(32)})
	assertArgErr(t, err, "app name")
	_, err = CreateSocket(&SocketArgs{Path: "@x\x00y"})
	assertArgErr(t, err, "socket path")
	_, err = CreateSocket(&SocketArgs{Path: "@x", ConnectionRequestTimer: -time.Second})
	assertArgErr(t, err, "connection request timer")

	s, err := CreateSocket(&SocketArgs{Path: testSocketPath(t)})
	require.NoError(t, err)
	defer s.Delete()
	_, err = Create(nil)
	assertArgErr(t, err, "socket")
	_, err = Create(&ConnArgs{})
	assertArgErr(t, err, "socket")
	_, err = Create(&ConnArgs{Socket: s, InterfaceName: long(32)})
	assertArgErr(t, err, "interface name")
	_, err = Create(&ConnArgs{Socket: s, Secret: long(24)})
	assertArgErr(t, err, "secret")
	_, err = Create(&ConnArgs{Socket: s, Log2RingSize: 15})
	assertArgErr(t, err, "log2 ring size")
	_, err = Create(&ConnArgs{Socket: s, Log2RingSize: 16}) // 2^16 slots: see memifgo_tx_all_free
	assertArgErr(t, err, "log2 ring size")
	_, err = Create(&ConnArgs{Socket: s, Mode: 3})
	assertArgErr(t, err, "mode")
	_, err = NewBuffers(0)
	assertArgErr(t, err, "batch size")
	_, err = NewBuffers(MaxBurst + 1)
	assertArgErr(t, err, "batch size")
	// The longest legal values pass.
	c, err := Create(&ConnArgs{Socket: s, InterfaceName: long(31), Secret: long(23), Log2RingSize: 14, IsMaster: true})
	require.NoError(t, err)
	require.NoError(t, c.Delete())
}

func assertArgErr(t *testing.T, err error, arg string) {
	t.Helper()
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrInvalArg)
	var ae *ArgError
	require.True(t, errors.As(err, &ae), "%v is an *ArgError", err)
	assert.Equal(t, arg, ae.Arg)
	var me *Error
	require.True(t, errors.As(err, &me))
	assert.NotEmpty(t, me.Op)
}

func TestBurstArgumentErrors(t *testing.T) {
	p := connectPair(t, ConnArgs{NumM2SRings: 2, NumS2MRings: 2, BufferSize: 2048}, ConnArgs{NumM2SRings: 2, NumS2MRings: 2, BufferSize: 2048})
	bufs, err := NewBuffers(8)
	require.NoError(t, err)
	defer bufs.Free()
	_, _, err = p.slave.RxBurst(2, bufs, 8)
	assert.ErrorIs(t, err, ErrQID)
	_, _, err = p.slave.RxBurst(0, bufs, 9)
	assertArgErr(t, err, "count")
	_, err = p.master.TxBurst(5, bufs, 1)
	assert.ErrorIs(t, err, ErrQID)
	_, err = p.master.BufferAlloc(0, bufs, 9, 64)
	assertArgErr(t, err, "count")
	_, err = p.slave.BufferAlloc(0, bufs, 2, 9000) // 2 chains of 5 do not fit in 8
	assertArgErr(t, err, "count")
	_, err = p.master.BufferAlloc(0, bufs, 1, 9000) // a master assumes 64-byte segments: 141
	assertArgErr(t, err, "size")
	_, err = p.master.BufferEnqTx(0, bufs, 1)
	assertArgErr(t, err, "connection")
	assert.ErrorIs(t, p.slave.RefillQueue(0, 1, 2048), ErrInvalArg)
	assert.ErrorIs(t, p.slave.SetRxMode(7, 0), ErrInvalArg)
	_, err = p.slave.QueueEventFD(3)
	assert.ErrorIs(t, err, ErrQID)
	_, _, err = p.slave.RxBurst(0, nil, 1)
	assertArgErr(t, err, "buffers")

	// A length beyond the buffer, or negative, is refused by SetLen.
	n, err := p.master.BufferAlloc(0, bufs, 1, 100)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	assertArgErr(t, bufs.SetLen(0, 4096), "length")
	assertArgErr(t, bufs.SetLen(0, -1), "length")
	assert.Equal(t, 100, bufs.Len(0), "a refused SetLen leaves the length")
	sent, err := p.master.TxBurst(0, bufs, 1)
	require.NoError(t, err)
	require.Equal(t, 1, sent)
}
