//go:build linux && cgo

package memif

import (
	"errors"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Forwarders in opposite directions between two links, X to Y and Y to X,
// run at once on two threads that swap them every round, so that every
// Forward claims both its queues under their mutexes (in the order
// Forward's doc gives): every packet crosses intact both ways, in order,
// none lost.
func TestForwardOppositeClaims(t *testing.T) {
	const count = 3000
	args := ConnArgs{BufferSize: 1024, Log2RingSize: 10}
	p1, p2 := connectPair(t, args, args), connectPair(t, args, args)
	x, y := p1.slave, p2.master
	fs := [2]*forwarder{newForwarder(t, x, y, 64, 1024), newForwarder(t, y, x, 64, 1024)}
	var work [2]chan *forwarder
	res := make(chan error, 2)
	for w := range work {
		work[w] = make(chan *forwarder)
		go func() {
			runtime.LockOSThread() // a thread of its own: another owner than the other's
			defer runtime.UnlockOSThread()
			for f := range work[w] {
				_, err := f.step()
				res <- err
			}
		}()
	}
	t.Cleanup(func() { close(work[0]); close(work[1]) })
	rounds := 0
	forward := func(stop <-chan struct{}) error {
		for ; fs[0].sent < count || fs[1].sent < count; rounds++ {
			select {
			case <-stop:
				return errors.New("stopped")
			default:
			}
			work[0] <- fs[rounds%2]
			work[1] <- fs[(rounds+1)%2]
			if err := errors.Join(<-res, <-res); err != nil {
				return err
			}
			runtime.Gosched()
		}
		return nil
	}
	size := func(s uint64) int { return 64 + int(s%3000) } // chains on both sides
	fwdRun(t,
		func(stop <-chan struct{}) error { return sendCopyTx(p1.master, 0, 1, count, size, 1024, 32, stop) },
		func(stop <-chan struct{}) error { return sendCopyTx(p2.slave, 0, 2, count, size, 1024, 32, stop) },
		forward,
		func(stop <-chan struct{}) error { return recvStream(p2.slave, 0, 1, count, stop) },
		func(stop <-chan struct{}) error { return recvStream(p1.master, 0, 2, count, stop) },
	)
	for k, f := range fs {
		assert.Equal(t, count, f.sent, "forwarder %d", k)
		assert.Zero(t, f.dropped, "forwarder %d", k)
		assert.Zero(t, f.rx.Pending(), "forwarder %d", k)
	}
	t.Logf("%d rounds, each a claim of both queues by both forwarders", rounds)
}
