//go:build linux && cgo

package memif

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A legitimate slave may raise its refill headroom at any time: its buffers
// get shorter than the master learned. The master's bound follows them
// down (to minSegment): its tx keeps flowing, nothing counted as bad.

// headroomSteps: buffer lengths 2048, 948 (under the learned 1024), 348,
// then minSegment.
var headroomSteps = []uint16{0, 1100, 1700, hostileBufSize - minSegment}

// eachHeadroom runs round (verified traffic, received with headroom hr)
// for every headroom step, at least twice and until the master c's tx ring
// index moved more than a ring's worth (256 in hostilePair) in the step:
// every slot it allocates then was refilled with hr.
func eachHeadroom(c *Conn, round func(hr uint16)) {
	for _, hr := range headroomSteps {
		from, _ := c.ringIndex(true, 0)
		moved := 0
		for rounds := 0; rounds < 2 || moved <= 1<<8; rounds++ {
			round(hr)
			cur, _ := c.ringIndex(true, 0)
			moved += int(cur - from)
			from = cur
		}
	}
}

// recvHeadroom receives want packets on c's queue 0 (each verified),
// refilling with headroom, and gives every buffer back at the end.
func recvHeadroom(t *testing.T, c *Conn, bufs *Buffers, headroom uint16, want int) []uint64 {
	t.Helper()
	var got []uint64
	var pkt []byte
	refill := 0
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < want {
		require.False(t, time.Now().After(deadline), "received %d of %d packets", len(got), want)
		n, _, err := c.RefillRxBurst(0, refill, headroom, bufs, bufs.Cap())
		require.NoError(t, err)
		refill = n
		for i := range n {
			pkt = append(pkt, bufs.Data(i)...)
			if bufs.HasNext(i) {
				continue
			}
			_, seq, err := checkPacket(pkt)
			require.NoError(t, err)
			pkt = pkt[:0]
			got = append(got, seq)
		}
	}
	require.Len(t, got, want)
	require.Empty(t, pkt, "a chain left open")
	require.NoError(t, c.RefillQueue(0, refill, headroom))
	return got
}

// noBadDescriptors checks that neither side of a pair counted anything.
func noBadDescriptors(t *testing.T, master, slave *Conn) {
	t.Helper()
	ms := descStats(t, master, 0)
	ss := descStats(t, slave, 0)
	require.Zero(t, ms.TxBadDescriptors)
	require.Zero(t, ss.RxBadDescriptors)
	require.Zero(t, ss.RxDropped)
}

func TestMasterTxFollowsSlaveHeadroom(t *testing.T) {
	p := hostilePair(t)
	s := newSender(t, p.master)
	bufs := newBufs(t, 64)
	eachHeadroom(p.master, func(hr uint16) {
		seqs, _ := s.send(64, 100, 1500, 3000, 64, 700, 2048, 5000)
		require.Equal(t, seqs, recvHeadroom(t, p.slave, bufs, hr, len(seqs)), "headroom %d", hr)
	})
	noBadDescriptors(t, p.master, p.slave)
}

// The same with Forward's tx on the master (a batch smaller than the ring:
// the segment bound applies).
func TestForwardMasterFollowsSlaveHeadroom(t *testing.T) {
	p1, p2 := hostilePair(t), hostilePair(t)
	s := newSender(t, p1.master)
	f := newForwarder(t, p1.slave, p2.master, 64, 128)
	bufs := newBufs(t, 64)
	eachHeadroom(p2.master, func(hr uint16) {
		seqs, _ := s.send(64, 100, 1500, 3000, 64, 700, 2048, 5000)
		target := f.sent + len(seqs)
		deadline := time.Now().Add(5 * time.Second)
		for f.sent < target {
			require.False(t, time.Now().After(deadline), "headroom %d: forwarded %d of %d", hr, f.sent, target)
			_, err := f.step()
			require.NoError(t, err, "headroom %d", hr)
		}
		require.Equal(t, seqs, recvHeadroom(t, p2.slave, bufs, hr, len(seqs)), "headroom %d", hr)
	})
	require.Zero(t, f.dropped)
	require.Zero(t, f.rx.Pending())
	noBadDescriptors(t, p2.master, p2.slave)
}

// A legitimate slave whose free buffers shrink to 64 bytes after the master
// learned 1024: a CopyTx whose batch was fitted to the old segment gets a
// short allocation, not a false ErrBadDescriptor with its buffers flushed.
func TestMasterCopyTxAfterSegmentLowered(t *testing.T) {
	p := hostilePair(t)
	s, r := newSender(t, p.master), newReceiver(t, p.slave)
	flow(t, s, r, 2) // the master learns the slave's 1024-byte segment
	cur, _ := p.master.ringIndex(true, 0)
	h := p.master.ringHead(true, 0)
	for i := cur; i != *h; i++ {
		p.master.ringDesc(true, 0, i).Length = 64 // legitimate: >= minSegment
	}
	b := newBufs(t, 64) // smaller than the ring: the strict bound
	data := make([]byte, 4*2000)
	offs := []int32{0, 2000, 4000, 6000, 8000}
	before := descStats(t, p.master, 0)
	n, err := p.master.CopyTx(0, b, data, offs)
	require.NoError(t, err)
	assert.Equal(t, 2, n, "two 2000-byte packets fill 64 buffers of 64 bytes")
	after := descStats(t, p.master, 0)
	assert.Equal(t, before.TxBadDescriptors, after.TxBadDescriptors)
	assert.Equal(t, before.TxEmpty, after.TxEmpty)
}
