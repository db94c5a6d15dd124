//go:build linux && cgo

package memif

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// forwardTo is a handler forwarding every queue to the same queue of *to.
func forwardTo(to *atomic.Pointer[Endpoint], wait time.Duration) Handler {
	return func(ctx context.Context, q *Queue) error {
		for {
			if _, _, err := q.Forward(ctx, to.Load(), q.ID(), wait); err != nil {
				return err
			}
		}
	}
}

// forwardingEndpoint runs A, a master on pathA forwarding each queue to
// the same queue of *b (the caller's to set, on pathB) with wait.
func forwardingEndpoint(t *testing.T, wait time.Duration) (a *Endpoint, b *atomic.Pointer[Endpoint], pathA, pathB string) {
	pathA, pathB = testSocketPath(t), testSocketPath(t)
	b = new(atomic.Pointer[Endpoint])
	a = newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathA}, Conn: ConnArgs{IsMaster: true}},
		forwardTo(b, wait))
	return a, b, pathA, pathB
}

// verifying is a handler that checks every packet it receives and hands
// its sequence number to seen; it ends with the link, or at the first bad
// packet or error of seen, which it returns.
func verifying(seen func(seq uint64) error) Handler {
	return func(ctx context.Context, q *Queue) error {
		for {
			n, err := q.Receive(ctx)
			if err != nil {
				return nil
			}
			for i := range n {
				_, seq, err := checkPacket(q.Rx().Data(i))
				if err == nil {
					err = seen(seq)
				}
				if err != nil {
					return err
				}
			}
		}
	}
}

// A hairpin Endpoint (Queue.Forward back out of its own link) returns
// every packet of its peer intact and in order, in every
// wait mode.
func TestEndpointForwardHairpin(t *testing.T) {
	for _, mode := range []WaitMode{WaitInterrupt, WaitAdaptive, WaitPoll} {
		t.Run(mode.String(), func(t *testing.T) {
			path := testSocketPath(t)
			var self atomic.Pointer[Endpoint]
			master := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Mode: mode,
				Conn: ConnArgs{IsMaster: true}}, forwardTo(&self, -1))
			self.Store(master)
			const count = 3000
			results := make(chan error, 2)
			newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Mode: mode,
				Conn: ConnArgs{NumS2MRings: 2, NumM2SRings: 2, Log2RingSize: 8}},
				func(ctx context.Context, q *Queue) error {
					results <- pingStream(ctx, q, count, 64+q.ID()*1436, 32) // 64 and 1500 B (pingStream reads no chains)
					return nil
				})
			for range 2 {
				select {
				case err := <-results:
					require.NoError(t, err)
				case <-time.After(30 * time.Second):
					t.Fatal("streams did not finish within 30s")
				}
			}
			waitFor(t, 20*time.Second, "master counters", func() bool {
				st := master.Stats()
				return len(st) == 2 && st[0].TxPackets == count && st[1].TxPackets == count
			})
			for qid, s := range master.Stats() {
				assert.Equal(t, uint64(count), s.RxPackets, "queue %d", qid)
				assert.Zero(t, s.Drops, "queue %d", qid)
				assert.Zero(t, s.Descriptors.RxDropped, "queue %d", qid)
			}
		})
	}
}

// A target whose peer never receives: its ring fills, the packets wait
// for the wait, then are dropped and counted (RingFull); none vanish.
func TestEndpointForwardRingFull(t *testing.T) {
	const count = 2000
	a, b, pathA, pathB := forwardingEndpoint(t, 5*time.Millisecond)
	b.Store(newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathB}, Conn: ConnArgs{IsMaster: true}},
		func(ctx context.Context, q *Queue) error { <-ctx.Done(); return nil }))
	// B's peer never receives.
	newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathB}, Conn: ConnArgs{Log2RingSize: 8}},
		func(ctx context.Context, q *Queue) error { <-ctx.Done(); return nil })
	waitUp(t, b.Load(), 20*time.Second)
	sent := make(chan error, 1)
	newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathA}, Conn: ConnArgs{Log2RingSize: 10}},
		func(ctx context.Context, q *Queue) error {
			for i := range count {
				fillPacket(q.Stage(100), 1, uint64(i))
			}
			_, err := q.Flush(ctx)
			sent <- err
			<-ctx.Done()
			return nil
		})
	select {
	case err := <-sent:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("A's peer did not send within 10s")
	}
	waitFor(t, 20*time.Second, "every packet forwarded or dropped", func() bool {
		s := b.Load().Stats()[0]
		return s.TxPackets+s.Drops.RingFull == count
	})
	s := b.Load().Stats()[0]
	assert.Equal(t, uint64(256), s.TxPackets, "B's ring holds what it can")
	assert.Positive(t, s.RingFull)
	assert.Zero(t, s.Drops.LinkDown)
	assert.Equal(t, uint64(count), a.Stats()[0].RxPackets+s.Drops.RingFull)
}

// A packet longer than the target's whole ring (16 buffers of 2048 bytes)
// can never be sent: Queue.Forward drops it, counted in the forwarding
// queue's Drops.Oversize, and forwards the packets around it in order.
func TestEndpointForwardOversize(t *testing.T) {
	const count = 20
	a, b, pathA, pathB := forwardingEndpoint(t, -1)
	got := make(chan uint64, count)
	b.Store(newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathB}, Conn: ConnArgs{Log2RingSize: 4}},
		func(ctx context.Context, q *Queue) error { <-ctx.Done(); return nil }))
	newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathB}, Conn: ConnArgs{IsMaster: true}},
		verifying(func(seq uint64) error { got <- seq; return nil }))
	waitUp(t, b.Load(), 20*time.Second)
	newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathA}},
		func(ctx context.Context, q *Queue) error {
			for i := range count {
				size := 100
				if i == count/2 {
					size = 16*2048 + 1
				}
				fillPacket(q.Stage(size), 1, uint64(i))
			}
			if _, err := q.Flush(ctx); err != nil {
				return err
			}
			<-ctx.Done()
			return nil
		})
	for i := range count {
		if i == count/2 {
			continue
		}
		select {
		case seq := <-got:
			require.Equal(t, uint64(i), seq)
		case <-time.After(10 * time.Second):
			t.Fatalf("packet %d not forwarded within 10s", i)
		}
	}
	waitFor(t, 10*time.Second, "every packet counted", func() bool { // counted after the send
		st := a.Stats()[0]
		return st.Drops.Oversize > 0 && st.RxPackets == count-1
	})
	assert.Equal(t, uint64(17), a.Stats()[0].Drops.Oversize, "its 17 buffers of 2048 bytes on A")
	assert.Equal(t, uint64(count-1), a.Stats()[0].RxPackets)
}

// Queue.Forward takes no lock of its target per burst: it reads the target
// once and then checks its session with an atomic load. A hairpin keeps
// forwarding, every packet verified, while the test holds the target's lock.
func TestEndpointForwardNoTargetLock(t *testing.T) {
	path := testSocketPath(t)
	var self atomic.Pointer[Endpoint]
	master := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Conn: ConnArgs{IsMaster: true}},
		forwardTo(&self, -1))
	self.Store(master)
	locked := make(chan struct{})
	results := make(chan error, 2)
	newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Conn: ConnArgs{Log2RingSize: 8}},
		func(ctx context.Context, q *Queue) error {
			results <- pingStream(ctx, q, 100, 64, 32) // Forward has read its target
			select {
			case <-locked:
			case <-ctx.Done():
				return nil
			}
			results <- pingStream(ctx, q, 2000, 1500, 32)
			<-ctx.Done()
			return nil
		})
	wait := func(what string) error {
		select {
		case err := <-results:
			return err
		case <-time.After(10 * time.Second):
			return fmt.Errorf("%s: not done within 10s", what)
		}
	}
	require.NoError(t, wait("first stream"))
	master.mu.Lock()
	close(locked)
	err := wait("stream with the target's lock held")
	master.mu.Unlock()
	require.NoError(t, err)
	st := master.Stats()[0]
	assert.Equal(t, uint64(2100), st.RxPackets)
	assert.Equal(t, uint64(2100), st.TxPackets)
	assert.Zero(t, st.Drops)
}

// The target's link cycles while Queue.Forward runs (its cached target
// follows each new session): every packet is sent into one of the
// target's sessions or dropped as LinkDown, none twice; what the target's
// peers receive verifies, in order.
func TestEndpointForwardTargetCycles(t *testing.T) {
	const cycles = 4
	a, b, pathA, pathB := forwardingEndpoint(t, -1)
	b.Store(newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathB}, Conn: ConnArgs{IsMaster: true}},
		func(ctx context.Context, q *Queue) error { <-ctx.Done(); return nil }))
	var got atomic.Uint64
	last := int64(-1) // the receiving handlers run one at a time
	bad := make(chan error, 1)
	receiver := verifying(func(seq uint64) error {
		if int64(seq) <= last {
			err := fmt.Errorf("seq %d after %d", seq, last)
			select {
			case bad <- err:
			default:
			}
			return err
		}
		last = int64(seq)
		got.Add(1)
		return nil
	})
	stop, stopped := make(chan struct{}), make(chan struct{})
	var stopOnce sync.Once // sent is final once stopped is closed
	var sent atomic.Uint64
	newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathA}, Conn: ConnArgs{Log2RingSize: 10}},
		func(ctx context.Context, q *Queue) error {
			for seq := uint64(0); ; {
				select {
				case <-stop:
					stopOnce.Do(func() { close(stopped) })
					<-ctx.Done()
					return nil
				default:
				}
				for range 32 {
					fillPacket(q.Stage(100), 1, seq)
					seq++
				}
				n, err := q.Flush(ctx)
				sent.Add(uint64(n))
				if err != nil {
					stopOnce.Do(func() { close(stopped) })
					return nil
				}
			}
		})
	for i := range cycles + 1 {
		peer, err := NewEndpoint(EndpointConfig{Socket: SocketArgs{Path: pathB}, Conn: ConnArgs{Log2RingSize: 8}}, receiver)
		require.NoError(t, err)
		ran := make(chan error, 1)
		go func() { ran <- peer.Run(context.Background()) }()
		from := got.Load()
		waitFor(t, 10*time.Second, "packets through the target's new session", func() bool { return got.Load() > from+1000 })
		if i == cycles {
			close(stop) // the last session stays up to the end
			select {
			case <-stopped:
			case <-time.After(10 * time.Second):
				t.Fatal("the sender did not stop within 10s")
			}
			waitFor(t, 20*time.Second, "every packet sent or dropped", func() bool {
				s := b.Load().Stats()[0]
				return s.TxPackets+s.Drops.LinkDown == sent.Load()
			})
		}
		require.NoError(t, peer.Close())
		select {
		case err := <-ran:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("the target's peer did not stop within 10s")
		}
	}
	select {
	case err := <-bad:
		t.Fatal(err)
	default:
	}
	s := b.Load().Stats()[0]
	assert.Equal(t, uint64(cycles+1), b.Load().Sessions())
	assert.Equal(t, sent.Load(), s.TxPackets+s.Drops.LinkDown)
	assert.LessOrEqual(t, got.Load(), s.TxPackets, "a session's ring may hold packets its peer never read")
	assert.Equal(t, a.Stats()[0].RxPackets, s.TxPackets)
	assert.Zero(t, s.Drops.RingFull)
	assert.Zero(t, a.Stats()[0].Drops)
}

// The target Endpoint closed under a running Queue.Forward: what arrives
// after is dropped as the target's LinkDown, every packet counted, and the
// forwarding handler goes on (no error) as with a target that went down.
func TestEndpointForwardTargetClosed(t *testing.T) {
	const count = 300
	a, b, pathA, pathB := forwardingEndpoint(t, -1)
	b.Store(newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathB}, Conn: ConnArgs{IsMaster: true}},
		func(ctx context.Context, q *Queue) error { <-ctx.Done(); return nil }))
	var got atomic.Uint64
	newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathB}}, verifying(func(uint64) error { got.Add(1); return nil }))
	waitUp(t, b.Load(), 20*time.Second)
	send := make(chan uint64)
	newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathA}}, func(ctx context.Context, q *Queue) error {
		for seq := uint64(0); ; {
			select {
			case <-ctx.Done():
				return nil
			case <-send:
			}
			for range count {
				fillPacket(q.Stage(100), 1, seq)
				seq++
			}
			if _, err := q.Flush(ctx); err != nil {
				return err
			}
		}
	})
	waitUp(t, a, 20*time.Second)
	send <- 0
	waitFor(t, 10*time.Second, "the first packets through", func() bool { return got.Load() == count })
	require.NoError(t, b.Load().Close())
	send <- 0
	waitFor(t, 10*time.Second, "the next packets dropped as LinkDown", func() bool {
		return b.Load().Stats()[0].Drops.LinkDown == count
	})
	assert.Equal(t, uint64(count), b.Load().Stats()[0].TxPackets)
	assert.Equal(t, uint64(count), a.Stats()[0].RxPackets)
	assert.Zero(t, a.Stats()[0].HandlerErrors)
}
