//go:build linux && cgo

package memif

import (
	"context"
	"fmt"
	"runtime/debug"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// batchEcho echoes every packet through the zero-copy accessors, Rx().Batch
// in and Alloc with Tx().Batch out: both batches are then shared (a Batch
// keeps its memory alive past Free). At the end of the link it hands over
// (to kept, if not nil) a Batch made before the first Receive and one of
// the last packets received, kept past the link as a careless handler
// might.
func batchEcho(kept chan<- [2]Batch) Handler {
	return func(ctx context.Context, q *Queue) error {
		early, late := q.Rx().Batch(1), Batch{}
		for {
			n, err := q.Receive(ctx)
			if err != nil {
				if kept != nil {
					kept <- [2]Batch{early, late}
				}
				return err
			}
			rx := q.Rx().Batch(n)
			late = rx
			for i := range rx.Len() {
				p := rx.Data(i)
				if k, err := q.Alloc(1, len(p)); k != 1 {
					return fmt.Errorf("alloc for packet %d: %d buffers, %v", i, k, err)
				}
				tx := q.Tx().Batch(1)
				copy(tx.Data(0), p)
				if _, err := q.Send(1); err != nil {
					return err
				}
			}
		}
	}
}

// TestEndpointReconnectsBoundMappings cycles the link of an Endpoint whose
// handler shares its batches (Batch views in and out) 500 times, with the
// garbage collector off, as it may as well be when the Go heap barely
// grows: the descriptor mappings an Endpoint holds must not grow with the
// number of links, only with its queues. Every cycle's packets are
// verified, and the Batches the handler kept from the link before (its
// descriptors now reused) give no views.
func TestEndpointReconnectsBoundMappings(t *testing.T) {
	cycles := 500
	if testing.Short() {
		cycles = 50
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	path := testSocketPath(t)
	kept := make(chan [2]Batch, 1)
	master := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Conn: ConnArgs{IsMaster: true}}, batchEcho(kept))
	before := descMaps.Load()
	results := make(chan error, 1)
	ping := func(ctx context.Context, q *Queue) error {
		results <- pingStream(ctx, q, 4, 64, 4)
		<-ctx.Done()
		return nil
	}
	var old [2]Batch
	for cycle := range cycles {
		slave, err := NewEndpoint(EndpointConfig{Socket: SocketArgs{Path: path}, Conn: ConnArgs{Log2RingSize: 6}}, ping)
		require.NoError(t, err)
		ran := make(chan error, 1)
		go func() { ran <- slave.Run(context.Background()) }()
		require.NoError(t, within(t, results, 10*time.Second, "cycle %d: echoes", cycle), "cycle %d", cycle)
		if cycle > 0 { // the new link's packets are in the descriptors now
			require.Zero(t, old[0].Len(), "cycle %d: a Batch made before the last link's first burst is empty", cycle)
			require.Positive(t, old[1].Len())
			require.Nil(t, old[1].Data(0), "cycle %d: a Batch of the last link's last burst", cycle)
		}
		require.NoError(t, slave.Close())
		require.NoError(t, <-ran)
		old = within(t, kept, 10*time.Second, "cycle %d: the handler ended with the link", cycle)
		waitFor(t, 20*time.Second, "link down", func() bool { _, up := master.Link(); return !up })
	}
	grown := descMaps.Load() - before
	t.Logf("descriptor mappings: %+d after %d links", grown, cycles)
	// The master's queue keeps its rx and zero-copy tx batches for the next
	// link; a few more may be the last slave's, not yet unmapped.
	assert.LessOrEqual(t, grown, int64(8), "descriptor mappings after %d links, no GC", cycles)
	assert.Equal(t, uint64(cycles), master.Sessions())
	assert.Zero(t, master.Stats()[0].HandlerErrors)
}
