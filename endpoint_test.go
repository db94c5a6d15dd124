//go:build linux && cgo

package memif

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runEndpoint starts ep.Run and closes ep at cleanup, checking Run's result.
func runEndpoint(t testing.TB, ep *Endpoint) {
	t.Helper()
	ran := make(chan error, 1)
	go func() { ran <- ep.Run(context.Background()) }()
	t.Cleanup(func() {
		require.NoError(t, ep.Close())
		select {
		case err := <-ran:
			assert.NoError(t, err, "Endpoint.Run")
		case <-time.After(10 * time.Second):
			t.Error("Endpoint.Run did not return within 10s of Close")
		}
	})
}

func newTestEndpoint(t testing.TB, cfg EndpointConfig, h Handler) *Endpoint {
	t.Helper()
	ep, err := NewEndpoint(cfg, h)
	require.NoError(t, err)
	runEndpoint(t, ep)
	return ep
}

func waitUp(t testing.TB, ep *Endpoint, timeout time.Duration) Link {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	l, err := ep.WaitUp(ctx)
	require.NoError(t, err, "link up")
	return l
}

// echo is the simplest responder: every packet back, unchanged.
func echo(ctx context.Context, q *Queue) error {
	for {
		n, err := q.Receive(ctx)
		if err != nil {
			return err
		}
		rx := q.Rx()
		for i := range n {
			q.Append(rx.Data(i))
		}
		if _, err := q.Flush(ctx); err != nil {
			return err
		}
	}
}

// verifyHandler receives count packets on each queue, checks every one
// (want: the stream and seq of the queue's next-th packet) and reports once
// per queue on got: nil, or what went wrong first.
func verifyHandler(count uint64, want func(q *Queue, next uint64) (stream uint16, seq uint64), got chan<- error) Handler {
	return func(ctx context.Context, q *Queue) error {
		for next := uint64(0); next < count; {
			n, err := q.Receive(ctx)
			if err != nil {
				got <- err
				return nil
			}
			for i := range n {
				st, seq, err := checkPacket(q.Rx().Data(i))
				if ws, wseq := want(q, next); err == nil && (st != ws || seq != wseq) {
					err = fmt.Errorf("queue %d: packet %d is stream %d seq %d, want stream %d seq %d", q.ID(), next, st, seq, ws, wseq)
				}
				if err != nil {
					got <- err
					return nil
				}
				next++
			}
		}
		got <- nil
		return nil
	}
}

// pingStream sends count verified packets of size bytes on q and checks
// that each comes back intact and in order.
func pingStream(ctx context.Context, q *Queue, count, size, burst int) error {
	next := 0
	for sent := 0; sent < count; {
		k := min(burst, count-sent)
		for j := range k {
			fillPacket(q.Stage(size), uint16(q.ID()), uint64(sent+j))
		}
		if n, err := q.Flush(ctx); err != nil || n != k {
			return fmt.Errorf("flush sent %d of %d: %v", n, k, err)
		}
		sent += k
		for next < sent {
			n, err := q.Receive(ctx)
			if err != nil {
				return fmt.Errorf("after %d of %d echoes: %w", next, count, err)
			}
			for i := range n {
				st, seq, err := checkPacket(q.Rx().Data(i))
				if err != nil {
					return err
				}
				if int(st) != q.ID() || seq != uint64(next) {
					return fmt.Errorf("queue %d: got stream %d seq %d, want seq %d", q.ID(), st, seq, next)
				}
				next++
			}
		}
	}
	return nil
}

func TestEndpointEchoModes(t *testing.T) {
	for _, mode := range []WaitMode{WaitInterrupt, WaitAdaptive, WaitPoll} {
		t.Run(mode.String(), func(t *testing.T) {
			path := testSocketPath(t)
			master := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Mode: mode,
				Conn: ConnArgs{IsMaster: true}}, echo)
			const queues, count = 2, 3000
			results := make(chan error, queues)
			slave := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Mode: mode,
				Conn: ConnArgs{NumS2MRings: queues, NumM2SRings: queues, Log2RingSize: 8}},
				func(ctx context.Context, q *Queue) error {
					results <- pingStream(ctx, q, count, 64+q.ID()*100, 32)
					return nil
				})
			l := waitUp(t, slave, 20*time.Second)
			assert.Equal(t, Link{Master: false, RxQueues: queues, TxQueues: queues, RxRingSize: 256, TxRingSize: 256, BufferSize: 2048}, l)
			ml := waitUp(t, master, 20*time.Second)
			assert.True(t, ml.Master)
			assert.Equal(t, queues, ml.RxQueues)
			// Our rx rings say whether the peer must signal: only polling
			// tells it not to.
			d, err := master.Details()
			require.NoError(t, err)
			for _, rq := range d.RxQueues {
				assert.Equal(t, mode == WaitPoll, rq.Flags&QueueFlagPolling != 0, "queue %d flags %#x", rq.QID, rq.Flags)
			}
			for range queues {
				require.NoError(t, within(t, results, 30*time.Second, "streams finished"))
			}
			st := slave.Stats()
			require.Len(t, st, queues)
			for qid, s := range st {
				assert.Equal(t, uint64(count), s.TxPackets, "queue %d", qid)
				assert.Equal(t, uint64(count), s.RxPackets, "queue %d", qid)
				assert.Equal(t, uint64(count*(64+qid*100)), s.RxBytes, "queue %d", qid)
				assert.Zero(t, s.HandlerErrors)
			}
			// The master counts an echo after its burst, which the slave may
			// have received first.
			waitFor(t, 20*time.Second, "master counters", func() bool {
				mst := master.Stats()
				return len(mst) == queues && mst[0].TxPackets == count && mst[1].TxPackets == count
			})
			for qid, s := range master.Stats() {
				assert.Equal(t, uint64(count), s.RxPackets, "master queue %d", qid)
			}
			if mode == WaitPoll {
				assert.Zero(t, st[0].Parks, "polling never parks")
			}
		})
	}
}

func TestEndpointHandlerPanicRestarts(t *testing.T) {
	path := testSocketPath(t)
	errs := make(chan error, 16)
	runs := 0
	master := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Conn: ConnArgs{IsMaster: true},
		OnError: func(err error) { errs <- err }},
		func(ctx context.Context, q *Queue) error {
			runs++ // one handler goroutine at a time per queue
			if runs == 1 {
				panic("first run")
			}
			return echo(ctx, q)
		})
	done := make(chan error, 1)
	newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}}, func(ctx context.Context, q *Queue) error {
		done <- pingStream(ctx, q, 100, 100, 10)
		return nil
	})
	var cb *CallbackError
	require.ErrorAs(t, within(t, errs, 5*time.Second, "the panic reported"), &cb)
	assert.Equal(t, "first run", cb.Panic)
	require.NoError(t, within(t, done, 10*time.Second, "echoes from the restarted handler"))
	assert.Equal(t, uint64(1), master.Stats()[0].HandlerErrors)
}

func TestEndpointConfig(t *testing.T) {
	_, err := NewEndpoint(EndpointConfig{}, nil)
	assert.ErrorIs(t, err, ErrInvalArg)
	_, err = NewEndpoint(EndpointConfig{Conn: ConnArgs{OnConnect: func(*Conn) error { return nil }}}, echo)
	assert.ErrorIs(t, err, ErrInvalArg)
	_, err = NewEndpoint(EndpointConfig{Mode: 7}, echo)
	assert.ErrorIs(t, err, ErrInvalArg)
	for _, spin := range []time.Duration{-1, MaxSpin + 1} {
		_, err = NewEndpoint(EndpointConfig{Mode: WaitAdaptive, SpinTime: spin}, echo)
		assert.ErrorIs(t, err, ErrInvalArg, "SpinTime %v", spin)
	}
	// Close without Run releases the socket: the path can be used again.
	path := testSocketPath(t)
	for range 2 {
		ep, err := NewEndpoint(EndpointConfig{Socket: SocketArgs{Path: path}, Conn: ConnArgs{IsMaster: true}}, echo)
		require.NoError(t, err)
		require.NoError(t, ep.Close())
		require.NoError(t, ep.Close(), "twice")
		assert.ErrorIs(t, ep.Run(context.Background()), ErrInvalArg, "after Close")
	}
	var cerr error = ErrInvalArg
	assert.True(t, errors.Is(cerr, ErrInvalArg))
}

// TestEndpointZeroCopyAndSend: Alloc/Send write in place in shared memory;
// Endpoint.Send copies from another goroutine; both reach the peer intact.
func TestEndpointZeroCopyAndSend(t *testing.T) {
	path := testSocketPath(t)
	got := make(chan error, 1)
	const count = 2000
	newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Conn: ConnArgs{IsMaster: true}},
		verifyHandler(2*count, func(_ *Queue, next uint64) (uint16, uint64) { return uint16(next / count), next % count }, got))
	slave := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}},
		func(ctx context.Context, q *Queue) error {
			for seq := 0; seq < count; {
				n, err := q.Alloc(min(32, count-seq), 300)
				if err != nil {
					return err
				}
				for i := range n {
					fillPacket(q.Tx().Data(i), 0, uint64(seq+i))
				}
				if _, err := q.Send(n); err != nil {
					return err
				}
				seq += n
			}
			<-ctx.Done()
			return nil
		})
	waitUp(t, slave, 20*time.Second)
	// Stream 1 from this goroutine, after stream 0 is out (one queue, in order).
	waitFor(t, 20*time.Second, "stream 0 sent", func() bool { return slave.Stats()[0].TxPackets == count })
	data, offs := make([]byte, 0, 64*count), []int32{0}
	for seq := range count {
		data = append(data, make([]byte, 64)...)
		fillPacket(data[len(data)-64:], 1, uint64(seq))
		offs = append(offs, int32(len(data)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := slave.Send(ctx, 0, data, offs, 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, count, n)
	require.NoError(t, within(t, got, 10*time.Second, "everything arrived"))
	assert.Equal(t, uint64(2*count), slave.Stats()[0].TxPackets)
}

// TestEndpointDropsCounted: a peer that never reads fills our tx ring;
// what FlushNow and FlushWait cannot send is dropped and counted by cause.
func TestEndpointDropsCounted(t *testing.T) {
	path := testSocketPath(t)
	newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Conn: ConnArgs{IsMaster: true}},
		func(ctx context.Context, q *Queue) error { <-ctx.Done(); return nil }) // never receives
	type result struct {
		now, wait int
		waitErr   error
		big       []byte
	}
	got := make(chan result, 1)
	slave := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Conn: ConnArgs{Log2RingSize: 4}},
		func(ctx context.Context, q *Queue) error {
			var r result
			for seq := range 40 {
				fillPacket(q.Stage(100), 0, uint64(seq))
			}
			r.now, _ = q.FlushNow()
			for seq := range 5 {
				fillPacket(q.Stage(100), 0, uint64(40+seq))
			}
			r.wait, r.waitErr = q.FlushWait(ctx, 10*time.Millisecond)
			r.big = q.Stage(70000)
			got <- r
			<-ctx.Done()
			return nil
		})
	var r result
	r = within(t, got, 10*time.Second, "a result")
	assert.Equal(t, 16, r.now, "a 16-slot ring takes 16")
	assert.Zero(t, r.wait)
	assert.ErrorIs(t, r.waitErr, ErrNoBufRing)
	assert.Nil(t, r.big)
	st := slave.Stats()[0]
	assert.Equal(t, uint64(16), st.TxPackets)
	assert.Equal(t, Drops{RingFull: 24 + 5, Oversize: 1}, st.Drops)
	assert.Equal(t, uint64(2), st.RingFull, "one full ring per flush")
}

// TestEndpointAsymmetricQueues: the slave asks for 2 s2m and 1 m2s ring;
// queue 1 is then tx-only on the slave and rx-only on the master.
func TestEndpointAsymmetricQueues(t *testing.T) {
	path := testSocketPath(t)
	const count = 500
	got := make(chan error, 2)
	newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Conn: ConnArgs{IsMaster: true}},
		verifyHandler(count, func(q *Queue, next uint64) (uint16, uint64) { return uint16(q.ID()), next }, got))
	slave := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Conn: ConnArgs{NumS2MRings: 2, NumM2SRings: 1}},
		func(ctx context.Context, q *Queue) error {
			for seq := range count {
				fillPacket(q.Stage(80), uint16(q.ID()), uint64(seq))
				if _, err := q.Flush(ctx); err != nil {
					return err
				}
			}
			_, err := q.Receive(ctx) // the master sends nothing (and queue 1 has no rx): waits for the end
			return err
		})
	l := waitUp(t, slave, 20*time.Second)
	assert.Equal(t, 1, l.RxQueues)
	assert.Equal(t, 2, l.TxQueues)
	for range 2 {
		require.NoError(t, within(t, got, 10*time.Second, "both queues"))
	}
	// Counters are added after each burst: the packets may land first.
	waitFor(t, 20*time.Second, "queue 1's counters", func() bool { return slave.Stats()[1].TxPackets == count })
	assert.Zero(t, slave.Stats()[1].HandlerErrors)
}
