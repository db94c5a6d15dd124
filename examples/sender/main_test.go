package main

import (
	"sync/atomic"
	"testing"
	"time"

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
