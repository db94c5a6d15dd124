//go:build linux && cgo

package memif

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Queue ownership (own.go): bursts take no lock, and still a disconnect
// never unmaps a ring under one and two threads never share a queue.

// isDownErr reports the errors a burst may return while the link cycles.
func isDownErr(err error) bool {
	return errors.Is(err, ErrDisconnected) || errors.Is(err, ErrDeleted)
}

// hammerTx sends its own stream of verified packets with CopyTx until stop.
func hammerTx(c *Conn, stream uint16, stop *atomic.Bool) error {
	bufs, err := NewBuffers(8)
	if err != nil {
		return err
	}
	defer bufs.Free()
	const npk = 8
	data := make([]byte, npk*256)
	offs := make([]int32, npk+1)
	for seq := uint64(0); !stop.Load(); {
		pos := 0
		for i := range npk {
			size := hdrLen + 48 + int(seq+uint64(i))%160
			fillPacket(data[pos:pos+size], stream, seq+uint64(i))
			pos += size
			offs[i+1] = int32(pos)
		}
		n, err := c.CopyTx(0, bufs, data[:pos], offs)
		seq += uint64(n) // unsent packets are sent again, same numbers
		if err != nil && !isDownErr(err) && !errors.Is(err, ErrNoBufRing) {
			return fmt.Errorf("stream %d: %w", stream, err)
		}
		if n == 0 {
			runtime.Gosched()
		}
	}
	return nil
}

// hammerRx receives with CopyRx until stop, verifying every packet and that
// each stream's numbers only grow (each burst is whole: bursts on one queue
// never interleave).
func hammerRx(c *Conn, got *atomic.Int64, stop *atomic.Bool) error {
	bufs, err := NewBuffers(32)
	if err != nil {
		return err
	}
	defer bufs.Free()
	dst := make([]byte, 32*2048)
	offs := make([]int32, 33)
	last := map[uint16]uint64{}
	for !stop.Load() {
		n, _, err := c.CopyRx(0, bufs, dst, offs)
		if err != nil && !isDownErr(err) {
			return err
		}
		for i := range n {
			st, seq, err := checkPacket(dst[offs[i]:offs[i+1]])
			if err != nil {
				return err
			}
			if prev, ok := last[st]; ok && seq <= prev {
				return fmt.Errorf("stream %d: seq %d after %d", st, seq, prev)
			}
			last[st] = seq
		}
		got.Add(int64(n))
		if n == 0 {
			runtime.Gosched()
		}
	}
	return nil
}

// echoConn sends back what c receives on queue 0 until c goes down.
func echoConn(c *Conn) error {
	bufs, err := NewBuffers(32)
	if err != nil {
		return err
	}
	defer bufs.Free()
	dst := make([]byte, 32*2048)
	offs := make([]int32, 33)
	for {
		n, _, err := c.CopyRx(0, bufs, dst, offs)
		if isDownErr(err) {
			return nil
		} else if err != nil {
			return err
		}
		if n == 0 {
			runtime.Gosched()
			continue
		}
		for sent := 0; sent < n; {
			k, err := c.CopyTx(0, bufs, dst[:offs[n]], offs[sent:n+1])
			if isDownErr(err) {
				return nil
			} else if err != nil && !errors.Is(err, ErrNoBufRing) {
				return err
			}
			sent += k
			if k == 0 {
				runtime.Gosched()
			}
		}
	}
}

// waitGroup waits for wg, at most timeout.
func waitGroup(t testing.TB, wg *sync.WaitGroup, timeout time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("goroutines still running %v after stop", timeout)
	}
}

// TestOwnHammer: more goroutines than Ps, not locked to threads, burst on
// one queue pair of the master while the link goes down and up hundreds of
// times (the slave deleted and created again, its echo bursting through
// it): no fault, every packet intact, only link-down errors.
func TestOwnHammer(t *testing.T) {
	cycles := 200
	if testing.Short() {
		cycles = 40
	}
	d := newDriver(t, &SocketArgs{Path: testSocketPath(t)})
	mev := newEvents()
	master, err := d.create(mev.wire(ConnArgs{IsMaster: true}))
	require.NoError(t, err)

	var stop atomic.Bool
	var got atomic.Int64
	workers := runtime.GOMAXPROCS(0) + 2
	errs := make(chan error, 2*workers+cycles)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(2)
		go func() { defer wg.Done(); errs <- hammerTx(master, uint16(i), &stop) }()
		go func() { defer wg.Done(); errs <- hammerRx(master, &got, &stop) }()
	}
	var echoes sync.WaitGroup
	for i := range cycles {
		sev := newEvents()
		slave, err := d.create(sev.wire(ConnArgs{Log2RingSize: 8}))
		require.NoError(t, err)
		waitConn(t, sev.connected, "slave OnConnect", 20*time.Second)
		waitConn(t, mev.connected, "master OnConnect", 20*time.Second)
		echoes.Add(1)
		go func() { defer echoes.Done(); errs <- echoConn(slave) }()
		before := got.Load()
		waitFor(t, 10*time.Second, fmt.Sprintf("cycle %d: packets back", i), func() bool { return got.Load() > before })
		require.NoError(t, d.deleteConn(slave))
		waitConn(t, sev.disconnected, "slave OnDisconnect", 20*time.Second)
		waitConn(t, mev.disconnected, "master OnDisconnect", 20*time.Second)
	}
	stop.Store(true)
	waitGroup(t, &wg, 10*time.Second)
	waitGroup(t, &echoes, 10*time.Second) // each ended with its slave
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	t.Logf("%d packets verified over %d link cycles, %d claims", got.Load(), cycles, ownClaims())
}

// TestOwnSharedTxQueue: two goroutines drive one tx queue with their own
// small batches at once (misuse): each call is alone on the queue, so
// libmemif never writes past a batch (the descriptors after it stay as
// they were), errors are typed, and the queue still works afterwards.
func TestOwnSharedTxQueue(t *testing.T) {
	p := connectPair(t, ConnArgs{BufferSize: 2048}, ConnArgs{BufferSize: 2048})
	const batch, canary = 4, 12
	var stop atomic.Bool
	errs := make(chan error, 3)
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			whole, err := NewBuffers(batch + canary)
			if err != nil {
				errs <- err
				return
			}
			defer whole.Free()
			for i := batch; i < whole.Cap(); i++ {
				whole.b[i].len, whole.b[i].desc_index = 0xC0FFEE, 0xBEEF
			}
			bufs := whole.Slice(0, batch)
			pkt := make([]byte, 64)
			for seq := uint64(0); !stop.Load(); seq++ {
				k, err := p.master.BufferAlloc(0, bufs, batch, 64)
				if err != nil && !errors.Is(err, ErrNoBufRing) {
					errs <- err
					return
				}
				for i := range k {
					fillPacket(pkt, uint16(g), seq)
					copy(bufs.Data(i), pkt)
				}
				if _, err := p.master.TxBurst(0, bufs, k); err != nil &&
					!errors.Is(err, ErrStaleTxBuffer) && !errors.Is(err, ErrInvalArg) {
					errs <- err
					return
				}
				for i := batch; i < whole.Cap(); i++ {
					if whole.b[i].len != 0xC0FFEE || whole.b[i].desc_index != 0xBEEF {
						errs <- fmt.Errorf("descriptor %d past a batch of %d was written", i, batch)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	wg.Add(1)
	var got atomic.Int64
	go func() { // drain: bytes may be torn by the misuse, counts may not
		defer wg.Done()
		rx, _ := NewBuffers(64)
		defer rx.Free()
		refill := 0
		for !stop.Load() {
			n, _, err := p.slave.RefillRxBurst(0, refill, 0, rx, 64)
			if err != nil {
				errs <- err
				return
			}
			refill = n
			got.Add(int64(n))
			if n == 0 {
				runtime.Gosched()
			}
		}
		errs <- p.slave.RefillQueue(0, refill, 0)
	}()
	waitFor(t, 20*time.Second, "traffic through the shared queue", func() bool { return got.Load() > 20_000 })
	stop.Store(true)
	waitGroup(t, &wg, 10*time.Second)
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// Then the queue works: what the race left is given back and drained,
	// and a clean stream arrives whole.
	p.master.ReleaseTx(0)
	rx := newBufs(t, 64)
	for n := -1; n != 0; {
		var err error
		n, _, err = p.slave.RxBurst(0, rx, 64)
		require.NoError(t, err)
		require.NoError(t, p.slave.RefillQueue(0, n, 0))
	}
	streamOne(t, p.master, p.slave, 9, 500, 100)
}

// TestOwnSteadyState: one goroutine on one thread bursting 100k times
// claims its queues once (the fast path runs every other time) and
// allocates nothing.
func TestOwnSteadyState(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p := connectPair(t, ConnArgs{BufferSize: 2048}, ConnArgs{BufferSize: 2048})
	tx := newBufs(t, 1)
	rx := newBufs(t, 1)
	data := make([]byte, 64)
	offs := []int32{0, 64}
	dst := make([]byte, 2048)
	roffs := make([]int32, 2)
	seq := uint64(0)
	one := func() {
		fillPacket(data, 1, seq)
		n, err := p.master.CopyTx(0, tx, data, offs)
		if err != nil || n != 1 {
			t.Fatalf("CopyTx seq %d: %d, %v", seq, n, err)
		}
		n, _, err = p.slave.CopyRx(0, rx, dst, roffs)
		if err != nil || n != 1 {
			t.Fatalf("CopyRx seq %d: %d, %v", seq, n, err)
		}
		if st, s, err := checkPacket(dst[:roffs[1]]); err != nil || st != 1 || s != seq {
			t.Fatalf("seq %d: got stream %d seq %d, %v", seq, st, s, err)
		}
		seq++
	}
	one()
	claims := ownClaims()
	const bursts = 100_000
	for seq < bursts/2 {
		one()
	}
	assert.LessOrEqual(t, ownClaims()-claims, uint64(4), "claims in %d bursts on one thread", bursts)
	if !raceEnabled {
		assert.Zero(t, testing.AllocsPerRun(1000, one))
	}
}

// TestOwnFenceFallback runs the ownership tests again in a child process
// where the fast side fences itself, as without membarrier.
func TestOwnFenceFallback(t *testing.T) {
	if os.Getenv("MEMIF_GO_TEST_FENCE") != "" {
		t.Skip("in the child")
	}
	args := []string{"-test.run", "^(TestOwnHammer|TestOwnSharedTxQueue|TestOwnSteadyState|TestOwnExclusive)$", "-test.count=1", "-test.v"}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "MEMIF_GO_TEST_FENCE=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "fence mode")
	require.Contains(t, string(out), "--- PASS: TestOwnHammer")
}

// nestingRegion is a memfd region whose BufferOffset, once armed, bursts
// again from inside the burst that asked it (libmemif calls it per buffer).
type nestingRegion struct {
	*memfdRegion
	armed  atomic.Bool
	nested chan error
	bufs   *Buffers
}

func (r *nestingRegion) BufferOffset(c *Conn) uint32 {
	if r.armed.CompareAndSwap(true, false) {
		_, err := c.BufferAlloc(0, r.bufs, 1, 64)
		_, _, err2 := c.RxBurst(0, r.bufs, 1)
		r.nested <- errors.Join(err, err2)
	}
	return 0 // the region's first buffer: inside it, which is all the guard needs
}

// TestOwnNestedBurst: a burst from inside a burst's callback (on the same
// thread, in the middle of libmemif's call) is refused with ErrInvalArg
// instead of re-entering libmemif (or deadlocking); the outer burst
// completes.
func TestOwnNestedBurst(t *testing.T) {
	bufs := newBufs(t, 4)
	reg := &nestingRegion{memfdRegion: newMemfdRegion(), nested: make(chan error, 1), bufs: bufs}
	d := newDriver(t, &SocketArgs{Path: testSocketPath(t)})
	var rerr error
	d.do(func() { rerr = d.s.RegisterExternalRegion(reg) })
	require.NoError(t, rerr)
	mev, sev := newEvents(), newEvents()
	_, err := d.create(mev.wire(ConnArgs{IsMaster: true, Log2RingSize: 8}))
	require.NoError(t, err)
	slave, err := d.create(sev.wire(ConnArgs{Log2RingSize: 8}))
	require.NoError(t, err)
	waitConn(t, mev.connected, "master OnConnect", 20*time.Second)
	waitConn(t, sev.connected, "slave OnConnect", 20*time.Second)

	out := newBufs(t, 4)
	reg.armed.Store(true)
	n, err := slave.BufferAlloc(0, out, 1, 64)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	select {
	case err := <-reg.nested:
		require.ErrorIs(t, err, ErrInvalArg)
		require.ErrorContains(t, err, "inside a burst's callback")
	case <-time.After(5 * time.Second):
		t.Fatal("BufferOffset never ran")
	}
	_, err = slave.ReleaseTx(0)
	require.NoError(t, err)
	require.NoError(t, d.deleteConn(slave))
	waitConn(t, mev.disconnected, "master OnDisconnect", 20*time.Second)
}

// TestOwnExclusive: many goroutines (some on locked threads, so they keep
// their claim) run a probe that bumps a queue counter slowly and without
// atomics, on one queue (burst) and on two queues at once (burst2): not one
// update is lost, so no two threads were ever inside one queue together.
func TestOwnExclusive(t *testing.T) {
	p := connectPair(t, ConnArgs{}, ConnArgs{})
	const calls = 3000
	workers := 2*runtime.GOMAXPROCS(0) + 2
	var singles, pairs atomic.Uint64
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if w%3 == 0 {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
			}
			for i := range calls {
				both := (w+i)%2 == 0
				if err := p.slave.ownProbe(0, both); err != nil {
					errs <- err
					return
				}
				if both {
					pairs.Add(1)
				} else {
					singles.Add(1)
				}
				if i%64 == 0 {
					runtime.Gosched() // move threads now and then: claims
				}
			}
			errs <- nil
		}()
	}
	waitGroup(t, &wg, 60*time.Second)
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, singles.Load()+pairs.Load(), p.slave.ownProbeCount(false, 0), "rx queue probe")
	assert.Equal(t, pairs.Load(), p.slave.ownProbeCount(true, 0), "tx queue probe")
}
