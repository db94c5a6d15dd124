//go:build linux && cgo

package memif

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// sendOne sends one verified packet of stream/seq on queue qid.
func sendOne(t *testing.T, c *Conn, qid, stream uint16, seq uint64) {
	t.Helper()
	require.NoError(t, sendStreamFrom(c, qid, stream, seq))
}

func sendStreamFrom(c *Conn, qid, stream uint16, seq uint64) error {
	// Room for the worst case: a master assumes 64-byte slave buffers.
	bufs, err := NewBuffers(2)
	if err != nil {
		return err
	}
	defer bufs.Free()
	if _, err := c.BufferAlloc(qid, bufs, 1, 128); err != nil {
		return err
	}
	fillPacket(bufs.Data(0), stream, seq)
	_, err = c.TxBurst(qid, bufs, 1)
	return err
}

func TestInterruptModeCallback(t *testing.T) {
	const count = 200
	p := &pair{d: newDriver(t, &SocketArgs{Path: testSocketPath(t)}), mev: newEvents(), sev: newEvents()}
	var mu sync.Mutex
	got := map[uint16][]uint64{}
	var rxErr error
	bufs := newBufs(t, 64)
	sargs := p.sev.wire(ConnArgs{NumM2SRings: 2, NumS2MRings: 2})
	sargs.OnInterrupt = func(c *Conn, qid uint16) error {
		n, _, err := c.RxBurst(qid, bufs, bufs.Cap())
		mu.Lock()
		defer mu.Unlock()
		for i := 0; i < n && err == nil; i++ {
			var st uint16
			var seq uint64
			st, seq, err = checkPacket(bufs.Data(i))
			if st != qid {
				err = errors.New("packet of another queue's stream")
			}
			got[qid] = append(got[qid], seq)
		}
		if err != nil && rxErr == nil {
			rxErr = err
		}
		p.sev.interrupts <- qid
		return c.RefillQueue(qid, n, 0)
	}
	var err error
	p.master, err = p.d.create(p.mev.wire(ConnArgs{IsMaster: true, NumM2SRings: 2, NumS2MRings: 2}))
	require.NoError(t, err)
	p.slave, err = p.d.create(sargs)
	require.NoError(t, err)
	waitConn(t, p.mev.connected, "master OnConnect", 20*time.Second)
	waitConn(t, p.sev.connected, "slave OnConnect", 20*time.Second)

	for seq := uint64(0); seq < count; seq++ {
		sendOne(t, p.master, 1, 1, seq)
	}
	waitFor(t, 10*time.Second, "all packets through interrupts", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got[1]) >= count || rxErr != nil
	})
	mu.Lock()
	defer mu.Unlock()
	require.NoError(t, rxErr)
	assert.Empty(t, got[0], "queue 0 had no traffic")
	require.Len(t, got[1], count)
	for i, seq := range got[1] {
		require.Equal(t, uint64(i), seq)
	}
	for len(p.sev.interrupts) > 0 {
		assert.Equal(t, uint16(1), <-p.sev.interrupts, "interrupt for the right queue")
	}
}

// TestInterruptSwallowedSignalRearmed plays libmemif's lost wake-up:
// memif_rx_burst reads the eventfd after it looked at the ring, so a packet
// the peer publishes between the two loses its signal. The first callback
// receives packet 0, then packet 1 is sent and its signal read away (what
// that read does). The binding's dispatch sees packet 1 unread and gives the
// signal back: OnInterrupt runs again and receives it. Fails without the
// re-arm (packet 1 stays in the ring).
func TestInterruptSwallowedSignalRearmed(t *testing.T) {
	var efd atomic.Int64
	efd.Store(-1)
	got := make(chan uint64, 4)
	fail := make(chan error, 4)
	bufs := newBufs(t, 8)
	var calls atomic.Int32
	var master atomic.Pointer[Conn]
	p := connectPair(t, ConnArgs{}, ConnArgs{OnInterrupt: func(c *Conn, qid uint16) error {
		n, _, err := c.RxBurst(qid, bufs, bufs.Cap())
		for i := 0; i < n && err == nil; i++ {
			var seq uint64
			_, seq, err = checkPacket(bufs.Data(i))
			got <- seq
		}
		if err == nil {
			err = c.RefillQueue(qid, n, 0)
		}
		if err == nil && calls.Add(1) == 1 && n == 1 {
			err = sendStreamFrom(master.Load(), 0, 0, 1)
			var b [8]byte
			if _, rerr := unix.Read(int(efd.Load()), b[:]); err == nil && rerr != nil {
				err = fmt.Errorf("swallowing the signal: %w", rerr)
			}
		}
		if err != nil {
			fail <- err
		}
		return err
	}})
	master.Store(p.master)
	fd, err := p.slave.QueueEventFD(0)
	require.NoError(t, err)
	efd.Store(int64(fd))

	sendOne(t, p.master, 0, 0, 0)
	for want := uint64(0); want < 2; want++ {
		select {
		case seq := <-got:
			require.Equal(t, want, seq)
		case err := <-fail:
			t.Fatal(err)
		case <-time.After(10 * time.Second):
			t.Fatalf("packet %d not received within 10s", want)
		}
	}
}

func TestQueueEventFDAndPollingMode(t *testing.T) {
	p := connectPair(t, ConnArgs{}, ConnArgs{})
	efd, err := p.slave.QueueEventFD(0)
	require.NoError(t, err)
	require.Greater(t, efd, 0)
	bufs := newBufs(t, 8)

	// Interrupt mode: a transmit makes the peer's queue fd readable.
	assert.False(t, efdReadable(t, p.slave, 0, 0))
	sendOne(t, p.master, 0, 0, 1)
	assert.True(t, efdReadable(t, p.slave, 0, 5*time.Second))
	n, more, err := p.slave.RxBurst(0, bufs, 8)
	require.NoError(t, err)
	assert.False(t, more)
	require.Equal(t, 1, n)
	_, seq, err := checkPacket(bufs.Data(0))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), seq)
	require.NoError(t, p.slave.RefillQueue(0, n, 0))
	n, _, err = p.slave.RxBurst(0, bufs, 8) // empty ring: consumes the event
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.False(t, efdReadable(t, p.slave, 0, 0), "RxBurst consumed the interrupt")

	// Polling mode: the peer stops signalling, packets still arrive.
	require.NoError(t, p.slave.SetRxMode(RxModePolling, 0))
	var d *Details
	p.d.do(func() { d, err = p.slave.Details() })
	require.NoError(t, err)
	assert.Equal(t, uint16(QueueFlagPolling), d.RxQueues[0].Flags&QueueFlagPolling)
	sendOne(t, p.master, 0, 0, 2)
	assert.False(t, efdReadable(t, p.slave, 0, 0), "no interrupt in polling mode")
	n, _, err = p.slave.RxBurst(0, bufs, 8)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, seq, err = checkPacket(bufs.Data(0))
	require.NoError(t, err)
	assert.Equal(t, uint64(2), seq)
	require.NoError(t, p.slave.RefillQueue(0, n, 0))

	require.NoError(t, p.slave.SetRxMode(RxModeInterrupt, 0))
	sendOne(t, p.master, 0, 0, 3)
	assert.True(t, efdReadable(t, p.slave, 0, 5*time.Second), "interrupts are back")
}

func TestSecret(t *testing.T) {
	p := connectPair(t, ConnArgs{Secret: "right"}, ConnArgs{Secret: "right"})
	assert.True(t, p.slave.Connected())

	d := newDriver(t, &SocketArgs{Path: testSocketPath(t)})
	mev, sev := newEvents(), newEvents()
	_, err := d.create(mev.wire(ConnArgs{IsMaster: true, Secret: "right"}))
	require.NoError(t, err)
	slave, err := d.create(sev.wire(ConnArgs{Secret: "wrong"}))
	require.NoError(t, err)
	// The master refuses the slave and says why; no side ever connects.
	var reason string
	waitFor(t, 20*time.Second, "slave told of the refusal", func() bool {
		d.do(func() {
			if det, err := slave.Details(); err == nil {
				reason = det.Error
			}
		})
		return reason != ""
	})
	assert.Contains(t, reason, "ecret")
	assert.Empty(t, mev.connected)
	assert.Empty(t, sev.connected)
	assert.False(t, slave.Connected())
}

func TestZeroCopyResponder(t *testing.T) {
	const count = 20_000
	p := connectPair(t, ConnArgs{Log2RingSize: 8}, ConnArgs{Log2RingSize: 8})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	var echoed atomic.Int64
	wg.Add(3)
	go func() { // slave echoes every buffer back without copying
		defer wg.Done()
		errs <- func() error {
			bufs, err := NewBuffers(64)
			if err != nil {
				return err
			}
			defer bufs.Free()
			for echoed.Load() < count {
				select {
				case <-stop:
					return errors.New("responder stopped")
				default:
				}
				n, _, err := p.slave.RxBurst(0, bufs, bufs.Cap())
				if err != nil {
					return err
				}
				if n == 0 {
					runtime.Gosched()
					continue
				}
				// The tx ring may take fewer than n: send what it took, retry the rest.
				for done := 0; done < n; {
					view := bufs.Slice(done, n)
					q, err := p.slave.BufferEnqTx(0, view, n-done)
					if err != nil && !errors.Is(err, ErrNoBufRing) {
						return err
					}
					if q > 0 {
						if _, err := p.slave.TxBurst(0, view, q); err != nil {
							return err
						}
					}
					done += q
					if q == 0 {
						select {
						case <-stop:
							return errors.New("responder stopped")
						default:
							runtime.Gosched()
						}
					}
				}
				if err := p.slave.RefillQueue(0, n, 0); err != nil {
					return err
				}
				echoed.Add(int64(n))
			}
			return nil
		}()
	}()
	go func() {
		defer wg.Done()
		errs <- sendStream(p.master, 0, 5, count, func(s uint64) int { return 64 + int(s%200) }, 2048, 32, stop)
	}()
	go func() { defer wg.Done(); errs <- recvStream(p.master, 0, 5, count, stop) }()
	waitAll(t, &wg, stop, 60*time.Second)
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
}

func TestRequestConnection(t *testing.T) {
	path := testSocketPath(t)
	ds := newDriver(t, &SocketArgs{Path: path})
	sev := newEvents()
	slave, err := ds.create(sev.wire(ConnArgs{}))
	require.NoError(t, err, "no master yet: libmemif tolerates the refusal")
	var rerr error
	ds.do(func() { rerr = slave.RequestConnection() })
	assert.ErrorIs(t, rerr, ErrConnRefused)

	dm := newDriver(t, &SocketArgs{Path: path})
	mev := newEvents()
	_, err = dm.create(mev.wire(ConnArgs{IsMaster: true}))
	require.NoError(t, err)
	ds.do(func() { rerr = slave.RequestConnection() })
	require.NoError(t, rerr)
	waitConn(t, sev.connected, "slave OnConnect", 20*time.Second)
	waitConn(t, mev.connected, "master OnConnect", 20*time.Second)
	ds.do(func() { rerr = slave.RequestConnection() })
	assert.ErrorIs(t, rerr, ErrAlreadyConnected)
}

func TestConnectionRequestTimer(t *testing.T) {
	path := testSocketPath(t)
	ds := newDriver(t, &SocketArgs{Path: path})
	sev := newEvents()
	_, err := ds.create(sev.wire(ConnArgs{}))
	require.NoError(t, err)
	dm := newDriver(t, &SocketArgs{Path: path})
	mev := newEvents()
	_, err = dm.create(mev.wire(ConnArgs{IsMaster: true}))
	require.NoError(t, err)
	select {
	case <-sev.connected:
		t.Fatal("connected without a request")
	default:
	}
	var terr error
	ds.do(func() { terr = ds.s.SetConnectionRequestTimer(20 * time.Millisecond) })
	require.NoError(t, terr)
	waitConn(t, sev.connected, "slave OnConnect by timer", 20*time.Second)

	// The same through SocketArgs, slave first.
	path2 := testSocketPath(t)
	ds2 := newDriver(t, &SocketArgs{Path: path2, ConnectionRequestTimer: 20 * time.Millisecond})
	sev2 := newEvents()
	_, err = ds2.create(sev2.wire(ConnArgs{}))
	require.NoError(t, err)
	dm2 := newDriver(t, &SocketArgs{Path: path2})
	_, err = dm2.create(ConnArgs{IsMaster: true})
	require.NoError(t, err)
	waitConn(t, sev2.connected, "slave OnConnect by SocketArgs timer", 20*time.Second)
}

func TestCancelPollEvent(t *testing.T) {
	s, err := CreateSocket(&SocketArgs{Path: testSocketPath(t)})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Delete()) }()
	ret := make(chan error, 1)
	go func() { ret <- s.PollEvent(-1) }()
	require.NoError(t, s.CancelPollEvent())
	select {
	case err := <-ret:
		assert.ErrorIs(t, err, ErrPollCancel)
	case <-time.After(5 * time.Second):
		t.Fatal("PollEvent still blocked 5s after CancelPollEvent")
	}
	// Cancellation is sticky in libmemif: a shutdown signal.
	assert.ErrorIs(t, s.PollEvent(time.Millisecond), ErrPollCancel)

	s2, err := CreateSocket(&SocketArgs{Path: testSocketPath(t)})
	require.NoError(t, err)
	defer func() { require.NoError(t, s2.Delete()) }()
	require.NoError(t, s2.PollEvent(time.Millisecond), "a timeout with nothing to do is not an error")
}

func TestDeleteWhileTrafficRuns(t *testing.T) {
	// The README's rule: OnDisconnect waits until no goroutine reads views
	// (libmemif unmaps the memory when it returns). The reader holds views
	// only under views.RLock, taken before the burst.
	var views sync.RWMutex
	p := connectPair(t, ConnArgs{}, ConnArgs{OnDisconnect: func(*Conn) error {
		views.Lock()
		defer views.Unlock()
		return nil
	}})
	var received atomic.Int64
	errs := make(chan error, 2)
	go func() {
		bufs, _ := NewBuffers(32)
		defer bufs.Free()
		for seq := uint64(0); ; seq++ {
			n, err := p.master.BufferAlloc(0, bufs, 32, 64)
			if err != nil && !errors.Is(err, ErrNoBufRing) {
				errs <- err
				return
			}
			if n > 0 {
				if _, err := p.master.TxBurst(0, bufs, n); err != nil {
					errs <- err
					return
				}
			}
			runtime.Gosched()
		}
	}()
	go func() {
		bufs, _ := NewBuffers(32)
		defer bufs.Free()
		refill := 0
		for {
			views.RLock()
			n, _, err := p.slave.RefillRxBurst(0, refill, 0, bufs, 32)
			if err != nil {
				views.RUnlock()
				errs <- err
				return
			}
			for i := 0; i < n; i++ {
				_ = bufs.Data(i)[0] // touch shared memory while Delete races
			}
			views.RUnlock()
			refill = n
			received.Add(int64(n))
		}
	}()
	waitFor(t, 10*time.Second, "traffic flowing", func() bool { return received.Load() > 10_000 })
	require.NoError(t, p.d.deleteConn(p.slave))
	waitConn(t, p.mev.disconnected, "master OnDisconnect", 20*time.Second)
	waitConn(t, p.sev.disconnected, "slave OnDisconnect", 20*time.Second)
	for i := 0; i < 2; i++ {
		select {
		case err := <-errs:
			assert.True(t, errors.Is(err, ErrDisconnected) || errors.Is(err, ErrDeleted), "%v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("a traffic goroutine did not stop after Delete")
		}
	}
}

// openFDs lists this process's open fds with what they point to.
func openFDs(t testing.TB) map[string]string {
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	fds := map[string]string{}
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fds[e.Name()] = target
	}
	return fds
}

func TestConnectDisconnectCycles(t *testing.T) {
	cycles := 1000
	if testing.Short() {
		cycles = 100
	}
	if os.Getenv("MEMIF_SOAK") != "" {
		cycles = 20_000
	}
	d := newDriver(t, &SocketArgs{Path: testSocketPath(t)})
	mev := newEvents()
	_, err := d.create(mev.wire(ConnArgs{IsMaster: true}))
	require.NoError(t, err)
	cycle := func() {
		sev := newEvents()
		slave, err := d.create(sev.wire(ConnArgs{Log2RingSize: 6, BufferSize: 256}))
		require.NoError(t, err)
		waitConn(t, sev.connected, "slave OnConnect", 20*time.Second)
		waitConn(t, mev.connected, "master OnConnect", 20*time.Second)
		sendOne(t, slave, 0, 0, 1)
		require.NoError(t, d.deleteConn(slave))
		waitConn(t, sev.disconnected, "slave OnDisconnect", 20*time.Second)
		waitConn(t, mev.disconnected, "master OnDisconnect", 20*time.Second)
		d.do(func() {}) // barrier: libmemif closes fds after on_disconnect returns
	}
	cycle() // warm up lazily opened fds
	before, goroutines := openFDs(t), goleak.IgnoreCurrent()
	for i := 0; i < cycles; i++ {
		cycle()
	}
	assert.Equal(t, before, openFDs(t), "open fds after %d cycles", cycles)
	goleak.VerifyNone(t, goroutines) // no goroutine per cycle outlives it
}

func TestCallbackPanicIsRecovered(t *testing.T) {
	d := newDriver(t, &SocketArgs{Path: testSocketPath(t)})
	_, err := d.create(ConnArgs{IsMaster: true})
	require.NoError(t, err)
	_, err = d.create(ConnArgs{OnConnect: func(*Conn) error { panic("boom") }})
	require.NoError(t, err)
	var ce *CallbackError
	waitFor(t, 20*time.Second, "PollEvent reports the panic", func() bool {
		for _, e := range d.pollErrs() {
			if errors.As(e, &ce) {
				return true
			}
		}
		return false
	})
	assert.Equal(t, "OnConnect", ce.Callback)
	assert.Equal(t, "boom", ce.Panic)
	assert.NotEmpty(t, ce.Stack)

	// An error returned by a callback is reported the same way.
	d2 := newDriver(t, &SocketArgs{Path: testSocketPath(t)})
	_, err = d2.create(ConnArgs{IsMaster: true})
	require.NoError(t, err)
	sentinel := errors.New("refuse")
	_, err = d2.create(ConnArgs{OnConnect: func(*Conn) error { return sentinel }})
	require.NoError(t, err)
	waitFor(t, 20*time.Second, "PollEvent reports the error", func() bool {
		for _, e := range d2.pollErrs() {
			if errors.Is(e, sentinel) {
				return true
			}
		}
		return false
	})
}

func TestAllocationFreeHotPath(t *testing.T) {
	p := connectPair(t, ConnArgs{}, ConnArgs{})
	tx, rx := newBufs(t, 32), newBufs(t, 32)
	refill, sink := 0, 0
	allocs := testing.AllocsPerRun(200, func() {
		n, _ := p.master.BufferAlloc(0, tx, 32, 64)
		p.master.TxBurst(0, tx, n)
		m, _, _ := p.slave.RefillRxBurst(0, refill, 0, rx, 32)
		refill = m
		v := rx.Batch(m) // the per-batch accessor is a value
		for i := range v.Len() {
			sink += len(v.Data(i))
		}
		k, _, _ := p.slave.RxBurst(0, rx, 0)
		_ = k
	})
	assert.Zero(t, allocs)
	assert.Positive(t, sink)
	require.NoError(t, p.slave.RefillQueue(0, refill, 0))
	// Errors on the hot path are prebuilt too.
	allocs = testing.AllocsPerRun(100, func() {
		p.master.BufferAlloc(0, tx, 32, 64) // ring eventually full
	})
	assert.Zero(t, allocs)
}

func TestSetNextFreeBufferAndRequeue(t *testing.T) {
	p := connectPair(t, ConnArgs{}, ConnArgs{})
	tx := newBufs(t, 8) // a master leaves room for 64-byte slave buffers
	n, err := p.master.BufferAlloc(0, tx, 4, 128)
	require.NoError(t, err)
	require.Equal(t, 4, n)
	third := &tx.Data(2)[0]
	// Give back buffers 2 and 3: the next allocation starts at buffer 2.
	require.NoError(t, p.master.SetNextFreeBuffer(0, tx, 2))
	for i := 0; i < 2; i++ {
		fillPacket(tx.Data(i)[:128], 0, uint64(i))
	}
	sent, err := p.master.TxBurst(0, tx, 2)
	require.NoError(t, err)
	require.Equal(t, 2, sent)
	one := tx.Slice(2, 4)
	n, err = p.master.BufferAlloc(0, one, 1, 128)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	assert.Same(t, third, &one.Data(0)[0], "allocation resumed at the given-back buffer")
	fillPacket(one.Data(0), 0, 2)
	_, err = p.master.TxBurst(0, one, 1)
	require.NoError(t, err)

	// The slave receives three packets and sends one back without a copy.
	rx := newBufs(t, 8)
	var got int
	waitFor(t, 20*time.Second, "3 packets", func() bool {
		n, _, err := p.slave.RxBurst(0, rx.Slice(got, 8), 8-got)
		require.NoError(t, err)
		got += n
		return got == 3
	})
	for i := 0; i < 3; i++ {
		_, seq, err := checkPacket(rx.Data(i))
		require.NoError(t, err)
		assert.Equal(t, uint64(i), seq)
	}
	// Enqueue packet 0 for tx, then requeue: packet 1's descriptor takes its
	// tx slot (and packet 0 goes back to rx), so the echo carries seq 1.
	q, err := p.slave.BufferEnqTx(0, rx, 1)
	require.NoError(t, err)
	require.Equal(t, 1, q)
	require.NoError(t, p.slave.BufferRequeue(rx, 1, rx, 0))
	_, err = p.slave.TxBurst(0, rx.Slice(1, 2), 1)
	require.NoError(t, err)
	require.NoError(t, p.slave.RefillQueue(0, 3, 0))
	assert.ErrorIs(t, p.master.BufferRequeue(rx, 0, rx, 1), ErrInvalArg, "master cannot requeue")
	fresh := newBufs(t, 1)
	assert.ErrorIs(t, p.slave.BufferRequeue(rx, 0, fresh, 0), ErrInvalArg, "a never-filled buffer is refused before C")

	mrx := newBufs(t, 4)
	waitFor(t, 20*time.Second, "the echo", func() bool {
		n, _, err = p.master.RxBurst(0, mrx, 4)
		require.NoError(t, err)
		return n == 1
	})
	_, seq, err := checkPacket(mrx.Data(0))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), seq, "the requeued rx buffer went back unchanged")
	require.NoError(t, p.master.RefillQueue(0, 1, 0))
}

// TestControlCallWaitsForCallback: while a callback runs on the control
// goroutine, another goroutine's control call waits; the callback's own
// calls go straight in.
func TestControlCallWaitsForCallback(t *testing.T) {
	d := newDriver(t, &SocketArgs{Path: testSocketPath(t)})
	master, err := d.create(ConnArgs{IsMaster: true})
	require.NoError(t, err)
	var released atomic.Bool
	result := make(chan bool, 1)
	inside := make(chan error, 1)
	_, err = d.create(ConnArgs{OnConnect: func(c *Conn) error {
		_, err := c.Details() // reentrant: must not deadlock
		inside <- err
		go func() {
			master.Details() // another goroutine: must wait for the callback
			result <- released.Load()
		}()
		select {
		case <-result:
			result <- false // it got in while the callback ran
		case <-time.After(200 * time.Millisecond):
		}
		released.Store(true)
		return nil
	}})
	require.NoError(t, err)
	require.NoError(t, <-inside)
	select {
	case ok := <-result:
		assert.True(t, ok, "a control call from another goroutine ran during a callback")
	case <-time.After(10 * time.Second):
		t.Fatal("the other goroutine's control call never completed")
	}
}
