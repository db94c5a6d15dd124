//go:build linux && cgo

package memif

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReusedMappingKillsOldBatches: once a batch's mapping is reused (an
// Endpoint queue's next link), the old batch's Batch and Slice, made while
// its link was up, reach nothing of the new batch: no views, no writes, no
// bursts.
func TestReusedMappingKillsOldBatches(t *testing.T) {
	const count, size = 4, 64
	// send sends count verified packets, seq from first on, master to slave.
	send := func(c *Conn, first uint64) {
		t.Helper()
		data, offs := make([]byte, count*size), []int32{0}
		for i := range count {
			fillPacket(data[i*size:(i+1)*size], 0, first+uint64(i))
			offs = append(offs, int32((i+1)*size))
		}
		tx := newBufs(t, 8)
		sent, err := c.CopyTx(0, tx, data, offs)
		require.NoError(t, err)
		require.Equal(t, count, sent)
	}
	// check verifies the count packets of v, seq from first on.
	check := func(v *Batch, first uint64) {
		t.Helper()
		require.Equal(t, count, v.Len())
		for i := range v.Len() {
			_, seq, err := checkPacket(v.Data(i))
			require.NoError(t, err)
			require.Equal(t, first+uint64(i), seq)
		}
	}

	// The old link: a burst fills the old batch; its Batch has 4 live views.
	p1 := connectPair(t, ConnArgs{}, ConnArgs{})
	old, err := NewBuffers(8)
	require.NoError(t, err)
	send(p1.master, 0)
	n, _, err := p1.slave.RxBurst(0, old, 8)
	require.NoError(t, err)
	require.Equal(t, count, n)
	early, sl := old.Batch(count), old.Slice(2, 8)
	check(&early, 0)
	require.NotNil(t, sl.Data(0), "a Slice of the live batch")
	require.NoError(t, p1.slave.RefillQueue(0, n, 0))
	// The old link ends (its regions are unmapped), as before a reuse.
	require.NoError(t, p1.d.deleteConn(p1.slave))
	waitConn(t, p1.mev.disconnected, "master OnDisconnect", 20*time.Second)

	m := old.detach()
	b, err := m.reuse(8)
	require.NoError(t, err)
	t.Cleanup(b.Free)
	require.Same(t, m, b.m, "the mapping is reused")

	// The new link's first burst fills the descriptors the old Batch and
	// Slice point at, with its own packets.
	p2 := connectPair(t, ConnArgs{}, ConnArgs{})
	send(p2.master, 100)
	n, _, err = p2.slave.RxBurst(0, b, 8)
	require.NoError(t, err)
	require.Equal(t, count, n)
	now := b.Batch(n)
	check(&now, 100)

	require.Equal(t, count, early.Len())
	for i := range early.Len() {
		assert.Nil(t, early.Data(i), "a Batch of the old batch")
	}
	for i := range sl.Cap() {
		if debugViews { // -tags memifdebug: a dead view panics
			assert.Panics(t, func() { sl.Data(i) }, "a Slice of the old batch")
		} else {
			assert.Nil(t, sl.Data(i), "a Slice of the old batch")
		}
	}
	var ae *ArgError
	require.ErrorAs(t, sl.SetLen(0, 0), &ae)
	sl.SetNext(0, true)
	assert.Equal(t, size, b.Len(2), "an old Slice's SetLen reaches the new batch")
	assert.False(t, b.HasNext(2), "an old Slice's SetNext reaches the new batch")
	_, _, err = p2.slave.RxBurst(0, sl, 1)
	require.ErrorAs(t, err, &ae)
	assert.Zero(t, old.Cap())
	old.Free()       // detached already: nothing happens
	check(&now, 100) // the new batch's packets are untouched
	require.NoError(t, p2.slave.RefillQueue(0, n, 0))
}

// TestReuseTooSmallMapsAnew: a mapping too small for the batch asked is
// freed and a new one made; a batch size outside 1..MaxBurst is refused.
func TestReuseTooSmallMapsAnew(t *testing.T) {
	old, err := NewBuffers(8)
	require.NoError(t, err)
	m := old.detach()
	before := descMaps.Load()
	b, err := m.reuse(4096)
	require.NoError(t, err)
	assert.NotSame(t, m, b.m)
	assert.Equal(t, 4096, b.Cap())
	assert.Equal(t, before, descMaps.Load(), "the small mapping is unmapped, the new one mapped")
	b.Free()
	assert.Equal(t, before-1, descMaps.Load())
	b, err = NewBuffers(8)
	require.NoError(t, err)
	_, err = b.detach().reuse(0)
	var ae *ArgError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, before-1, descMaps.Load(), "the refused mapping is unmapped")
}
