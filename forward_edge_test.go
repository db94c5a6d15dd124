//go:build linux && cgo

package memif

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A slave racing B's pre-check (simulated at that exact point) makes
// libmemif's allocation for Forward's second packet overrun the tx batch.
// The first packet, already copied, still goes out; the overrun buffers go
// back empty (libmemif cannot take an allocation back), counted; the error
// is ErrBadDescriptor on B's side; the raced packet and those after it
// wait and go out once the slave behaves. Every packet of A is accounted.
func TestForwardAllocRace(t *testing.T) {
	p1, p := hostilePair(t), hostilePair(t)
	s := newSender(t, p1.master)
	f := newForwarder(t, p1.slave, p.master, 64, 40) // 40 < B's ring: the segment bound
	r := newReceiver(t, p.slave)
	pass := func(target int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for f.sent < target {
			require.False(t, time.Now().After(deadline), "forwarded %d of %d", f.sent, target)
			_, err := f.step()
			require.NoError(t, err)
		}
	}
	warm, _ := s.send(100, 1000) // B's master learns 2048-byte buffers
	pass(2)
	require.Equal(t, warm, r.recv(2))

	seqs, _ := s.send(100, 1000, 300, 1000) // runs: 100 | 1000 (raced) | ...
	slots := saveSlaveSlots(p.master, 1<<8)
	mBefore := descStats(t, p.master, 0)
	sBefore := descStats(t, p.slave, 0)
	// The second allocation finds 16-byte buffers: 63 for 1000 bytes, the
	// batch has 39 left.
	p.master.setTOCTOULength(16, 1)
	n, d, more, err := p1.slave.Forward(0, p.master, 0, f.rx, f.tx)
	p.master.setTOCTOULength(0, 0)
	var fe *ForwardError
	require.ErrorAs(t, err, &fe)
	assert.True(t, fe.Tx, "B's side")
	require.ErrorIs(t, err, ErrBadDescriptor)
	assert.Equal(t, 1, n, "the packet allocated before the race went out")
	assert.Zero(t, d)
	assert.True(t, more)
	assert.Equal(t, 3, f.rx.Pending(), "the raced packet and the rest wait")
	f.sent += n
	now, rel := p.master.ringIndex(true, 0)
	require.Equal(t, now, rel, "nothing left allocated and unsent")
	require.Equal(t, 1+63, slots.taken())
	mAfter := descStats(t, p.master, 0)
	assert.Equal(t, mBefore.TxBadDescriptors+1, mAfter.TxBadDescriptors)
	assert.Equal(t, mBefore.TxEmpty+63, mAfter.TxEmpty, "the overrun buffers, given back empty")
	slots.restore(slots.taken()) // the slave behaves again
	require.Equal(t, seqs[:1], r.recv(1))

	pass(f.sent + 3)
	require.Equal(t, seqs[1:], r.recv(3))
	sAfter := descStats(t, p.slave, 0)
	assert.Equal(t, sBefore.RxEmpty+63, sAfter.RxEmpty, "the peer saw the empty buffers")
	assert.Zero(t, sAfter.RxBadDescriptors)
	mEnd := descStats(t, p.master, 0)
	assert.Equal(t, mAfter, mEnd, "nothing more refused or flushed")
	// A's packets: forwarded + dropped + pending == sent.
	assert.Equal(t, len(warm)+len(seqs), f.sent)
	assert.Zero(t, f.dropped)
	assert.Zero(t, f.rx.Pending())
	for range 40 { // several rings' worth: every slot went back to the slave
		seqs, _ := s.send(64, 100, 1500, 3000, 64, 700, 2048, 5000)
		pass(f.sent + len(seqs))
		require.Equal(t, seqs, r.recv(len(seqs)))
	}
	r.done()
}

// With a tx batch of B's whole ring, a packet longer than that ring can
// hold can never go: dropped and counted once, the stream around it flows.
func TestForwardBeyondWholeRing(t *testing.T) {
	const count, big = 20, 5
	for _, tc := range []struct {
		name     string
		bMaster  bool
		size     int    // of packet big
		headroom uint16 // of B's peer's refills (a slave)
	}{
		{"B slave", false, 9000, 0}, // 8 x 1024 = 8192
		{"B master", true, 9000, 0},
		{"B master, peer headroom", true, 8000, 128}, // 8 x 896 = 7168
	} {
		t.Run(tc.name, func(t *testing.T) {
			argsA := ConnArgs{BufferSize: 2048, Log2RingSize: 10}
			argsB := ConnArgs{BufferSize: 1024, Log2RingSize: 3}
			p1, p2 := connectPair(t, argsA, argsA), connectPair(t, argsB, argsB)
			from, a, b, to := p1.master, p1.slave, p2.master, p2.slave
			if !tc.bMaster {
				from, a, b, to = p1.slave, p1.master, p2.slave, p2.master
			}
			size := func(seq uint64) int {
				if seq == big {
					return tc.size
				}
				return 800
			}
			fwdRun(t, func(stop <-chan struct{}) error { return sendCopyTx(from, 0, 6, count, size, 1024, 32, stop) })
			f := newForwarder(t, a, b, 64, 8) // B's whole ring: no segment bound
			rb := newBufs(t, 64)
			var got, want []uint64
			for seq := range uint64(count) {
				if seq != big {
					want = append(want, seq)
				}
			}
			refill := 0
			deadline := time.Now().Add(10 * time.Second)
			for len(got) < len(want) {
				require.False(t, time.Now().After(deadline), "received %d of %d; %d pending", len(got), len(want), f.rx.Pending())
				_, err := f.step()
				require.NoError(t, err)
				n, _, err := to.RefillRxBurst(0, refill, tc.headroom, rb, rb.Cap())
				require.NoError(t, err)
				refill = n
				for i := range n {
					require.False(t, rb.HasNext(i), "800-byte packets fit one buffer")
					_, seq, err := checkPacket(rb.Data(i))
					require.NoError(t, err)
					got = append(got, seq)
				}
			}
			require.NoError(t, to.RefillQueue(0, refill, tc.headroom))
			assert.Equal(t, want, got)
			bufsBig := (tc.size + 2047) / 2048
			assert.Equal(t, count-1, f.sent)
			assert.Equal(t, bufsBig, f.dropped, "A's buffers of the big packet, once")
			assert.Zero(t, f.rx.Pending())
			st := descStats(t, a, 0)
			assert.Equal(t, uint64(bufsBig), st.RxDropped)
			cur, rel := a.ringIndex(false, 0)
			assert.Equal(t, cur, rel, fmt.Sprintf("A's buffers all given back (%s)", tc.name))
		})
	}
}

// CopyTx under the same race: the packet copied before the raced
// allocation goes out (n = 1), the overrun buffers go back empty.
func TestCopyTxAllocRaceSendsEarlierPackets(t *testing.T) {
	p := hostilePair(t)
	s, r := newSender(t, p.master), newReceiver(t, p.slave)
	flow(t, s, r, 2) // the master learned 2048-byte buffers
	small := newBufs(t, 40)
	data := make([]byte, 1100)
	offs := []int32{0, 100, 1100} // two runs: 100 | 1000 (raced)
	fillPacket(data[:100], 1, 1000)
	fillPacket(data[100:], 1, 1001)
	slots := saveSlaveSlots(p.master, 1<<8)
	before := descStats(t, p.master, 0)
	p.master.setTOCTOULength(16, 1)
	n, err := p.master.CopyTx(0, small, data, offs)
	p.master.setTOCTOULength(0, 0)
	require.ErrorIs(t, err, ErrBadDescriptor)
	require.Equal(t, 1, n)
	after := descStats(t, p.master, 0)
	require.Equal(t, before.TxBadDescriptors+1, after.TxBadDescriptors)
	require.Equal(t, before.TxEmpty+63, after.TxEmpty)
	now, rel := p.master.ringIndex(true, 0)
	require.Equal(t, now, rel, "nothing left allocated and unsent")
	slots.restore(slots.taken())
	require.Equal(t, []uint64{1000}, r.recv(1))
	n, err = p.master.CopyTx(0, small, data[100:], []int32{0, 1000}) // the rest, now
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, []uint64{1001}, r.recv(1))
	flow(t, s, r, 40)
	r.done()
}
