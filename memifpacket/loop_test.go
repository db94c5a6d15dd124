//go:build linux && cgo

package memifpacket

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memif-go/memif"
	"github.com/stretchr/testify/require"
)

var sockSeq atomic.Int32

// loopPair runs a memif.Loop with a connected master and slave on a fresh
// abstract socket. stop ends the loop (which deletes both connections) and
// waits for it; it also runs at cleanup.
func loopPair(t testing.TB) (master, slave *memif.Conn, stop func()) {
	return loopPairMode(t, memif.ModeEthernet)
}

// loopPairMode is loopPair with interfaces in mode.
func loopPairMode(t testing.TB, mode memif.InterfaceMode) (master, slave *memif.Conn, stop func()) {
	t.Helper()
	path := fmt.Sprintf("@memifpacket-test-%d-%d", os.Getpid(), sockSeq.Add(1))
	loop, err := memif.NewLoop(&memif.LoopArgs{Socket: memif.SocketArgs{Path: path}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- loop.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-ran:
			require.NoError(t, err, "Loop.Run")
		case <-time.After(10 * time.Second):
			t.Fatal("Loop.Run did not return within 10s")
		}
	}
	t.Cleanup(stop)

	up := make(chan struct{}, 2)
	onUp := func(*memif.Conn) error { up <- struct{}{}; return nil }
	master, err = memif.Create(&memif.ConnArgs{Socket: loop.Socket(), IsMaster: true, Mode: mode, OnConnect: onUp})
	require.NoError(t, err)
	slave, err = memif.Create(&memif.ConnArgs{Socket: loop.Socket(), Mode: mode, OnConnect: onUp})
	require.NoError(t, err)
	for range 2 {
		select {
		case <-up:
		case <-time.After(5 * time.Second):
			t.Fatal("no link up within 5s")
		}
	}
	return master, slave, stop
}
