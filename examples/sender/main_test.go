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
	// A fake clock: sleeping advances it, and so does each take by a
	// varying amount, as a loaded host would. Nothing depends on real time.
	clock := time.Unix(1000, 0)
	p := newPacer(rate, burst)
	p.now = func() time.Time { return clock }
	p.sleep = func(d time.Duration) { clock = clock.Add(max(d, time.Microsecond)) }
	p.last = clock
	start := clock
	total, takes := 0, 0
	for k := 0; clock.Sub(start) < time.Second; k++ {
		clock = clock.Add(time.Duration(k%7) * 300 * time.Microsecond) // the sender's own work
		n := p.take(burst, &stop)
		require.GreaterOrEqual(t, n, p.minBatch)
		require.LessOrEqual(t, n, burst)
		total += n
		takes++
		limit := rate*clock.Sub(start).Seconds() + p.depth
		require.LessOrEqual(t, float64(total), limit, "after %d takes", takes)
	}
	// The rate holds on average: within the bucket of the target.
	assert.InDelta(t, rate, float64(total), p.depth+burst)
	assert.Equal(t, 20, p.minBatch, "about 1ms of packets per burst")
	assert.Greater(t, takes, 100)

	// A long stall is not made up: at most the bucket comes at once.
	clock = clock.Add(time.Minute)
	assert.LessOrEqual(t, float64(p.take(1<<20, &stop)), p.depth)

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
