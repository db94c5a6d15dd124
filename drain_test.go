//go:build linux && cgo

package memif

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTxPending(t *testing.T) {
	// Slave: produced at head, returned at tail. Master: produced at tail,
	// the slave keeps head a ring ahead once all is returned.
	slave := detailsWith(false, 1024, 5, 5, 10, 65535)
	n, ok := txPending(slave)
	require.True(t, ok)
	assert.Equal(t, 11, n, "uint16 wrap: tail 65535, head 10 is 11 buffers out")
	master := detailsWith(true, 1024, 1024+300, 300, 1000, 1000)
	n, ok = txPending(master)
	require.True(t, ok)
	assert.Equal(t, 1024, n)
	_, ok = txPending(detailsWith(false, 1024))
	assert.False(t, ok)
}

// detailsWith builds Details with tx queues given as head, tail pairs.
func detailsWith(master bool, ring uint32, headTail ...uint16) *Details {
	d := &Details{IsMaster: master}
	for i := 0; i+1 < len(headTail); i += 2 {
		d.TxQueues = append(d.TxQueues, QueueDetails{RingSize: ring, Head: headTail[i], Tail: headTail[i+1]})
	}
	return d
}
