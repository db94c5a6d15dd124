//go:build linux && cgo

package memif

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// forwarder drives Conn.Forward from a to b on queue 0.
type forwarder struct {
	a, b    *Conn
	rx, tx  *Buffers
	sent    int
	dropped int
}

func newForwarder(t testing.TB, a, b *Conn, rxCap, txCap int) *forwarder {
	return &forwarder{a: a, b: b, rx: newBufs(t, rxCap), tx: newBufs(t, txCap)}
}

// step is one Forward; it reports whether anything moved or waits.
func (f *forwarder) step() (busy bool, err error) {
	n, d, more, err := f.a.Forward(0, f.b, 0, f.rx, f.tx)
	f.sent += n
	f.dropped += d
	return n > 0 || more, err
}

// run forwards until count packets went out, stop closes or a step fails.
func (f *forwarder) run(count int, stop <-chan struct{}) error {
	for f.sent < count {
		select {
		case <-stop:
			return fmt.Errorf("forwarded %d of %d packets", f.sent, count)
		default:
		}
		busy, err := f.step()
		if err != nil {
			return err
		}
		if f.dropped != 0 {
			return fmt.Errorf("%d buffers dropped", f.dropped)
		}
		if !busy {
			runtime.Gosched()
		}
	}
	return nil
}

// settle forwards until nothing moves any more (B full or A empty) and
// returns the last step's more.
func (f *forwarder) settle(t *testing.T) bool {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	last, same := -1, 0
	for same < 20 { // 20 idle steps in a row: nothing in flight moves
		require.False(t, time.Now().After(deadline), "forwarding did not settle")
		_, err := f.step()
		require.NoError(t, err)
		if f.sent == last {
			same++
		} else {
			last, same = f.sent, 0
		}
	}
	return f.rx.Pending() > 0
}

// Topologies: A receives from its peer, B sends to its peer.
type fwdTopo struct {
	name string
	// conns returns the sender, A, B and the receiver.
	conns func(t *testing.T, argsA, argsB ConnArgs) (from, a, b, to *Conn)
}

var fwdTopos = []fwdTopo{
	{"slave-to-master", func(t *testing.T, argsA, argsB ConnArgs) (from, a, b, to *Conn) {
		p1, p2 := connectPair(t, argsA, argsA), connectPair(t, argsB, argsB)
		return p1.master, p1.slave, p2.master, p2.slave
	}},
	{"master-to-slave", func(t *testing.T, argsA, argsB ConnArgs) (from, a, b, to *Conn) {
		p1, p2 := connectPair(t, argsA, argsA), connectPair(t, argsB, argsB)
		return p1.slave, p1.master, p2.slave, p2.master
	}},
	{"hairpin-slave", func(t *testing.T, argsA, _ ConnArgs) (from, a, b, to *Conn) {
		p := connectPair(t, argsA, argsA)
		return p.master, p.slave, p.slave, p.master
	}},
	{"hairpin-master", func(t *testing.T, argsA, _ ConnArgs) (from, a, b, to *Conn) {
		p := connectPair(t, argsA, argsA)
		return p.slave, p.master, p.master, p.slave
	}},
}

// Every packet crosses sender -> A -> Forward -> B -> receiver intact and in
// order, with A and B of different buffer sizes (chains cut and joined
// differently on each side).
func TestForwardStream(t *testing.T) {
	const count = 4000
	for _, topo := range fwdTopos {
		for _, size := range []int{64, 1500, 9000} {
			for _, bufs := range [][2]uint16{{2048, 1024}, {1024, 2048}} {
				t.Run(fmt.Sprintf("%s/%d/%d-%d", topo.name, size, bufs[0], bufs[1]), func(t *testing.T) {
					argsA := ConnArgs{BufferSize: bufs[0], Log2RingSize: 10}
					argsB := ConnArgs{BufferSize: bufs[1], Log2RingSize: 10}
					from, a, b, to := topo.conns(t, argsA, argsB)
					// tx smaller than B's ring: the segment bound applies.
					f := newForwarder(t, a, b, 64, 512)
					stop := make(chan struct{})
					var wg sync.WaitGroup
					errs := make(chan error, 3)
					wg.Add(3)
					go func() {
						defer wg.Done()
						errs <- sendCopyTx(from, 0, 7, count, func(uint64) int { return size }, 1024, 32, stop)
					}()
					go func() { defer wg.Done(); errs <- f.run(count, stop) }()
					go func() { defer wg.Done(); errs <- recvStream(to, 0, 7, count, stop) }()
					waitAll(t, &wg, stop, 60*time.Second)
					close(errs)
					for err := range errs {
						assert.NoError(t, err)
					}
					assert.Zero(t, f.rx.Pending())
					cur, rel := a.ringIndex(false, 0)
					assert.Equal(t, cur, rel, "A's buffers not all given back")
				})
			}
		}
	}
}

// recvFrom receives count packets of stream starting at sequence first,
// each verified, then gives every buffer back.
func recvFrom(c *Conn, stream uint16, first uint64, count int, stop <-chan struct{}) error {
	bufs, err := NewBuffers(64)
	if err != nil {
		return err
	}
	defer bufs.Free()
	next, end := first, first+uint64(count)
	refill := 0
	for next < end {
		select {
		case <-stop:
			return fmt.Errorf("stream %d: stopped at seq %d of %d..%d", stream, next, first, end)
		default:
		}
		n, _, err := c.RefillRxBurst(0, refill, 0, bufs, bufs.Cap())
		if err != nil {
			return err
		}
		refill = n
		if n == 0 {
			runtime.Gosched()
		}
		for i := 0; i < n; i++ {
			st, seq, err := checkPacket(bufs.Data(i))
			if err != nil {
				return err
			}
			if st != stream || seq != next {
				return fmt.Errorf("got stream %d seq %d, want stream %d seq %d", st, seq, stream, next)
			}
			next++
		}
	}
	return c.RefillQueue(0, refill, 0)
}

// fwdRun runs fn under a bounded wait.
func fwdRun(t *testing.T, fns ...func(stop <-chan struct{}) error) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, len(fns))
	for _, fn := range fns {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- fn(stop) }()
	}
	waitAll(t, &wg, stop, 30*time.Second)
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// A full tx ring on B holds packets back in the rx batch and then in A's
// ring; nothing is lost, and all flows once B's peer receives.
func TestForwardBackpressure(t *testing.T) {
	const count, bRing = 500, 64
	p1 := connectPair(t, ConnArgs{Log2RingSize: 10}, ConnArgs{Log2RingSize: 10})
	p2 := connectPair(t, ConnArgs{Log2RingSize: 6}, ConnArgs{Log2RingSize: 6})
	a, b := p1.slave, p2.master
	fwdRun(t, func(stop <-chan struct{}) error {
		return sendCopyTx(p1.master, 0, 9, count, func(uint64) int { return 64 }, 1024, 32, stop)
	})
	f := newForwarder(t, a, b, 64, bRing)
	require.True(t, f.settle(t), "packets wait")
	assert.Equal(t, bRing, f.sent, "B's ring holds what it can")
	assert.Equal(t, 64, f.rx.Pending(), "the rx batch is full")
	assert.Zero(t, f.dropped)
	cur, rel := a.ringIndex(false, 0)
	assert.Equal(t, uint16(64), cur-rel, "A holds the pending buffers unrefilled")

	fwdRun(t, func(stop <-chan struct{}) error { return f.run(count, stop) },
		func(stop <-chan struct{}) error { return recvFrom(p2.slave, 9, 0, count, stop) })
	assert.Zero(t, f.dropped)
	assert.Zero(t, f.rx.Pending())
	st, err := a.DescriptorStats(0)
	require.NoError(t, err)
	assert.Zero(t, st.RxDropped)
}

// B's link down: a typed error naming B's tx side, the pending packets
// kept; once B is back they go first, then the rest, none lost.
func TestForwardLinkDown(t *testing.T) {
	const count = 200
	p1 := connectPair(t, ConnArgs{Log2RingSize: 10}, ConnArgs{Log2RingSize: 10})
	args := ConnArgs{Log2RingSize: 6}
	p2 := connectPair(t, args, args)
	a, b := p1.slave, p2.master
	fwdRun(t, func(stop <-chan struct{}) error {
		return sendCopyTx(p1.master, 0, 4, count, func(uint64) int { return 100 }, 1024, 32, stop)
	})
	f := newForwarder(t, a, b, 64, 64)
	require.True(t, f.settle(t))
	require.Equal(t, 64, f.sent)
	require.Equal(t, 64, f.rx.Pending())
	fwdRun(t, func(stop <-chan struct{}) error { return recvFrom(p2.slave, 4, 0, 64, stop) })

	require.NoError(t, p2.d.deleteConn(p2.slave))
	waitConn(t, p2.mev.disconnected, "B down", 20*time.Second)
	n, d, more, err := a.Forward(0, b, 0, f.rx, f.tx)
	var fe *ForwardError
	require.ErrorAs(t, err, &fe)
	assert.True(t, fe.Tx, "B's side failed")
	assert.ErrorIs(t, err, ErrDisconnected)
	assert.Contains(t, err.Error(), "tx side (B)")
	assert.Zero(t, n)
	assert.Zero(t, d)
	assert.True(t, more)
	assert.Equal(t, 64, f.rx.Pending(), "A's buffers kept")

	slave, err := p2.d.create(p2.sev.wire(ConnArgs{Log2RingSize: 6}))
	require.NoError(t, err)
	waitConn(t, p2.mev.connected, "B up again", 20*time.Second)
	waitConn(t, p2.sev.connected, "B's peer up again", 20*time.Second)
	f.sent = 0
	fwdRun(t, func(stop <-chan struct{}) error { return f.run(count-64, stop) },
		func(stop <-chan struct{}) error { return recvFrom(slave, 4, 64, count-64, stop) })
	assert.Zero(t, f.dropped)
	cur, rel := a.ringIndex(false, 0)
	assert.Equal(t, cur, rel)
}

// pendingForward is a forwarder from A (p1.slave) to a B (p2.master) whose
// small ring filled up: 3000-byte packets (two buffers each) wait in f.rx.
func pendingForward(t *testing.T) (p1, p2 *pair, f *forwarder, pend int) {
	p1 = connectPair(t, ConnArgs{Log2RingSize: 10}, ConnArgs{Log2RingSize: 10})
	p2 = connectPair(t, ConnArgs{Log2RingSize: 6}, ConnArgs{Log2RingSize: 6})
	fwdRun(t, func(stop <-chan struct{}) error {
		return sendCopyTx(p1.master, 0, 4, 100, func(uint64) int { return 3000 }, 1024, 32, stop)
	})
	f = newForwarder(t, p1.slave, p2.master, 64, 64)
	require.True(t, f.settle(t))
	pend = f.rx.Pending()
	require.Positive(t, pend)
	return p1, p2, f, pend
}

// ForwardDrop gives pending packets up, counted; A's rx error is typed too.
func TestForwardDropAndErrors(t *testing.T) {
	p1, p2, f, pend := pendingForward(t)
	a, b := p1.slave, p2.master
	pkts, err := a.ForwardDrop(0, f.rx)
	require.NoError(t, err)
	assert.Equal(t, (pend+1)/2, pkts, "3000-byte packets: two buffers each")
	assert.Zero(t, f.rx.Pending())
	st, err := a.DescriptorStats(0)
	require.NoError(t, err)
	assert.Equal(t, uint64(pend), st.RxDropped)

	// Argument and A-side errors say so.
	_, _, _, err = a.Forward(0, b, 0, f.rx, f.rx)
	require.ErrorIs(t, err, ErrInvalArg)
	_, _, _, err = a.Forward(3, b, 0, f.rx, f.tx)
	var fe *ForwardError
	require.ErrorAs(t, err, &fe)
	assert.False(t, fe.Tx)
	_, _, _, err = a.Forward(0, b, 3, f.rx, f.tx)
	require.ErrorAs(t, err, &fe)
	assert.True(t, fe.Tx)
	require.NoError(t, p1.d.deleteConn(p1.master))
	waitConn(t, p1.sev.disconnected, "A down", 20*time.Second)
	_, _, _, err = a.Forward(0, b, 0, f.rx, f.tx)
	require.ErrorAs(t, err, &fe)
	assert.False(t, fe.Tx)
	assert.ErrorIs(t, err, ErrDisconnected)
}

// Packets pending when A's link goes down are still given up and counted:
// their buffers went with the session.
func TestForwardDropAfterADown(t *testing.T) {
	p1, _, f, pend := pendingForward(t)
	require.NoError(t, p1.d.deleteConn(p1.master))
	waitConn(t, p1.sev.disconnected, "A down", 20*time.Second)
	pkts, err := p1.slave.ForwardDrop(0, f.rx)
	require.NoError(t, err)
	assert.Equal(t, (pend+1)/2, pkts, "3000-byte packets: two buffers each")
	assert.Zero(t, f.rx.Pending())
}

// hostileForward forwards from a hostile pair's slave (A; the test plays
// its master with s) to another pair's master (B), whose slave r receives
// and verifies. pass forwards want more packets; flowFwd sends, forwards
// and verifies rounds of 8 packets, chains among them.
func hostileForward(t *testing.T) (p *pair, s *ringSender, f *forwarder, r *receiver, pass, flowFwd func(int)) {
	p = hostilePair(t)
	args := ConnArgs{BufferSize: 1024, Log2RingSize: 10}
	p2 := connectPair(t, args, args)
	s = newSender(t, p.master)
	f = newForwarder(t, p.slave, p2.master, 64, 1024)
	r = newReceiver(t, p2.slave)
	pass = func(want int) {
		t.Helper()
		target := f.sent + want
		deadline := time.Now().Add(5 * time.Second)
		for f.sent < target {
			require.False(t, time.Now().After(deadline), "forwarded %d of %d", f.sent, target)
			_, err := f.step()
			require.NoError(t, err)
		}
	}
	flowFwd = func(rounds int) {
		t.Helper()
		for range rounds {
			seqs, _ := s.send(64, 100, 1500, 3000, 64, 700, 2048, 5000)
			pass(len(seqs))
			require.Equal(t, seqs, r.recv(len(seqs)))
		}
	}
	return p, s, f, r, pass, flowFwd
}

// A hostile peer of A: its bad descriptors are dropped and counted (in
// DescriptorStats and Forward's dropped), the packets around them forwarded.
func TestForwardHostileRx(t *testing.T) {
	p, s, f, r, pass, flowFwd := hostileForward(t)
	flowFwd(2)
	var drops uint64
	for _, a := range attacks {
		seqs, slots := s.send(100, 200, 300, 400, 500, 600, 700, 800)
		a.mut(p.master.ringDesc(true, 0, slots[3][0]))
		pass(7)
		require.Equal(t, without(seqs, seqs[3]), r.recv(7), a.name)
		drops++
		st, err := p.slave.DescriptorStats(0)
		require.NoError(t, err)
		assert.Equal(t, drops, st.RxDropped, a.name)
		assert.Equal(t, int(drops), f.dropped, a.name)
		flowFwd(2)
	}
	st, err := p.slave.DescriptorStats(0)
	require.NoError(t, err)
	assert.Equal(t, uint64(len(attacks)-1), st.RxBadDescriptors)
	assert.Equal(t, uint64(1), st.RxEmpty)
	flowFwd(50) // several rings' worth: every dropped slot went back
	r.done()
	cur, rel := p.slave.ringIndex(false, 0)
	assert.Equal(t, cur, rel)
}

func TestForwardAllocs(t *testing.T) {
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
	for i := 0; i < 32; i++ {
		fillPacket(data[offs[i]:offs[i+1]], 1, uint64(i))
	}
	txb := newBufs(t, 1024)
	rxb := newBufs(t, 64)
	dst := make([]byte, 64*2048)
	roffs := make([]int32, 65)
	allocs := testing.AllocsPerRun(100, func() {
		p1.master.CopyTx(0, txb, data, offs)
		f.step()
		p2.slave.CopyRx(0, rxb, dst, roffs)
	})
	assert.Zero(t, allocs)
	// A's or B's link down returns a prebuilt error.
	require.NoError(t, p2.d.deleteConn(p2.slave))
	waitConn(t, p2.mev.disconnected, "B down", 20*time.Second)
	allocs = testing.AllocsPerRun(100, func() {
		if _, err := f.step(); !errors.Is(err, ErrDisconnected) {
			panic(err)
		}
	})
	assert.Zero(t, allocs)
}

// A chain longer than the rx batch can never be forwarded: dropped and
// counted whole (the guard drops its rest), the packets after it flow.
func TestForwardChainBeyondBatch(t *testing.T) {
	args := ConnArgs{BufferSize: 1024, Log2RingSize: 10}
	p1, p2 := connectPair(t, args, args), connectPair(t, args, args)
	f := newForwarder(t, p1.slave, p2.master, 4, 1024)
	size := func(seq uint64) int {
		if seq == 3 {
			return 9000 // 9 buffers, the batch holds 4
		}
		return 1500
	}
	fwdRun(t, func(stop <-chan struct{}) error { return sendCopyTx(p1.master, 0, 2, 10, size, 1024, 32, stop) })
	f.settle(t)
	assert.Equal(t, 9, f.sent)
	assert.Equal(t, 9, f.dropped)
	assert.Zero(t, f.rx.Pending())
	r := newReceiver(t, p2.slave)
	assert.Equal(t, []uint64{0, 1, 2, 4, 5, 6, 7, 8, 9}, r.recv(9))
	r.done()
	st, err := p1.slave.DescriptorStats(0)
	require.NoError(t, err)
	assert.Equal(t, uint64(9), st.RxDropped)
	assert.Zero(t, st.RxBadDescriptors)
}
