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

	// Stopped while waiting for tokens: nothing.
	stop.Store(true)
	p.tokens = -1e9 // a deficit no scheduling delay refills: the stop is what ends the wait
	assert.Equal(t, 0, p.take(burst, &stop))
}
