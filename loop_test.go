//go:build linux && cgo

package memif

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startLoop runs a Loop for the test and stops it (checking Run's result)
// at cleanup.
func startLoop(t testing.TB, args *LoopArgs) (*Loop, context.CancelFunc) {
	t.Helper()
	l, err := NewLoop(args)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- l.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-ran:
				assert.NoError(t, err, "Loop.Run")
			case <-time.After(10 * time.Second):
				buf := make([]byte, 1<<20)
				t.Errorf("Loop.Run did not return within 10s of its context ending:\n%s", buf[:runtime.Stack(buf, true)])
			}
		})
	}
	t.Cleanup(stop)
	return l, stop
}

func TestLoopLinkTrafficAndShutdown(t *testing.T) {
	fdsBefore := openFDs(t)
	l, stop := startLoop(t, &LoopArgs{Socket: SocketArgs{Path: testSocketPath(t)}})
	mev, sev := newEvents(), newEvents()
	margs, sargs := mev.wire(ConnArgs{Socket: l.Socket(), IsMaster: true}), sev.wire(ConnArgs{Socket: l.Socket()})
	master, err := Create(&margs)
	require.NoError(t, err, "Create from another goroutine while the loop waits")
	slave, err := Create(&sargs)
	require.NoError(t, err)
	waitConn(t, mev.connected, "master OnConnect", 20*time.Second)
	waitConn(t, sev.connected, "slave OnConnect", 20*time.Second)

	// Do runs on the loop goroutine, and Details from here does not wait
	// for any poll timeout (the loop holds no lock while idle).
	var d *Details
	require.NoError(t, l.Do(func() error { var err error; d, err = master.Details(); return err }))
	assert.True(t, d.LinkUp)
	d2, err := slave.Details()
	require.NoError(t, err)
	assert.True(t, d2.LinkUp)
	assert.ErrorIs(t, l.Socket().PollEvent(0), ErrInvalArg, "the loop polls its socket")

	streamOne(t, slave, master, 7, 20_000, 64)

	stop() // Run deletes both connections and the socket
	waitConn(t, mev.disconnected, "master OnDisconnect at shutdown", 20*time.Second)
	waitConn(t, sev.disconnected, "slave OnDisconnect at shutdown", 20*time.Second)
	<-l.Done()
	assert.ErrorIs(t, l.Do(func() error { return nil }), ErrLoopClosed)
	assert.ErrorIs(t, master.RequestConnection(), ErrDeleted)
	assert.Equal(t, uint64(0), l.Errors())
	assert.Equal(t, fdsBefore, openFDs(t), "the loop closed every fd it and libmemif opened")
}

func TestLoopDoPanicAndErrors(t *testing.T) {
	l, _ := startLoop(t, &LoopArgs{Socket: SocketArgs{Path: testSocketPath(t)}})
	errBoom := errors.New("boom")
	assert.ErrorIs(t, l.Do(func() error { return errBoom }), errBoom)
	var cb *CallbackError
	require.ErrorAs(t, l.Do(func() error { panic("do panic") }), &cb)
	assert.Equal(t, "do panic", cb.Panic)
	// Nested Do from the loop goroutine runs inline instead of deadlocking.
	inner := false
	require.NoError(t, l.Do(func() error { return l.Do(func() error { inner = true; return nil }) }))
	assert.True(t, inner)
}

func TestLoopCallbackErrorsReported(t *testing.T) {
	reported := make(chan error, 4)
	l, _ := startLoop(t, &LoopArgs{Socket: SocketArgs{Path: testSocketPath(t)}, OnError: func(err error) { reported <- err }})
	_, err := Create(&ConnArgs{Socket: l.Socket(), IsMaster: true})
	require.NoError(t, err)
	_, err = Create(&ConnArgs{Socket: l.Socket(), OnConnect: func(*Conn) error { panic("slave up") }})
	require.NoError(t, err)
	var cb *CallbackError
	require.ErrorAs(t, within(t, reported, 5*time.Second, "the OnConnect panic reported"), &cb)
	assert.Equal(t, "OnConnect", cb.Callback)
	assert.GreaterOrEqual(t, l.Errors(), uint64(1))
}

func TestLoopArgs(t *testing.T) {
	_, err := NewLoop(nil)
	assert.ErrorIs(t, err, ErrInvalArg)
	_, err = NewLoop(&LoopArgs{Socket: SocketArgs{Path: testSocketPath(t), OnControlFDUpdate: func(FDEvent) error { return nil }}})
	assert.ErrorIs(t, err, ErrInvalArg)
	l, _ := startLoop(t, &LoopArgs{Socket: SocketArgs{Path: testSocketPath(t)}})
	waitFor(t, 20*time.Second, "Run started", func() bool { return l.started.Load() })
	assert.ErrorIs(t, l.Run(context.Background()), ErrInvalArg, "a second Run")
}
