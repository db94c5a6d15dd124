//go:build linux && cgo

package memif

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Every packet crosses sender -> A -> ForwardWait -> B -> receiver intact
// and in order, chains included, in every topology; then, idle, the wait
// ends empty with A's eventfd consumed, and the next packet signals it
// anew and is forwarded.
func TestForwardWaitStream(t *testing.T) {
	const count = 4000
	size := func(seq uint64) int { return []int{64, 1500, 3000, 100}[seq%4] }
	for _, topo := range fwdTopos {
		t.Run(topo.name, func(t *testing.T) {
			args := ConnArgs{BufferSize: 2048, Log2RingSize: 10}
			from, a, b, to := topo.conns(t, args, args)
			f := newForwarder(t, a, b, 64, 512)
			fwdRun(t,
				func(stop <-chan struct{}) error { return sendCopyTx(from, 0, 7, count, size, 1024, 32, stop) },
				func(stop <-chan struct{}) error {
					for f.sent < count {
						select {
						case <-stop:
							return fmt.Errorf("forwarded %d of %d packets", f.sent, count)
						default:
						}
						n, d, _, err := a.ForwardWait(0, b, 0, f.rx, f.tx, 200*time.Microsecond)
						if err != nil {
							return err
						}
						if f.sent += n; d != 0 {
							return fmt.Errorf("%d buffers dropped", d)
						}
					}
					return nil
				},
				func(stop <-chan struct{}) error { return recvStream(to, 0, 7, count, stop) })

			// Idle: the wait ends empty, A's eventfd consumed.
			for _, spin := range []time.Duration{0, 50 * time.Microsecond} {
				n, d, more, err := a.ForwardWait(0, b, 0, f.rx, f.tx, spin)
				require.NoError(t, err)
				require.Zero(t, n+d)
				require.False(t, more)
				require.False(t, efdReadable(t, a, 0, 0), "A's eventfd still signalled after an empty wait")
			}
			fwdRun(t, func(stop <-chan struct{}) error {
				return sendCopyTx(from, 0, 8, 1, size, 1024, 32, stop)
			})
			require.True(t, efdReadable(t, a, 0, 5*time.Second), "no signal for a packet sent after the wait")
			n, _, _, err := a.ForwardWait(0, b, 0, f.rx, f.tx, 0)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			fwdRun(t, func(stop <-chan struct{}) error { return recvStream(to, 0, 8, 1, stop) })
		})
	}
}

// A link going down under a waiting forward ends it at once with
// ErrDisconnected on that side: B's (its disconnect waits for the wait),
// then A's.
func TestForwardWaitLinkDown(t *testing.T) {
	p1 := connectPair(t, ConnArgs{}, ConnArgs{})
	p2 := connectPair(t, ConnArgs{}, ConnArgs{})
	a, b := p1.slave, p2.master
	f := newForwarder(t, a, b, 64, 256)
	waitErr := func(down func()) *ForwardError {
		t.Helper()
		res := make(chan error, 1)
		spinning := make(chan struct{})
		var once sync.Once
		go func() {
			for {
				_, _, _, err := a.ForwardWait(0, b, 0, f.rx, f.tx, MaxSpin)
				once.Do(func() { close(spinning) })
				if err != nil {
					res <- err
					return
				}
			}
		}()
		<-spinning
		down()
		select {
		case err := <-res:
			var fe *ForwardError
			require.ErrorAs(t, err, &fe)
			require.ErrorIs(t, err, ErrDisconnected)
			return fe
		case <-time.After(10 * time.Second):
			t.Fatal("the waiting forward did not end within 10s of the link going down")
			return nil
		}
	}
	fe := waitErr(func() { require.NoError(t, p2.d.deleteConn(p2.slave)) })
	assert.True(t, fe.Tx, "B's side")
	p3 := connectPair(t, ConnArgs{}, ConnArgs{})
	b = p3.master
	fe = waitErr(func() { require.NoError(t, p1.d.deleteConn(p1.master)) })
	assert.False(t, fe.Tx, "A's side")
}

// An empty wait, and one that forwards, allocate nothing.
func TestForwardWaitAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	p1 := connectPair(t, ConnArgs{}, ConnArgs{})
	p2 := connectPair(t, ConnArgs{}, ConnArgs{})
	f := newForwarder(t, p1.slave, p2.master, 64, 1024)
	data := make([]byte, 64*32)
	offs := make([]int32, 33)
	for i := range offs {
		offs[i] = int32(i * 64)
	}
	txb := newBufs(t, 1024)
	rxb := newBufs(t, 64)
	dst := make([]byte, 64*2048)
	roffs := make([]int32, 65)
	var failed error
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, _, err := p1.slave.ForwardWait(0, p2.master, 0, f.rx, f.tx, 0); err != nil {
			failed = err
		}
		p1.master.CopyTx(0, txb, data, offs)
		if _, _, _, err := p1.slave.ForwardWait(0, p2.master, 0, f.rx, f.tx, 10*time.Microsecond); err != nil && !errors.Is(err, ErrIntWrite) {
			failed = err
		}
		p2.slave.CopyRx(0, rxb, dst, roffs)
	})
	require.NoError(t, failed)
	assert.Zero(t, allocs)
}

// TestRxWaitHostileRing through the waiting forward: a peer of A
// scribbling A's producer index and descriptors while the forward waits:
// no crash, every call returns, bad buffers are counted. libmemif re-reads
// the region index unchecked here too; its table holds any (regtable.h).
func TestRxWaitHostileRingForward(t *testing.T) {
	p := hostilePair(t)
	p2 := connectPair(t, ConnArgs{}, ConnArgs{})
	s := newSender(t, p.slave)
	s.send(100, 200)
	f := newForwarder(t, p.master, p2.master, 64, 1024)
	stopScribble := scribble(t, p.master, 3)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // B's peer drains, so B never stays full
		defer wg.Done()
		bufs, _ := NewBuffers(64)
		defer bufs.Free()
		refill := 0
		for {
			select {
			case <-stop:
				p2.slave.RefillQueue(0, refill, 0)
				return
			default:
			}
			n, _, err := p2.slave.RefillRxBurstWait(0, refill, 0, bufs, bufs.Cap(), 20*time.Microsecond)
			if err != nil {
				return
			}
			refill = n
		}
	}()
	for range 2000 {
		_, _, _, err := p.master.ForwardWait(0, p2.master, 0, f.rx, f.tx, 20*time.Microsecond)
		if err != nil && !errors.Is(err, ErrBadDescriptor) && !errors.Is(err, ErrOversizedBuffer) {
			require.NoError(t, err)
		}
	}
	close(stop)
	wg.Wait()
	stopScribble()
	st, err := p.master.DescriptorStats(0)
	require.NoError(t, err)
	assert.Positive(t, st.RxBadDescriptors+st.RxDropped+st.RxEmpty, "bad descriptors counted")
}

// A chain whose head arrived and whose rest has not waits on A, not for B:
// the waiting forward spins on A's ring and consumes A's eventfd (so the
// caller may park), rather than returning at once with "more" (which made
// Queue.Forward spin without end and drop the chain as RingFull).
// On a ring whose layout is unknown (polled through the forward itself)
// too.
func TestForwardWaitOpenChainWaitsOnA(t *testing.T) {
	for _, unknown := range []bool{false, true} {
		t.Run(map[bool]string{false: "known ring", true: "unknown ring"}[unknown], func(t *testing.T) {
			forwardWaitOpenChain(t, unknown)
		})
	}
}

func forwardWaitOpenChain(t *testing.T, unknown bool) {
	p := hostilePair(t)
	if unknown {
		p.master.forgetRxRing(0)
	}
	s := newSender(t, p.slave) // slave to master; the master hairpins back
	h := p.slave.ringHead(true, 0)
	require.NotNil(t, h)
	_, slots := s.send(5000) // three buffers of 2048
	full := *h
	*h = slots[0][1] + 1 // publish the chain's first two buffers only
	rx := newBufs(t, 64)
	tx := newBufs(t, 64)
	n, _, _, err := p.master.ForwardWait(0, p.master, 0, rx, tx, time.Microsecond)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Equal(t, 2, rx.Pending(), "the open chain waits")

	fd, err := p.master.QueueEventFD(0)
	require.NoError(t, err)
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	_, err = unix.Write(fd, one) // an interrupt nobody consumed yet
	require.NoError(t, err)
	n, _, more, err := p.master.ForwardWait(0, p.master, 0, rx, tx, time.Microsecond)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.False(t, more, "nothing to call again for: park on A")
	assert.Equal(t, 2, rx.Pending())
	assert.False(t, efdReadable(t, p.master, 0, 0), "A's eventfd consumed before the last look")

	*h = full // the rest arrives
	n, _, _, err = p.master.ForwardWait(0, p.master, 0, rx, tx, time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the whole chain forwarded")
	assert.Zero(t, rx.Pending())
}
