//go:build linux && cgo

package memif

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A packet whose chain is open when Forward's pending packets are given
// up (ForwardDrop) is counted once, as ForwardDrop's: its rest, arriving
// later, goes without a count in Forward's dropped (DescriptorStats still
// counts each of its buffers), and the packets after it flow.
func TestForwardDropOpenChainCountedOnce(t *testing.T) {
	p, s, f, r, pass, flowFwd := hostileForward(t)
	flowFwd(2)
	for round := range 3 {
		_, _, rest := s.sendSplit(5000, 2) // 3 buffers of 2048
		_, err := f.step()
		require.NoError(t, err)
		require.Equal(t, 2, f.rx.Pending(), "the start waits for its rest")
		pkts, err := p.slave.ForwardDrop(0, f.rx)
		require.NoError(t, err)
		assert.Equal(t, 1, pkts, "the open chain is one packet")
		rest()
		seqs, _ := s.send(100, 200)
		pass(2)
		require.Equal(t, seqs, r.recv(2))
		assert.Zero(t, f.dropped, "round %d: the rest is the packet ForwardDrop counted", round)
		st := descStats(t, p.slave, 0)
		assert.Equal(t, uint64(3*(round+1)), st.RxDropped, "round %d: every buffer of it", round)
		assert.Zero(t, st.RxBadDescriptors)
		flowFwd(2)
	}
	flowFwd(50) // several rings' worth: every dropped slot went back
	assert.Zero(t, f.dropped)
	r.done()
	cur, rel := p.slave.ringIndex(false, 0)
	assert.Equal(t, cur, rel)
}

// Queue.Forward with its target down when a chain's start arrives: the
// start is dropped as LinkDown, and its rest, arriving in a later Forward
// with the target up, is that packet's too: no Drops.Oversize. Each call of
// Forward is made on the test's word, so each sees what the test set up.
func TestEndpointForwardOpenChainLinkDown(t *testing.T) {
	type result struct {
		sent  int
		drops Drops
		err   error
	}
	pathA, pathB := testSocketPath(t), testSocketPath(t)
	b := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathB}, Conn: ConnArgs{IsMaster: true}},
		func(ctx context.Context, q *Queue) error { <-ctx.Done(); return nil })
	step, results := make(chan struct{}), make(chan result, 1)
	a := newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathA}, Conn: ConnArgs{IsMaster: true}},
		func(ctx context.Context, q *Queue) error {
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-step:
				}
				sent, drops, err := q.Forward(ctx, b, 0, -1)
				results <- result{sent, drops, err}
			}
		})
	forward := func() result {
		t.Helper()
		step <- struct{}{}
		r := within(t, results, 5*time.Second, "Forward")
		require.NoError(t, r.err)
		return r
	}
	// A's peer, played by the test: a slave sending through its ring.
	d := newDriver(t, &SocketArgs{Path: pathA})
	ev := newEvents()
	c, err := d.create(ev.wire(ConnArgs{BufferSize: hostileBufSize}))
	require.NoError(t, err)
	waitConn(t, ev.connected, "A's peer OnConnect", 20*time.Second)
	waitUp(t, a, 20*time.Second)
	s := newSender(t, c)

	_, _, rest := s.sendSplit(5000, 2) // 3 buffers of 2048; B has no link
	r := forward()
	assert.Equal(t, result{drops: Drops{LinkDown: 1}}, r, "the start, as one packet")

	got := make(chan uint64, 8)
	newTestEndpoint(t, EndpointConfig{Socket: SocketArgs{Path: pathB}},
		verifying(func(seq uint64) error { got <- seq; return nil }))
	waitUp(t, b, 20*time.Second)
	rest()
	seqs, _ := s.send(100, 300)
	var sent int
	var drops Drops
	for sent < len(seqs) {
		r := forward()
		sent += r.sent
		drops.RingFull += r.drops.RingFull
		drops.LinkDown += r.drops.LinkDown
		drops.Oversize += r.drops.Oversize
	}
	assert.Zero(t, drops, "the rest is the packet dropped already")
	for _, want := range seqs {
		assert.Equal(t, want, within(t, got, 5*time.Second, "packet %d", want))
	}
	sa, sb := a.Stats()[0], b.Stats()[0]
	assert.Equal(t, uint64(2), sa.RxPackets)
	assert.Zero(t, sa.Drops)
	assert.Equal(t, uint64(3), sa.Descriptors.RxDropped, "each of the chain's buffers")
	assert.Equal(t, uint64(2), sb.TxPackets)
	assert.Equal(t, Drops{LinkDown: 1}, sb.Drops)
}

// CopyRx between ForwardDrop and Forward on one queue: ForwardDrop counted
// an open chain's start, CopyRx gets a bad buffer of its rest and Forward
// the last one. That rest is still the counted packet's: no drop in
// Forward's count, and each buffer counted once in DescriptorStats. Fails
// if CopyRx's bad buffer turns the chain back into one of its own.
func TestCopyRxKeepsForwardDropChain(t *testing.T) {
	p, s, f, r, pass, flowFwd := hostileForward(t)
	flowFwd(2)
	before := descStats(t, p.slave, 0)
	_, slots, _ := s.sendSplit(5000, 1) // 3 buffers of 2048, the first sent
	_, err := f.step()
	require.NoError(t, err)
	require.Equal(t, 1, f.rx.Pending(), "the start waits for its rest")
	pkts, err := p.slave.ForwardDrop(0, f.rx)
	require.NoError(t, err)
	require.Equal(t, 1, pkts)

	sendRest := func(i int) {
		t.Helper()
		sent, err := s.c.TxBurst(0, s.views[i], 1)
		require.NoError(t, err)
		require.Equal(t, 1, sent)
	}
	sendRest(1)
	attacks[0].mut(p.master.ringDesc(true, 0, slots[1]))
	bufs := newBufs(t, 8)
	dst := make([]byte, 8*hostileBufSize+8192)
	offs := make([]int32, 9)
	n, _, err := p.slave.CopyRx(0, bufs, dst, offs)
	require.ErrorIs(t, err, ErrOversizedBuffer, "the bad buffer of the rest")
	require.Zero(t, n)

	sendRest(2)
	seqs, _ := s.send(100, 200)
	pass(2)
	require.Equal(t, seqs, r.recv(2))
	assert.Zero(t, f.dropped, "the rest is the packet ForwardDrop counted")
	st := descStats(t, p.slave, 0)
	assert.Equal(t, before.RxDropped+3, st.RxDropped, "every buffer of it, once")
	assert.Equal(t, before.RxBadDescriptors+1, st.RxBadDescriptors)
	flowFwd(2)
	assert.Zero(t, f.dropped)
	r.done()
}
