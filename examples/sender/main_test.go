package main

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/memif-go/memif"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The pacer never lets more through than the rate plus its bucket, and
// gives out at least the minimum batch once it waited.
func TestPacerBound(t *testing.T) {
	const rate, burst = 20000.0, 32
	var stop atomic.Bool
	p := newPacer(rate, burst)
	start := time.Now()
	total, takes := 0, 0
	for time.Since(start) < 100*time.Millisecond {
		n := p.take(burst, &stop)
		require.GreaterOrEqual(t, n, p.minBatch)
		require.LessOrEqual(t, n, burst)
		total += n
		takes++
	}
	limit := rate*time.Since(start).Seconds() + p.depth
	assert.LessOrEqual(t, float64(total), limit)
	assert.Equal(t, 20, p.minBatch, "about 1ms of packets per burst")
	assert.Greater(t, takes, 1)

	// Stopped while waiting for tokens: nothing. The refill clock is set
	// ahead so that no tokens accrue however late this call runs on a busy
	// host (a 1ms pause would otherwise refill a minimum batch).
	stop.Store(true)
	p.tokens = 0
	p.last = time.Now().Add(time.Hour)
	assert.Equal(t, 0, p.take(burst, &stop))
}

func TestPending(t *testing.T) {
	// Slave: produced at head, returned at tail. Master: produced at tail,
	// the slave keeps head a ring ahead once all is returned.
	slave := detailsWith(false, 1024, 5, 5, 10, 65535)
	n, ok := pending(slave)
	require.True(t, ok)
	assert.Equal(t, 11, n, "uint16 wrap: tail 65535, head 10 is 11 buffers out")
	master := detailsWith(true, 1024, 1024+300, 300, 1000, 1000)
	n, ok = pending(master)
	require.True(t, ok)
	assert.Equal(t, 1024, n)
	_, ok = pending(detailsWith(false, 1024))
	assert.False(t, ok)
}

// detailsWith builds Details with tx queues given as head, tail pairs.
func detailsWith(master bool, ring uint32, headTail ...uint16) *memif.Details {
	d := &memif.Details{IsMaster: master}
	for i := 0; i+1 < len(headTail); i += 2 {
		d.TxQueues = append(d.TxQueues, memif.QueueDetails{RingSize: ring, Head: headTail[i], Tail: headTail[i+1]})
	}
	return d
}
