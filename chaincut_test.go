//go:build linux && cgo

package memif

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A chained packet whose start was received in one burst and whose rest,
// arriving in a later one, holds a bad descriptor: the receiver holding
// the start must drop it too, never join it to the next packet.

// sendSplit sends one packet of size bytes in two bursts: its first head
// buffers now, the rest when the returned func is called (after the
// receiver took the start). slots are its ring slots.
func (s *ringSender) sendSplit(size, head int) (seq uint64, slots []uint16, rest func()) {
	s.t.Helper()
	got, err := s.c.BufferAlloc(0, s.bufs, 1, uint16(size))
	require.NoError(s.t, err)
	require.Greater(s.t, got, head)
	p := s.pkt[:size]
	seq = s.seq
	s.seq++
	fillPacket(p, 1, seq)
	off := 0
	for j := range got {
		off += copy(s.bufs.Data(j), p[off:])
		slots = append(slots, s.bufs.slot(j))
	}
	require.Equal(s.t, size, off)
	sent, err := s.c.TxBurst(0, s.bufs, head)
	require.NoError(s.t, err)
	require.Equal(s.t, head, sent)
	return seq, slots, func() {
		s.t.Helper()
		sent, err := s.c.TxBurst(0, s.views[head], got-head)
		require.NoError(s.t, err)
		require.Equal(s.t, got-head, sent)
	}
}

// Forward holds the start pending (an open chain); the bad rest drops the
// whole packet, counted once per buffer, and the next packets go out alone.
func TestForwardChainCut(t *testing.T) {
	p, s, f, r, pass, flowFwd := hostileForward(t)
	flowFwd(2)
	drops := 0
	for i, a := range attacks {
		_, slots, rest := s.sendSplit(5000, 2) // 3 buffers of 2048
		_, err := f.step()
		require.NoError(t, err)
		require.Equal(t, 2, f.rx.Pending(), "the start waits for its rest")
		rest()
		a.mut(p.master.ringDesc(true, 0, slots[2]))
		seqs, _ := s.send(100, 200)
		pass(2)
		require.Equal(t, seqs, r.recv(2), a.name)
		drops += 3
		assert.Equal(t, drops, f.dropped, a.name)
		assert.Zero(t, f.rx.Pending(), a.name)
		st, err := p.slave.DescriptorStats(0)
		require.NoError(t, err)
		assert.Equal(t, uint64(drops), st.RxDropped, a.name)
		assert.Equal(t, uint64(i+1), st.RxBadDescriptors, a.name)
		flowFwd(2)
	}
	flowFwd(50) // several rings' worth: every dropped slot went back
	assert.Equal(t, drops, f.dropped)
	r.done()
	cur, rel := p.slave.ringIndex(false, 0)
	assert.Equal(t, cur, rel)
}

// RefillRxBurst reports the cut (Buffers.ChainCut) and RxReader drops the
// start it reassembled, counted once.
func TestRxChainCut(t *testing.T) {
	p := hostilePair(t)
	s := newSender(t, p.master)
	t.Run("RefillRxBurst", func(t *testing.T) {
		r := newReceiver(t, p.slave)
		flow(t, s, r, 2)
		_, slots, rest := s.sendSplit(5000, 2)
		n, _, err := p.slave.RefillRxBurst(0, r.refill, 0, r.bufs, r.bufs.Cap())
		require.NoError(t, err)
		require.Equal(t, 2, n)
		require.True(t, r.bufs.HasNext(1))
		assert.False(t, r.bufs.ChainCut())
		r.refill = n
		rest()
		p.master.ringDesc(true, 0, slots[2]).Region = 200
		seqs, _ := s.send(100)
		n, _, err = p.slave.RefillRxBurst(0, r.refill, 0, r.bufs, r.bufs.Cap())
		require.NoError(t, err)
		require.Equal(t, 1, n)
		r.refill = n
		assert.True(t, r.bufs.ChainCut())
		_, seq, err := checkPacket(r.bufs.Data(0))
		require.NoError(t, err)
		assert.Equal(t, seqs[0], seq)
		flow(t, s, r, 2)
		assert.False(t, r.bufs.ChainCut())
		st, err := p.slave.DescriptorStats(0)
		require.NoError(t, err)
		assert.Equal(t, uint64(1), st.RxBadDescriptors)
		assert.Equal(t, uint64(1), st.RxDropped, "the rest; the start is the caller's")
		r.done()
	})
	t.Run("RxReader", func(t *testing.T) {
		rd, err := NewRxReader(p.slave, 0, 64)
		require.NoError(t, err)
		t.Cleanup(func() { rd.Close() })
		_, slots, rest := s.sendSplit(5000, 2)
		// The start is taken, then Next waits for the rest: bounded.
		rd.SetTimeout(20 * time.Millisecond)
		_, err = rd.Next()
		require.ErrorIs(t, err, ErrTimeout)
		require.True(t, rd.partial)
		rest()
		p.master.ringDesc(true, 0, slots[2]).Region = 200
		seqs, _ := s.send(100, 5000, 3000)
		rd.SetTimeout(5 * time.Second)
		for _, want := range seqs {
			pkt, err := rd.Next()
			require.NoError(t, err)
			_, seq, err := checkPacket(pkt)
			require.NoError(t, err)
			assert.Equal(t, want, seq)
		}
		assert.Equal(t, uint64(1), rd.Drops())
	})
}

// CopyRx reports the cut (ErrChainCut, with ErrOversizedBuffer) of a chain
// whose start it returned (ErrPartialChain); and the rest of a chain it
// dropped arrives in a later call: dropped too, never a packet of its own.
func TestCopyRxChainCut(t *testing.T) {
	p := hostilePair(t)
	s := newSender(t, p.master)
	bufs := newBufs(t, 64)
	dst := make([]byte, 64*hostileBufSize+1<<16)
	offs := make([]int32, 65)
	recv := func(want []uint64, conds ...error) {
		t.Helper()
		n, _, err := p.slave.CopyRx(0, bufs, dst, offs)
		for _, c := range conds {
			require.ErrorIs(t, err, c)
		}
		if len(conds) == 0 {
			require.NoError(t, err)
		}
		require.Equal(t, len(want), n)
		for i, w := range want {
			_, seq, err := checkPacket(dst[offs[i]:offs[i+1]])
			require.NoError(t, err)
			assert.Equal(t, w, seq)
		}
	}
	seqs, _ := s.send(100, 5000)
	recv(seqs)

	// The start went out as a partial packet; its rest is bad.
	_, slots, rest := s.sendSplit(5000, 2)
	n, _, err := p.slave.CopyRx(0, bufs, dst, offs)
	require.ErrorIs(t, err, ErrPartialChain)
	require.Equal(t, 1, n)
	require.Equal(t, 2*hostileBufSize, int(offs[1]))
	rest()
	p.master.ringDesc(true, 0, slots[2]).Region = 200
	seqs, _ = s.send(100, 3000)
	recv(seqs, ErrChainCut, ErrOversizedBuffer)

	// A bad buffer in the start: the rest, arriving later, is dropped too.
	_, slots, rest = s.sendSplit(5000, 2)
	p.master.ringDesc(true, 0, slots[1]).Region = 200
	recv(nil, ErrOversizedBuffer)
	rest()
	seqs, _ = s.send(100, 5000)
	recv(seqs)

	st, err := p.slave.DescriptorStats(0)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), st.RxBadDescriptors)
	assert.Equal(t, uint64(1+3), st.RxDropped, "the cut rest; the whole bad chain")
	cur, rel := p.slave.ringIndex(false, 0)
	assert.Equal(t, cur, rel)
}

// Queue.Receive: a burst that takes only the bad rest of a chain whose
// start the last Receive returned, in a Receive that then ends (its ctx
// timed out) with no packets, leaves the cut pending: the next batch
// reports it (ChainCut), once.
func TestQueueChainCutAcrossEmptyReceive(t *testing.T) {
	p := hostilePair(t)
	s := newSender(t, p.master)
	rx := newBufs(t, 64)
	sess := &session{link: Link{RxQueues: 1, TxQueues: 1, BufferSize: hostileBufSize}}
	sess.ctx, sess.cancel = context.WithCancel(context.Background())
	t.Cleanup(sess.cancel)
	// Built as newQueue does for WaitPoll (no eventfd waiter), on the slave
	// the test plays the hostile master of.
	q := &Queue{c: p.slave, sess: sess, st: &queueCounters{}, mode: WaitPoll, rx: rx}
	receive := func(d time.Duration) (int, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return q.Receive(ctx)
	}
	// recvGood receives the packets of seqs, one buffer each, verified.
	recvGood := func(seqs []uint64, cut bool) {
		t.Helper()
		n, err := receive(5 * time.Second)
		require.NoError(t, err)
		require.Equal(t, len(seqs), n)
		assert.Equal(t, cut, q.Rx().ChainCut())
		v := q.Rx().Batch(n)
		for i, want := range seqs {
			require.False(t, v.HasNext(i))
			_, seq, err := checkPacket(v.Data(i))
			require.NoError(t, err)
			assert.Equal(t, want, seq)
		}
	}
	seqs, _ := s.send(100, 200)
	recvGood(seqs, false)

	// Receive #1: the start of a 5000-byte packet, 2 of its 3 buffers.
	seq, slots, rest := s.sendSplit(5000, 2)
	n, err := receive(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.True(t, q.Rx().HasNext(1), "the chain goes on")
	assert.False(t, q.Rx().ChainCut())
	want := make([]byte, 5000)
	fillPacket(want, 1, seq)
	assert.Equal(t, want[:hostileBufSize], q.Rx().Data(0), "the start's first buffer")
	assert.Equal(t, want[hostileBufSize:2*hostileBufSize], q.Rx().Data(1), "the start's second buffer")

	// Receive #2: its burst takes only the bad rest (dropped: no packet),
	// then its short ctx ends it.
	rest()
	p.master.ringDesc(true, 0, slots[2]).Region = 200
	n, err = receive(20 * time.Millisecond)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Zero(t, n)
	st := descStats(t, p.slave, 0)
	require.Equal(t, uint64(1), st.RxBadDescriptors, "the burst consumed the bad rest")

	// Receive #3: the next good packet carries the cut.
	seqs, _ = s.send(100)
	recvGood(seqs, true)
	// Once: the batch after it has none.
	seqs, _ = s.send(100, 300)
	recvGood(seqs, false)

	st = descStats(t, p.slave, 0)
	assert.Equal(t, uint64(1), st.RxBadDescriptors)
	assert.Equal(t, uint64(1), st.RxDropped, "the rest; the start was the caller's")
	require.NoError(t, q.Release())
	cur, rel := p.slave.ringIndex(false, 0)
	assert.Equal(t, cur, rel, "every slot given back")
}
