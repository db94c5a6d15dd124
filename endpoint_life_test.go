//go:build linux && cgo

package memif

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sendForever streams verified packets on q until the link goes down.
func sendForever(ctx context.Context, q *Queue) error {
	for seq := uint64(0); ; {
		for range 16 {
			fillPacket(q.Stage(200), uint16(q.ID()), seq)
			seq++
		}
		if _, err := q.Flush(ctx); err != nil {
			return nil // the link went down: done for this session
		}
	}
}

// TestEndpointPeerGoneWhileHoldingViews takes the peer away 100 times
// (Close: its interface is deleted) while our handler holds views of
// received packets, and reads those views after the link went down: the
// Endpoint keeps the memory mapped until the handler returned, so every
// read succeeds and every packet checks out. Both roles: a master maps its
// slave's memory, a slave unmaps its own.
func TestEndpointPeerGoneWhileHoldingViews(t *testing.T) {
	runs := 100
	if testing.Short() {
		runs = 10
	}
	for _, holderIsMaster := range []bool{true, false} {
		t.Run(map[bool]string{true: "holder is master", false: "holder is slave"}[holderIsMaster], func(t *testing.T) {
			peerGoneWhileHolding(t, holderIsMaster, runs)
		})
	}
}

// holdingHandler verifies every packet, then holds a batch's views across
// the link going down and verifies them again.
func holdingHandler(holding chan<- struct{}, results chan<- error) Handler {
	return func(ctx context.Context, q *Queue) error {
		verified, next := 0, uint64(0)
		check := func(n int) error {
			for i := range n {
				_, seq, err := checkPacket(q.Rx().Data(i))
				if err != nil {
					return err
				}
				if seq != next+uint64(i) {
					return fmt.Errorf("seq %d, want %d", seq, next+uint64(i))
				}
			}
			return nil
		}
		for {
			n, err := q.Receive(ctx)
			if err != nil {
				results <- fmt.Errorf("receive after %d packets: %w", verified, err)
				return nil
			}
			if err := check(n); err != nil {
				results <- err
				return nil
			}
			if verified += n; verified < 64 {
				next += uint64(n)
				continue
			}
			holding <- struct{}{}
			<-ctx.Done()
			if err := check(n); err != nil {
				err = fmt.Errorf("after link down: %w", err)
			}
			results <- err
			return nil
		}
	}
}

func peerGoneWhileHolding(t *testing.T, holderIsMaster bool, runs int) {
	path := testSocketPath(t)
	results := make(chan error, 1)
	holding := make(chan struct{}, 1)
	holder := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Conn: ConnArgs{IsMaster: holderIsMaster},
		Reconnect: 5 * time.Millisecond}, holdingHandler(holding, results))
	for run := range runs {
		peer, err := NewEndpoint(EndpointConfig{Socket: SocketArgs{Path: path}, Conn: ConnArgs{IsMaster: !holderIsMaster}}, sendForever)
		require.NoError(t, err)
		ran := make(chan error, 1)
		go func() { ran <- peer.Run(context.Background()) }()
		select {
		case <-holding:
		case err := <-results:
			t.Fatalf("run %d: handler ended early: %v", run, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("run %d: no packets held within 10s", run)
		}
		require.NoError(t, peer.Close(), "run %d: the peer goes away", run)
		require.NoError(t, <-ran)
		require.NoError(t, within(t, results, 10*time.Second, "run %d: the handler saw the link go down", run), "run %d", run)
		waitFor(t, 20*time.Second, "link down", func() bool { _, up := holder.Link(); return !up })
	}
	assert.Equal(t, uint64(runs), holder.Sessions())
	assert.Zero(t, holder.Stats()[0].HandlerErrors)
}

// osThreads is this process's OS thread count.
func osThreads(t testing.TB) int {
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}

// TestEndpointIdleQueuesNoThreads parks 2x64 idle interrupt-mode handlers
// (both ends of a 64-queue link) and counts the process's OS threads.
func TestEndpointIdleQueuesNoThreads(t *testing.T) {
	const queues = 64
	before := osThreads(t)
	path := testSocketPath(t)
	idle := func(ctx context.Context, q *Queue) error {
		_, err := q.Receive(ctx) // nobody sends: parks until the link goes down
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	small := ConnArgs{NumS2MRings: queues, NumM2SRings: queues, Log2RingSize: 4, BufferSize: 128}
	master := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Conn: ConnArgs{IsMaster: true}}, idle)
	slave := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Conn: small}, idle)
	l := waitUp(t, slave, 10*time.Second)
	require.Equal(t, queues, l.RxQueues)
	waitFor(t, 10*time.Second, "every handler parked", func() bool {
		for _, ep := range []*Endpoint{master, slave} {
			st := ep.Stats()
			if len(st) < queues {
				return false
			}
			for _, s := range st {
				if s.Parks == 0 {
					return false
				}
			}
		}
		return true
	})
	after := osThreads(t)
	// What may legitimately appear: one thread per P running goroutines
	// (GOMAXPROCS), the two Loop goroutines, which are locked to their
	// threads, the runtime's template thread, and on a loaded host a few
	// more (sysmon hands the P of a descheduled cgo call to a new thread).
	// A thread per parked handler would add 2*queues (queues if only one
	// side had the bug): the bound sits well below both.
	bound := max(runtime.GOMAXPROCS(0)+2+1, queues/2)
	t.Logf("OS threads: %d before, %d with %d parked queue handlers (bound +%d)", before, after, 2*queues, bound)
	assert.LessOrEqual(t, after-before, bound, "idle interrupt queues must not hold OS threads")
}

// warmAllocs is one's allocations per run once warm.
func warmAllocs(one func()) float64 {
	for range 100 {
		one()
	}
	return testing.AllocsPerRun(1000, one)
}

// TestEndpointSteadyStateAllocs: Stage, Flush and Receive allocate nothing
// once warm, on either side, parked waits included.
func TestEndpointSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	path := testSocketPath(t)
	newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Conn: ConnArgs{IsMaster: true}}, echo)
	allocs := make(chan float64, 1)
	newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}}, func(ctx context.Context, q *Queue) error {
		one := func() {
			fillPacket(q.Stage(128), 0, 1)
			q.Flush(ctx)
			q.Receive(ctx)
		}
		allocs <- warmAllocs(one)
		return nil
	})
	assert.Zero(t, within(t, allocs, 20*time.Second, "a result"), "allocations per round trip")
}

// TestEndpointZeroCopyAndSendAllocs: Alloc/Send in a handler and
// Endpoint.Send from another goroutine allocate nothing once warm.
func TestEndpointZeroCopyAndSendAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	path := testSocketPath(t)
	newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Conn: ConnArgs{IsMaster: true}}, echo)
	allocs := make(chan float64, 1)
	zeroCopy := make(chan bool, 1)
	slave := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}}, func(ctx context.Context, q *Queue) error {
		one := func() {
			if n, _ := q.Alloc(1, 128); n == 1 {
				fillPacket(q.Tx().Data(0), 0, 1)
				q.Send(1)
			}
			q.Receive(ctx)
		}
		allocs <- warmAllocs(one)
		<-zeroCopy // then only drain the echoes of Endpoint.Send
		for {
			if _, err := q.Receive(ctx); err != nil {
				return err
			}
		}
	})
	assert.Zero(t, within(t, allocs, 20*time.Second, "a result"), "allocations per zero-copy round trip")
	zeroCopy <- true
	data := make([]byte, 4*128)
	offs := []int32{0, 128, 256, 384, 512}
	for i := range 4 {
		fillPacket(data[i*128:(i+1)*128], 1, uint64(i))
	}
	ctx := context.Background()
	for range 100 {
		slave.Send(ctx, 0, data, offs, time.Second)
	}
	assert.Zero(t, testing.AllocsPerRun(1000, func() { slave.Send(ctx, 0, data, offs, time.Second) }),
		"allocations per Endpoint.Send")
}
