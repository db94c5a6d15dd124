//go:build linux && cgo

package memif

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReusedMappingKillsOldBatches: once a batch's mapping is reused (an
// Endpoint queue's next link), the old batch's Batch and Slice reach
// nothing of the new batch: no views, no writes, no bursts.
func TestReusedMappingKillsOldBatches(t *testing.T) {
	p := connectPair(t, ConnArgs{}, ConnArgs{})
	old, err := NewBuffers(8)
	require.NoError(t, err)
	early, sl := old.Batch(4), old.Slice(2, 8) // made before any burst
	m := old.detach()
	b, err := m.reuse(8)
	require.NoError(t, err)
	t.Cleanup(b.Free)
	require.Same(t, m, b.m, "the mapping is reused")

	// The new batch's first burst fills the descriptors the old Batch and
	// Slice point at.
	const count, size = 4, 64
	data, offs := make([]byte, count*size), []int32{0}
	for i := range count {
		fillPacket(data[i*size:(i+1)*size], 0, uint64(i))
		offs = append(offs, int32((i+1)*size))
	}
	tx, err := NewBuffers(8)
	require.NoError(t, err)
	t.Cleanup(tx.Free)
	sent, err := p.master.CopyTx(0, tx, data, offs)
	require.NoError(t, err)
	require.Equal(t, count, sent)
	n, _, err := p.slave.RxBurst(0, b, 8)
	require.NoError(t, err)
	require.Equal(t, count, n)
	for i := range n {
		_, seq, err := checkPacket(b.Data(i))
		require.NoError(t, err)
		require.Equal(t, uint64(i), seq)
	}

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
	_, _, err = p.slave.RxBurst(0, sl, 1)
	require.ErrorAs(t, err, &ae)
	assert.Zero(t, old.Cap())
	old.Free() // detached already: nothing happens
	require.NoError(t, p.slave.RefillQueue(0, n, 0))
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
