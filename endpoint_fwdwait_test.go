//go:build linux && cgo

package memif

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// No forwarder's wake-up is lost: tens of thousands of round trips through
// a hairpin forwarder, every echo verified, with a one-hour Recheck on both
// sides. The forwarder parks between packets (WaitInterrupt at once,
// WaitAdaptive after its spin), so a signal swallowed between its last look
// at the ring and its park would stall the test (bounded here) instead of
// costing a recheck. The byte counters are exact.
func TestEndpointForwardNoLostWakeup(t *testing.T) {
	for _, mode := range []WaitMode{WaitInterrupt, WaitAdaptive} {
		t.Run(mode.String(), func(t *testing.T) {
			path := testSocketPath(t)
			var self atomic.Pointer[Endpoint]
			master := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Mode: mode,
				Recheck: time.Hour, Conn: ConnArgs{IsMaster: true}}, forwardTo(&self, -1))
			self.Store(master)
			const queues, count = 2, 20000
			size := func(qid int) int { return 64 + qid*100 }
			results := make(chan error, queues)
			slave := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Mode: mode,
				Recheck: time.Hour, Conn: ConnArgs{NumS2MRings: queues, NumM2SRings: queues, Log2RingSize: 8}},
				func(ctx context.Context, q *Queue) error {
					// One packet in flight on queue 0, four on queue 1.
					results <- pingStream(ctx, q, count, size(q.ID()), 1+q.ID()*3)
					return nil
				})
			waitUp(t, slave, 20*time.Second)
			for range queues {
				select {
				case err := <-results:
					require.NoError(t, err)
				case <-time.After(60 * time.Second):
					t.Fatal("round trips did not finish within 60s: a forwarder's wake-up was lost")
				}
			}
			waitFor(t, 20*time.Second, "master counters", func() bool {
				st := master.Stats()
				return len(st) == queues && st[0].TxPackets == count && st[1].TxPackets == count
			})
			for qid, s := range master.Stats() {
				want := uint64(count * size(qid))
				assert.Equal(t, uint64(count), s.RxPackets, "queue %d", qid)
				assert.Equal(t, want, s.RxBytes, "queue %d", qid)
				assert.Equal(t, want, s.TxBytes, "queue %d", qid)
				assert.Zero(t, s.Drops, "queue %d", qid)
			}
			if mode == WaitInterrupt {
				var parks uint64
				for _, st := range master.Stats() {
					parks += st.Parks
				}
				// About 1.25*count when every look finds the ring empty (one
				// park per ping on queue 0, per 4 on queue 1); a forwarder
				// descheduled on a loaded host finds the next packet there.
				assert.Greater(t, parks, uint64(count/2), "the forwarder parked between packets")
			}
		})
	}
}

// Forward's byte counters, exact: A's queue counts what it received and
// forwarded, B's queue what it sent, chains included; neither counts the
// other direction.
func TestEndpointForwardCountsBytes(t *testing.T) {
	const count = 3000
	size := func(seq int) int { return hdrLen + 40 + seq*397%5000 } // up to three 2048-byte buffers
	var total uint64
	for i := range count {
		total += uint64(size(i))
	}
	pathA, pathB := testSocketPath(t), testSocketPath(t)
	var b atomic.Pointer[Endpoint]
	a := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathA}, Mode: WaitAdaptive,
		Conn: ConnArgs{IsMaster: true}}, forwardTo(&b, -1))
	b.Store(newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathB}, Conn: ConnArgs{IsMaster: true}},
		func(ctx context.Context, q *Queue) error { <-ctx.Done(); return nil }))
	got := make(chan error, 1)
	newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathB}},
		func(ctx context.Context, q *Queue) error {
			got <- recvChains(ctx, q, count, size)
			<-ctx.Done()
			return nil
		})
	waitUp(t, b.Load(), 20*time.Second)
	sent := make(chan error, 1)
	newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathA}},
		func(ctx context.Context, q *Queue) error {
			for i := range count {
				fillPacket(q.Stage(size(i)), 1, uint64(i))
				if i%32 == 31 || i == count-1 {
					if _, err := q.Flush(ctx); err != nil {
						sent <- err
						return nil
					}
				}
			}
			sent <- nil
			<-ctx.Done()
			return nil
		})
	for _, ch := range []chan error{sent, got} {
		select {
		case err := <-ch:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("the stream did not finish within 30s")
		}
	}
	waitFor(t, 20*time.Second, "B's counters", func() bool { return b.Load().Stats()[0].TxPackets == count })
	sa, sb := a.Stats()[0], b.Load().Stats()[0]
	assert.Equal(t, uint64(count), sa.RxPackets)
	assert.Equal(t, total, sa.RxBytes)
	assert.Zero(t, sa.TxPackets+sa.TxBytes)
	assert.Equal(t, uint64(count), sb.TxPackets)
	assert.Equal(t, total, sb.TxBytes)
	assert.Zero(t, sb.RxPackets+sb.RxBytes)
	assert.Zero(t, sa.Drops)
	assert.Zero(t, sb.Drops)
}

// recvChains receives count packets of stream 1 on q, chains reassembled,
// and verifies each (checksum, sequence, size).
func recvChains(ctx context.Context, q *Queue, count int, size func(int) int) error {
	var pkt []byte
	next := 0
	for next < count {
		n, err := q.Receive(ctx)
		if err != nil {
			return fmt.Errorf("after %d of %d packets: %w", next, count, err)
		}
		rx := q.Rx()
		for i := range n {
			pkt = append(pkt, rx.Data(i)...)
			if rx.HasNext(i) {
				continue
			}
			st, seq, err := checkPacket(pkt)
			if err != nil {
				return err
			}
			if st != 1 || seq != uint64(next) || len(pkt) != size(next) {
				return fmt.Errorf("got stream %d seq %d (%d bytes), want seq %d (%d bytes)", st, seq, len(pkt), next, size(next))
			}
			pkt = pkt[:0]
			next++
		}
	}
	return nil
}
