//go:build linux && cgo

package memif

import (
	"context"
	"testing"
)

// BenchmarkEndpointWake measures park-to-wake latency: one 64-byte packet
// goes to a parked echo handler and back to a parked receiver, so each op
// is two wake-ups of a parked queue plus two bursts each way; wake-ns is
// half an op. Compare the modes: poll never parks.
func BenchmarkEndpointWake(b *testing.B) {
	for _, mode := range []WaitMode{WaitInterrupt, WaitAdaptive, WaitPoll} {
		b.Run(mode.String(), func(b *testing.B) {
			path := testSocketPath(b)
			newTestEndpoint(b, EndpointConfig{Socket: SocketArgs{Path: path}, Mode: mode,
				Conn: ConnArgs{IsMaster: true}}, echo)
			done := make(chan struct{})
			newTestEndpoint(b, EndpointConfig{Socket: SocketArgs{Path: path}, Mode: mode},
				func(ctx context.Context, q *Queue) error {
					defer close(done)
					for range 100 {
						q.Stage(64)
						q.Flush(ctx)
						q.Receive(ctx)
					}
					b.ResetTimer()
					for b.Loop() {
						q.Stage(64)
						q.Flush(ctx)
						if _, err := q.Receive(ctx); err != nil {
							b.Error(err)
							return nil
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/2, "wake-ns")
					return nil
				})
			<-done
		})
	}
}
