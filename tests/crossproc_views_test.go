package tests

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/memif-go/memif"
	"github.com/memif-go/memif/internal/memiftest"
	"github.com/memif-go/memif/internal/pkt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCrossProcessKillWhileHoldingViews: kill -9 of the peer process, 100
// times per role, while our Endpoint's handler holds views of echoed
// frames; the handler reads them again after the link went down. The
// Endpoint keeps the memory mapped until the handler returned, so no read
// faults and every frame checks out.
func TestCrossProcessKillWhileHoldingViews(t *testing.T) {
	runs := 100
	if testing.Short() {
		runs = 5
	}
	for _, ourRole := range []string{"master", "slave"} {
		t.Run("we are "+ourRole, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "memif.sock")
			holding, results := make(chan struct{}, 1), make(chan error, 1)
			ep := memiftest.Run(t, memif.EndpointConfig{Socket: memif.SocketArgs{Path: path},
				Conn: memif.ConnArgs{IsMaster: ourRole == "master"}, Reconnect: 10 * time.Millisecond},
				func(ctx context.Context, q *memif.Queue) error {
					results <- holdEchoes(ctx, q, holding)
					return nil
				})
			peerRole := map[string]string{"master": "slave", "slave": "master"}[ourRole]
			for run := range runs {
				peer := startPeer(t, peerRole, path)
				select {
				case <-holding:
				case err := <-results:
					t.Fatalf("run %d: the handler ended before holding views: %v\n%s", run, err, peer.String())
				case <-time.After(20 * time.Second):
					t.Fatalf("run %d: no echoes held within 20s\n%s", run, peer.String())
				}
				peer.kill9(t)
				select {
				case err := <-results:
					require.NoError(t, err, "run %d", run)
				case <-time.After(20 * time.Second):
					t.Fatalf("run %d: the link did not go down within 20s of kill -9", run)
				}
			}
			assert.Equal(t, uint64(runs), ep.Sessions())
			assert.Zero(t, ep.Stats()[0].HandlerErrors)
		})
	}
}

// holdEchoes sends 64 verified frames, checks their echoes, then holds the
// last batch's views until the link goes down and checks them again.
func holdEchoes(ctx context.Context, q *memif.Queue, holding chan<- struct{}) error {
	const count = 64
	for seq := range uint64(count) {
		f := q.Stage(ethLen + 100)
		fillFrame(f, 1, seq)
	}
	if _, err := q.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	var tr pkt.Tracker
	check := func(n int) error {
		for i := range n {
			if _, seq, err := checkFrame(q.Rx().Data(i), false); err != nil {
				return err
			} else if ctx.Err() == nil {
				tr.See(seq)
			}
		}
		return nil
	}
	for tr.Received < count {
		n, err := q.Receive(ctx)
		if err != nil {
			return fmt.Errorf("after %d echoes: %w", tr.Received, err)
		}
		if err := check(n); err != nil {
			return err
		}
		if tr.Received < count {
			continue
		}
		if tr.Lost+tr.Reordered != 0 {
			return fmt.Errorf("lost %d, reordered %d", tr.Lost, tr.Reordered)
		}
		holding <- struct{}{}
		<-ctx.Done() // the peer is killed meanwhile
		if err := check(n); err != nil {
			return fmt.Errorf("after link down: %w", err)
		}
	}
	return nil
}
