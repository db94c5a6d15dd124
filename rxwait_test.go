//go:build linux && cgo

package memif

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recvCopyWait is recvStreamWait (harness_test.go) over CopyRxWait.
func recvCopyWait(c *Conn, stream uint16, count int, spin time.Duration, stop <-chan struct{}) error {
	bufs, err := NewBuffers(64)
	if err != nil {
		return err
	}
	defer bufs.Free()
	dst, offs := make([]byte, 64*2048+6000), make([]int32, 65)
	var next uint64
	var pkt []byte
	for next < uint64(count) {
		select {
		case <-stop:
			return fmt.Errorf("stream %d: stopped after %d of %d packets", stream, next, count)
		default:
		}
		n, _, err := c.CopyRxWait(0, bufs, dst, offs, spin)
		partial := errors.Is(err, ErrPartialChain)
		if err != nil && !partial {
			return err
		}
		for i := 0; i < n; i++ {
			pkt = append(pkt, dst[offs[i]:offs[i+1]]...)
			if partial && i == n-1 {
				break // continues in the next call
			}
			st, seq, err := checkPacket(pkt)
			pkt = pkt[:0]
			if err != nil {
				return err
			}
			if st != stream || seq != next {
				return fmt.Errorf("got stream %d seq %d, want stream %d seq %d", st, seq, stream, next)
			}
			next++
		}
	}
	return nil
}

// Packets published while the receiver spins in C are all received, intact
// and in order, both ways (a slave waits on the ring tail, a master on its
// head), chains included.
func TestRxWaitReceivesDuringSpin(t *testing.T) {
	p := connectPair(t, ConnArgs{BufferSize: 2048}, ConnArgs{BufferSize: 2048})
	size := func(seq uint64) int { return []int{64, 1500, 3000, 100}[seq%4] }
	for _, dir := range []struct {
		name   string
		tx, rx *Conn
		copyRx bool
	}{
		{"slave RefillRxBurstWait", p.master, p.slave, false},
		{"master RefillRxBurstWait", p.slave, p.master, false},
		{"slave CopyRxWait", p.master, p.slave, true},
		{"master CopyRxWait", p.slave, p.master, true},
	} {
		t.Run(dir.name, func(t *testing.T) {
			const count = 20000
			runAll(t, 60*time.Second,
				func(stop <-chan struct{}) error { return sendStream(dir.tx, 0, 7, count, size, 2048, 8, stop) },
				func(stop <-chan struct{}) error {
					if dir.copyRx {
						return recvCopyWait(dir.rx, 7, count, 200*time.Microsecond, stop)
					}
					return recvStreamWait(dir.rx, 0, 7, count, 200*time.Microsecond, stop)
				})
		})
	}
}

// On an idle ring the wait returns 0 with the eventfd consumed; the next
// packet signals it anew (what lets a caller park with no lost wake-up) and
// the next wait returns it.
func TestRxWaitIdleConsumesEventFD(t *testing.T) {
	p := connectPair(t, ConnArgs{BufferSize: 2048}, ConnArgs{BufferSize: 2048})
	for _, dir := range []struct {
		name   string
		tx, rx *Conn
	}{{"slave receives", p.master, p.slave}, {"master receives", p.slave, p.master}} {
		t.Run(dir.name, func(t *testing.T) {
			bufs := newBufs(t, 8)
			s := newSender(t, dir.tx)
			dst, offs := make([]byte, 8*2048), make([]int32, 9)
			for round := 0; round < 50; round++ {
				s.send(100) // a signal and a packet to drain first
				n, _, err := dir.rx.RefillRxBurstWait(0, 0, 0, bufs, bufs.Cap(), 0)
				require.NoError(t, err)
				require.Equal(t, 1, n)
				require.NoError(t, dir.rx.RefillQueue(0, n, 0))
				// Idle: the spin ends with nothing, the eventfd consumed.
				spin := []time.Duration{0, 50 * time.Microsecond, time.Hour}[round%3]
				if round%2 == 0 {
					n, _, err = dir.rx.RefillRxBurstWait(0, 0, 0, bufs, bufs.Cap(), spin)
				} else {
					n, _, err = dir.rx.CopyRxWait(0, bufs, dst, offs, spin)
				}
				require.NoError(t, err)
				require.Zero(t, n)
				require.False(t, efdReadable(t, dir.rx, 0, 0), "eventfd still signalled after an empty wait")
				seqs, _ := s.send(200)
				require.True(t, efdReadable(t, dir.rx, 0, 5*time.Second), "no signal for a packet sent after the wait")
				n, _, err = dir.rx.RefillRxBurstWait(0, 0, 0, bufs, bufs.Cap(), 0)
				require.NoError(t, err)
				require.Equal(t, 1, n)
				_, seq, err := checkPacket(bufs.Data(0))
				require.NoError(t, err)
				require.Equal(t, seqs[0], seq)
				require.NoError(t, dir.rx.RefillQueue(0, n, 0))
			}
		})
	}
}

// A link going down under a spinning receive ends it with ErrDisconnected
// (not after its budget: the disconnect waits for it), and later calls
// fail the same way.
func TestRxWaitLinkDown(t *testing.T) {
	for _, copyRx := range []bool{false, true} {
		t.Run(fmt.Sprint("copy=", copyRx), func(t *testing.T) {
			p := connectPair(t, ConnArgs{}, ConnArgs{})
			bufs := newBufs(t, 32)
			var err error
			dst, offs := make([]byte, 32*2048), make([]int32, 33)
			res := make(chan error, 1)
			spinning := make(chan struct{})
			go func() {
				once := false
				for {
					var err error
					if copyRx {
						_, _, err = p.slave.CopyRxWait(0, bufs, dst, offs, MaxSpin)
					} else {
						_, _, err = p.slave.RefillRxBurstWait(0, 0, 0, bufs, bufs.Cap(), MaxSpin)
					}
					if !once {
						once = true
						close(spinning)
					}
					if err != nil {
						res <- err
						return
					}
				}
			}()
			<-spinning
			require.NoError(t, p.d.deleteConn(p.master))
			select {
			case err := <-res:
				require.ErrorIs(t, err, ErrDisconnected)
			case <-time.After(10 * time.Second):
				t.Fatal("the waiting receive did not end within 10s of the link going down")
			}
			_, _, err = p.slave.RefillRxBurstWait(0, 0, 0, bufs, bufs.Cap(), time.Millisecond)
			require.ErrorIs(t, err, ErrDisconnected)
		})
	}
}

// A peer scribbling the ring's producer index (and descriptors) while the
// receiver spins: no crash, every call returns, bad buffers are counted.
func TestRxWaitHostileRing(t *testing.T) {
	p := hostilePair(t)
	s := newSender(t, p.slave)
	bufs := newBufs(t, 64)
	dst, offs := make([]byte, 64*hostileBufSize), make([]int32, 65)
	s.send(100, 200)
	stopScribble := scribble(t, p.master, 1)
	refill := 0
	for i := 0; i < 2000; i++ {
		var n int
		var err error
		if i%2 == 0 {
			n, _, err = p.master.RefillRxBurstWait(0, refill, 0, bufs, bufs.Cap(), 20*time.Microsecond)
			refill = n
		} else {
			_, _, err = p.master.CopyRxWait(0, bufs, dst, offs, 20*time.Microsecond)
		}
		if err != nil && !errors.Is(err, ErrOversizedBuffer) && !errors.Is(err, ErrPartialChain) {
			require.NoError(t, err)
		}
		for j := 0; j < n; j++ {
			_ = bufs.Data(j) // whatever passed the guard lies inside a region
			if len(bufs.Data(j)) > 0 {
				_ = bufs.Data(j)[len(bufs.Data(j))-1]
			}
		}
	}
	stopScribble()
	st := descStats(t, p.master, 0)
	assert.Positive(t, st.RxBadDescriptors+st.RxDropped+st.RxEmpty, "bad descriptors counted")
}

// Spin arguments outside 0..MaxSpin are clamped, never refused.
func TestRxWaitSpinClamp(t *testing.T) {
	assert.EqualValues(t, 0, spinArg(-time.Second))
	assert.EqualValues(t, MaxSpin, spinArg(time.Hour))
	assert.EqualValues(t, 5000, spinArg(5*time.Microsecond))
}

// No wake-up is lost: tens of thousands of round trips through two
// Endpoints, every echo verified, with a one-hour Recheck. In
// WaitInterrupt mode each side parks between packets, so a signal
// swallowed between a look at the ring and a park would stall the test
// (bounded here) instead of costing a recheck; WaitAdaptive parks after
// its spin the same way.
func TestEndpointInterruptNoLostWakeup(t *testing.T) {
	for _, mode := range []WaitMode{WaitInterrupt, WaitAdaptive} {
		t.Run(mode.String(), func(t *testing.T) { noLostWakeup(t, mode) })
	}
}

func noLostWakeup(t *testing.T, mode WaitMode) {
	path := testSocketPath(t)
	master := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Mode: mode,
		Recheck: time.Hour, Conn: ConnArgs{IsMaster: true}}, echo)
	const queues, count = 2, 20000
	results := make(chan error, queues)
	slave := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: path}, Mode: mode,
		Recheck: time.Hour, Conn: ConnArgs{NumS2MRings: queues, NumM2SRings: queues, Log2RingSize: 8}},
		func(ctx context.Context, q *Queue) error {
			// One packet in flight on queue 0, four on queue 1. (With
			// memif_rx_burst's order this stalled in the first seconds.)
			results <- pingStream(ctx, q, count, 64+q.ID()*100, 1+q.ID()*3)
			return nil
		})
	waitUp(t, slave, 20*time.Second)
	for range queues {
		select {
		case err := <-results:
			require.NoError(t, err)
		case <-time.After(60 * time.Second):
			t.Fatal("round trips did not finish within 60s: a wake-up was lost")
		}
	}
	if mode == WaitInterrupt {
		var parks uint64
		for _, st := range append(slave.Stats(), master.Stats()...) {
			parks += st.Parks
		}
		assert.Greater(t, parks, uint64(count), "the handlers parked between packets")
	}
}

// scribble races a hostile slave writing m's S2M ring 0 (its producer
// index and random descriptors) until the returned stop is called.
func scribble(t *testing.T, m *Conn, seed uint64) (stop func()) {
	head := m.ringHead(false, 0) // the slave publishes S2M slots by head
	require.NotNil(t, head)
	done, started := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(seed, seed+1))
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			*head = uint16(r.Uint32())
			attacks[r.IntN(len(attacks))].mut(m.ringDesc(false, 0, uint16(r.Uint32())))
			if i == 0 {
				close(started)
			}
		}
	}()
	// The receiver meets a scribbled ring at least once even if this
	// goroutine gets no CPU while it runs (a loaded host).
	<-started
	return func() { close(done); wg.Wait() }
}
