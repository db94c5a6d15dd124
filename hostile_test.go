//go:build linux && cgo

package memif

import (
	"testing"
	"time"

	"github.com/memif-go/memif/internal/memifwire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Hostile peers against a guarded socket: each attack must end with the
// peer's channel closed, the refusal counted, the process alive and the
// master still serving a good slave with verified traffic.

type guarded struct {
	t       *testing.T
	path    string
	loop    *Loop
	stop    func() // ends Run: connections and socket deleted
	mev     *events
	refused chan *ProtocolError
}

func newGuardedMaster(t *testing.T, cfg GuardConfig) *guarded {
	g := &guarded{t: t, path: testSocketPath(t), mev: newEvents(), refused: make(chan *ProtocolError, 64)}
	cfg.OnRefuse = func(e *ProtocolError) {
		select { // OnRefuse runs on the loop goroutine: never block it
		case g.refused <- e:
		default:
		}
	}
	g.loop, g.stop = startLoop(t, &LoopArgs{Socket: SocketArgs{Path: g.path, Guard: cfg}})
	a := g.mev.wire(ConnArgs{Socket: g.loop.Socket(), IsMaster: true})
	_, err := Create(&a)
	require.NoError(t, err)
	return g
}

// refusal waits for the guard's report of a refused channel.
func (g *guarded) refusal(what string) *ProtocolError {
	g.t.Helper()
	select {
	case e := <-g.refused:
		return e
	case <-time.After(5 * time.Second):
		g.t.Fatalf("%s: no refusal reported within 5s", what)
		return nil
	}
}

// serves connects a good libmemif slave (its own socket and loop) and
// checks that 2 000 packets reach the master intact and in order.
func (g *guarded) serves() {
	t := g.t
	t.Helper()
	l, stop := startLoop(t, &LoopArgs{Socket: SocketArgs{Path: g.path}})
	sev := newEvents()
	a := sev.wire(ConnArgs{Socket: l.Socket()})
	slave, err := Create(&a)
	require.NoError(t, err)
	master := waitConn(t, g.mev.connected, "master OnConnect with a good slave", 10*time.Second)
	waitConn(t, sev.connected, "good slave OnConnect", 10*time.Second)
	streamOne(t, slave, master, 1, 2000, 128)
	stop()
	waitConn(t, g.mev.disconnected, "master OnDisconnect after the good slave left", 10*time.Second)
}

// handshake takes a raw slave through INIT (the master answers ACK).
func handshake(t *testing.T, p *rawPeer) {
	require.NoError(t, p.Msg(initMsg(0)))
	p.Expect(msgAck, 5*time.Second)
}

func TestHostileSlaveAgainstMaster(t *testing.T) {
	g := newGuardedMaster(t, GuardConfig{})
	region := func(t *testing.T, p *rawPeer) {
		require.NoError(t, p.Msg(regionMsg(0, 1<<20), memFD(t, 1<<20)))
		p.Expect(msgAck, 5*time.Second)
	}
	cases := []struct {
		name string
		init bool // take the peer through INIT first
		run  func(t *testing.T, p *rawPeer)
	}{
		// Before INIT, libmemif has no connection for the channel: anything
		// but INIT dereferences NULL in v26.06.
		{"DISCONNECT before INIT", false, func(t *testing.T, p *rawPeer) { p.Msg(disconnectMsg()) }},
		{"ADD_RING with an eventfd before INIT", false, func(t *testing.T, p *rawPeer) { p.Msg(ringMsg(true, 0, 0, 0, 10), eventFD(t)) }},
		{"ADD_REGION before INIT", false, func(t *testing.T, p *rawPeer) { p.Msg(regionMsg(0, 4096), memFD(t, 4096)) }},
		{"CONNECT before INIT", false, func(t *testing.T, p *rawPeer) { p.Msg(connectMsg()) }},
		{"HELLO to a master", false, func(t *testing.T, p *rawPeer) { p.Msg(helloMsg()) }},
		{"ACK to a master", false, func(t *testing.T, p *rawPeer) { p.Msg(newMsg(msgAck)) }},
		{"unknown message type", false, func(t *testing.T, p *rawPeer) { p.Msg(newMsg(99)) }},
		{"INIT with an unterminated name", false, func(t *testing.T, p *rawPeer) { p.Msg(initMsg(0).Str(33, 32, "", true)) }},
		{"INIT carrying an fd", false, func(t *testing.T, p *rawPeer) { p.Msg(initMsg(0), eventFD(t)) }},
		{"short message", false, func(t *testing.T, p *rawPeer) { p.Send(make([]byte, 10)) }},
		{"oversized message", false, func(t *testing.T, p *rawPeer) { p.Send(make([]byte, 200)) }},
		// After INIT: the handshake's regions and rings.
		{"second INIT", true, func(t *testing.T, p *rawPeer) { p.Msg(initMsg(0)) }},
		{"region index 200", true, func(t *testing.T, p *rawPeer) { p.Msg(regionMsg(200, 4096), memFD(t, 4096)) }},
		{"region larger than its memfd", true, func(t *testing.T, p *rawPeer) { p.Msg(regionMsg(0, 1<<30), memFD(t, 4096)) }},
		{"region of size 0", true, func(t *testing.T, p *rawPeer) { p.Msg(regionMsg(0, 0), memFD(t, 4096)) }},
		{"region of 16 GiB", true, func(t *testing.T, p *rawPeer) { p.Msg(regionMsg(0, 16<<30), memFD(t, 16<<30)) }},
		{"region without an fd", true, func(t *testing.T, p *rawPeer) { p.Msg(regionMsg(0, 4096)) }},
		{"region on an eventfd", true, func(t *testing.T, p *rawPeer) { p.Msg(regionMsg(0, 4096), eventFD(t)) }},
		{"region with two fds", true, func(t *testing.T, p *rawPeer) { p.Msg(regionMsg(0, 4096), memFD(t, 4096), eventFD(t)) }},
		{"ring index 200", true, func(t *testing.T, p *rawPeer) {
			region(t, p)
			p.Msg(ringMsg(true, 200, 0, 0, 10), eventFD(t))
		}},
		{"ring past its region", true, func(t *testing.T, p *rawPeer) {
			region(t, p)
			p.Msg(ringMsg(true, 0, 0, 1<<20-64, 10), eventFD(t))
		}},
		{"ring offset 4 GiB away", true, func(t *testing.T, p *rawPeer) {
			region(t, p)
			p.Msg(ringMsg(true, 0, 0, 0xffffff00, 10), eventFD(t))
		}},
		{"log2 ring size 255", true, func(t *testing.T, p *rawPeer) {
			region(t, p)
			p.Msg(ringMsg(true, 0, 0, 0, 255), eventFD(t))
		}},
		// 2^16 slots: full and empty read alike in 16-bit ring indices.
		{"log2 ring size 16", true, func(t *testing.T, p *rawPeer) {
			region(t, p)
			p.Msg(ringMsg(true, 0, 0, 0, 16), eventFD(t))
		}},
		{"log2 ring size 15", true, func(t *testing.T, p *rawPeer) {
			region(t, p)
			p.Msg(ringMsg(true, 0, 0, 0, 15), eventFD(t))
		}},
		{"ring with a private header", true, func(t *testing.T, p *rawPeer) {
			region(t, p)
			p.Msg(ringMsg(true, 0, 0, 0, 10).U16(13, 64), eventFD(t))
		}},
		{"ring in an undeclared region", true, func(t *testing.T, p *rawPeer) {
			region(t, p)
			p.Msg(ringMsg(true, 0, 3, 0, 10), eventFD(t))
		}},
		{"ring without an fd", true, func(t *testing.T, p *rawPeer) {
			region(t, p)
			p.Msg(ringMsg(true, 0, 0, 0, 10))
		}},
		{"CONNECT without rings", true, func(t *testing.T, p *rawPeer) {
			region(t, p)
			p.Msg(connectMsg())
		}},
		{"CONNECT with an unterminated name", true, func(t *testing.T, p *rawPeer) {
			region(t, p)
			p.Msg(ringMsg(true, 0, 0, 0, 10), eventFD(t))
			p.Expect(msgAck, 5*time.Second)
			p.Msg(ringMsg(false, 0, 0, 64<<10, 10), eventFD(t))
			p.Expect(msgAck, 5*time.Second)
			p.Msg(newMsg(msgConnect).Str(2, 32, "", true))
		}},
		{"DISCONNECT with an unterminated reason", true, func(t *testing.T, p *rawPeer) {
			p.Msg(newMsg(msgDisconnect).Str(6, 96, "", true))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := g.loop.Socket().GuardStats().Malformed
			p := dialRaw(t, g.path)
			p.Expect(msgHello, 5*time.Second)
			if tc.init {
				handshake(t, p)
			}
			tc.run(t, p)
			p.ExpectClosed(5 * time.Second)
			e := g.refusal(tc.name)
			assert.Equal(t, "slave", e.Peer)
			assert.ErrorIs(t, e, ErrProto)
			t.Log(e)
			assert.Equal(t, before+1, g.loop.Socket().GuardStats().Malformed)
		})
	}
	g.serves()
}

// TestHandshakeCutShortAfterRegion: a slave declares a large region and
// hangs up before CONNECT. libmemif v26.06 then calls munmap(NULL, size)
// for the region it never mapped, which unmaps this (non-PIE) test
// binary's code and the Go heap; munmap.c makes that call a no-op.
func TestHandshakeCutShortAfterRegion(t *testing.T) {
	g := newGuardedMaster(t, GuardConfig{})
	for _, size := range []int64{64 << 20, 1 << 32} {
		p := dialRaw(t, g.path)
		p.Expect(msgHello, 5*time.Second)
		handshake(t, p)
		require.NoError(t, p.Msg(regionMsg(0, uint64(size)), memFD(t, size)))
		p.Expect(msgAck, 5*time.Second)
		p.Close()
	}
	g.serves()
	assert.Zero(t, g.loop.Socket().GuardStats().Malformed)
}

func TestHandshakeTimeout(t *testing.T) {
	// Long enough that afterInit's INIT is in before it on a loaded host
	// (the deadline runs from accept), short enough to keep the test quick.
	g := newGuardedMaster(t, GuardConfig{HandshakeTimeout: 2 * time.Second})
	silent := dialRaw(t, g.path)
	afterInit := dialRaw(t, g.path)
	afterInit.Expect(msgHello, 5*time.Second)
	handshake(t, afterInit)
	silent.ExpectClosed(10 * time.Second)
	afterInit.ExpectClosed(10 * time.Second)
	g.refusal("silent peer")
	g.refusal("peer idle after INIT")
	assert.Equal(t, uint64(2), g.loop.Socket().GuardStats().TimedOut)
	g.serves()
}

func TestPendingCap(t *testing.T) {
	g := newGuardedMaster(t, GuardConfig{MaxPending: 2, HandshakeTimeout: time.Minute})
	var peers []*rawPeer
	for i := 0; i < 5; i++ {
		peers = append(peers, dialRaw(t, g.path))
	}
	// The listener accepts in order; the first two stay pending, the rest
	// are closed at once.
	for _, p := range peers[2:] {
		p.ExpectClosed(10 * time.Second)
	}
	assert.Equal(t, uint64(3), g.loop.Socket().GuardStats().OverCap)
	for _, p := range peers[:2] {
		p.Close() // frees the pending places for the good slave
	}
	waitFor(t, 10*time.Second, "the pending places freed", func() bool {
		pending := -1
		require.NoError(t, g.loop.Do(func() error { pending = g.loop.Socket().pending; return nil }))
		return pending == 0
	})
	g.serves()
}

func TestAllowUIDs(t *testing.T) {
	denied := newGuardedMaster(t, GuardConfig{AllowUIDs: []uint32{uint32(unix.Getuid()) + 1}})
	p := dialRaw(t, denied.path)
	p.ExpectClosed(10 * time.Second)
	assert.Equal(t, uint64(1), denied.loop.Socket().GuardStats().Denied)
	assert.Contains(t, denied.refusal("uid").Reason, "not allowed")

	allowed := newGuardedMaster(t, GuardConfig{AllowUIDs: []uint32{uint32(unix.Getuid())}})
	allowed.serves()
	assert.Zero(t, allowed.loop.Socket().GuardStats().Denied)
}

// TestHostileMasterAgainstSlave: our slave connects to a master written
// here that breaks the protocol; the slave's channel is closed and
// counted, and the slave then connects to a good master.
func TestHostileMasterAgainstSlave(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, p *rawPeer)
	}{
		{"HELLO with an unterminated name", func(t *testing.T, p *rawPeer) { p.Msg(helloMsg().Str(2, 32, "", true)) }},
		{"HELLO carrying an fd", func(t *testing.T, p *rawPeer) { p.Msg(helloMsg(), memFD(t, 4096)) }},
		{"CONNECTED before HELLO", func(t *testing.T, p *rawPeer) { p.Msg(newMsg(msgConnected)) }},
		{"ACK before HELLO", func(t *testing.T, p *rawPeer) { p.Msg(newMsg(msgAck)) }},
		{"INIT to a slave", func(t *testing.T, p *rawPeer) { p.Msg(initMsg(0)) }},
		{"ADD_REGION to a slave", func(t *testing.T, p *rawPeer) { p.Msg(regionMsg(0, 4096), memFD(t, 4096)) }},
		{"second HELLO", func(t *testing.T, p *rawPeer) {
			p.Msg(helloMsg())
			p.Expect(msgInit, 5*time.Second)
			p.Msg(helloMsg())
		}},
		{"ACK carrying an fd", func(t *testing.T, p *rawPeer) {
			p.Msg(helloMsg())
			p.Expect(msgInit, 5*time.Second)
			p.Msg(newMsg(msgAck), eventFD(t))
		}},
		{"DISCONNECT with an unterminated reason", func(t *testing.T, p *rawPeer) {
			p.Msg(newMsg(msgDisconnect).Str(6, 96, "", true))
		}},
		{"short message", func(t *testing.T, p *rawPeer) { p.Send(make([]byte, 3)) }},
	}
	path := testSocketPath(t)
	refused := make(chan *ProtocolError, 64)
	l, _ := startLoop(t, &LoopArgs{Socket: SocketArgs{Path: path, Guard: GuardConfig{OnRefuse: func(e *ProtocolError) { refused <- e }}}})
	sev := newEvents()
	a := sev.wire(ConnArgs{Socket: l.Socket()})
	slave, err := Create(&a) // nobody listens yet: it stays disconnected
	require.NoError(t, err)

	lfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	require.NoError(t, unix.Bind(lfd, &unix.SockaddrUnix{Name: path}))
	require.NoError(t, unix.Listen(lfd, 4))
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, l.Do(slave.RequestConnection))
			nfd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
			require.NoError(t, err)
			p := &rawPeer{T: t, FD: nfd}
			t.Cleanup(p.Close)
			tc.run(t, p)
			p.ExpectClosed(5 * time.Second)
			select {
			case e := <-refused:
				assert.Equal(t, "master", e.Peer)
				t.Log(e)
			case <-time.After(5 * time.Second):
				t.Fatal("no refusal reported within 5s")
			}
			assert.Equal(t, uint64(i+1), l.Socket().GuardStats().Malformed)
		})
	}
	unix.Close(lfd)

	// A good master on the same path: the slave connects and traffic flows.
	g := &guarded{t: t, path: path, mev: newEvents(), refused: make(chan *ProtocolError, 1)}
	g.loop, _ = startLoop(t, &LoopArgs{Socket: SocketArgs{Path: path}})
	ma := g.mev.wire(ConnArgs{Socket: g.loop.Socket(), IsMaster: true})
	_, err = Create(&ma)
	require.NoError(t, err)
	require.NoError(t, l.Do(slave.RequestConnection))
	master := waitConn(t, g.mev.connected, "good master OnConnect", 10*time.Second)
	waitConn(t, sev.connected, "slave OnConnect after the attacks", 10*time.Second)
	streamOne(t, master, slave, 2, 2000, 256)
}

// TestPeerGoneBeforeAccept: libmemif v26.06 closes an accepted channel
// without telling (no DEL) when HELLO cannot be sent because the peer
// already hung up. The binding must then forget that fd number: other
// files reuse it, and the guard's shutdown or Delete's clean-up must never
// touch them.
func TestPeerGoneBeforeAccept(t *testing.T) {
	g := newGuardedMaster(t, GuardConfig{})
	var pipes []int
	for i := 0; i < 50; i++ {
		p := dialRaw(t, g.path)
		p.Close()
		// Wait until the loop has accepted and dropped it, then take the
		// freed number for a file of our own.
		waitFor(t, 20*time.Second, "the gone peer forgotten", func() bool {
			n := 0
			require.NoError(t, g.loop.Do(func() error { n = len(g.loop.Socket().fdt.fds); return nil }))
			return n == 1 // the listener only
		})
		var fds [2]int
		require.NoError(t, unix.Pipe2(fds[:], unix.O_CLOEXEC))
		pipes = append(pipes, fds[:]...)
	}
	g.serves()
	g.stop() // Delete closes what libmemif leaked: never one of ours
	for _, fd := range pipes {
		_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		assert.NoError(t, err, "fd %d of ours was closed", fd)
		unix.Close(fd)
	}
}

// TestPeerThatNeverReads: a slave that sends a stream of handshake
// messages and never reads the master's answers is closed (by libmemif
// when its send fails, or by the handshake timeout) and the master goes on
// serving.
func TestPeerThatNeverReads(t *testing.T) {
	g := newGuardedMaster(t, GuardConfig{})
	p := dialRaw(t, g.path)
	require.NoError(t, p.Msg(initMsg(0)))
	mfd := memFD(t, 1<<16)
	for i := 0; i < 200; i++ {
		if p.Msg(regionMsg(uint16(i), 1<<16), mfd) != nil {
			break // the master gave up on us
		}
	}
	p.ExpectClosed(10 * time.Second)
	g.serves()
}

// TestResetBehindHostileMessage: a peer sends DISCONNECT before INIT and
// closes without reading our HELLO. Linux then reports ECONNRESET to the
// first receive, ahead of the queued message: the guard's peek takes the
// error, so it must close the channel rather than let libmemif read the
// DISCONNECT behind it (a NULL dereference in v26.06; found by fuzzing).
func TestResetBehindHostileMessage(t *testing.T) {
	g := newGuardedMaster(t, GuardConfig{})
	for i := 0; i < 200; i++ {
		p := dialRaw(t, g.path)
		// HELLO is queued to us once the master accepted: leave it unread.
		require.True(t, p.Readable(5*time.Second), "no HELLO within 5s")
		require.NoError(t, p.Msg(disconnectMsg()))
		p.Close()
	}
	g.serves()
}

// TestRegionsSealedAgainstShrinking: a slave that shrinks its region's
// memfd after the master checked its size would fault the master (SIGBUS)
// on access. The guard seals the size before checking it; a memfd that
// cannot be sealed is counted. A libmemif slave's regions are sealed.
func TestRegionsSealedAgainstShrinking(t *testing.T) {
	g := newGuardedMaster(t, GuardConfig{})
	p := dialRaw(t, g.path)
	p.Expect(msgHello, 5*time.Second)
	handshake(t, p)
	sealable := memifwire.SealableMemFD(t, 1<<20)
	require.NoError(t, p.Msg(regionMsg(0, 1<<20), sealable))
	p.Expect(msgAck, 5*time.Second)
	assert.ErrorIs(t, unix.Ftruncate(sealable, 4096), unix.EPERM, "the peer can no longer shrink the region")
	assert.Zero(t, g.loop.Socket().GuardStats().Unsealed)
	require.NoError(t, p.Msg(regionMsg(1, 1<<20), memFD(t, 1<<20)))
	p.Expect(msgAck, 5*time.Second)
	assert.Equal(t, uint64(1), g.loop.Socket().GuardStats().Unsealed, "an unsealable memfd is counted")
	p.Close()
	g.serves()
	assert.Equal(t, uint64(1), g.loop.Socket().GuardStats().Unsealed, "a libmemif slave's regions are sealed")
}
