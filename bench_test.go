//go:build linux && cgo

package memif

import (
	"fmt"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// Per-call cost of every hot-path method. go test -run xxx -bench . .
//
// BenchmarkCall: calls that do (almost) nothing in C, so ns/op is the
// binding's overhead: argument checks, the ownership check, one cgo crossing. The
// empty-ring receives also include libmemif's read() of the queue eventfd.
// BenchmarkTraffic: master->slave bursts of 64-byte packets in one
// goroutine, ns/op per burst sent and received, with packets/s.

func benchPair(b *testing.B) *pair {
	args := ConnArgs{BufferSize: 2048, Log2RingSize: 10}
	p := connectPair(b, args, args)
	// Polling: no eventfd write per tx burst, as a busy-polling app runs.
	p.d.do(func() {
		if err := p.slave.SetRxMode(RxModePolling, 0); err != nil {
			b.Error(err)
		}
	})
	return p
}

func BenchmarkCall(b *testing.B) {
	p := benchPair(b)
	tx, _ := NewBuffers(256)
	defer tx.Free()
	rx, _ := NewBuffers(256)
	defer rx.Free()
	dst := make([]byte, 256*2048)
	offs := make([]int32, 257)
	for _, bc := range []struct {
		name string
		fn   func()
	}{
		{"TxBurst0", func() { p.master.TxBurst(0, tx, 0) }},
		{"BufferAlloc0", func() { p.master.BufferAlloc(0, tx, 0, 64) }},
		{"TxBurstAlloc0", func() { p.master.TxBurstAlloc(0, tx, 0, 0, 64) }},
		{"RefillQueue0", func() { p.slave.RefillQueue(0, 0, 0) }},
		{"RxBurstEmpty", func() { p.slave.RxBurst(0, rx, 256) }},
		{"RefillRxBurstEmpty", func() { p.slave.RefillRxBurst(0, 0, 0, rx, 256) }},
		{"CopyRxEmpty", func() { p.slave.CopyRx(0, rx, dst, offs) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			claims := ownClaims()
			for b.Loop() {
				bc.fn()
			}
			// Ownership changes (own.go): a goroutine that moved thread.
			b.ReportMetric(float64(ownClaims()-claims)/float64(b.N), "claims/op")
		})
	}
}

func BenchmarkTraffic(b *testing.B) {
	const size = 64
	p := benchPair(b)
	for _, burst := range []int{1, 32, 64, 256} {
		// The whole tx ring: a smaller batch on a master allocates packet by
		// packet (the slave chose the segment lengths).
		tx, _ := NewBuffers(1024)
		rx, _ := NewBuffers(256)
		data := make([]byte, burst*size)
		offs := make([]int32, burst+1)
		for i := range offs {
			offs[i] = int32(i * size)
		}
		dst := make([]byte, 256*2048)
		roffs := make([]int32, 257)
		refill, n := 0, 0
		for _, bc := range []struct {
			name string
			fn   func() int
		}{
			{"BufferAlloc+TxBurst+RefillRxBurst", func() int {
				k, _ := p.master.BufferAlloc(0, tx, burst, size)
				for i := 0; i < k; i++ {
					tx.Data(i)[0] = byte(i) // touch: a header write
				}
				p.master.TxBurst(0, tx, k)
				m, _, _ := p.slave.RefillRxBurst(0, refill, 0, rx, 256)
				for i := 0; i < m; i++ {
					_ = rx.Data(i)[0]
				}
				refill = m
				return m
			}},
			{"TxBurstAlloc+RefillRxBurst", func() int {
				for i := 0; i < n; i++ {
					tx.Data(i)[0] = byte(i)
				}
				_, n, _ = p.master.TxBurstAlloc(0, tx, n, burst, size)
				m, _, _ := p.slave.RefillRxBurst(0, refill, 0, rx, 256)
				for i := 0; i < m; i++ {
					_ = rx.Data(i)[0]
				}
				refill = m
				return m
			}},
			{"CopyTx+CopyRx", func() int {
				p.master.CopyTx(0, tx, data, offs)
				m, _, _ := p.slave.CopyRx(0, rx, dst, roffs)
				return m
			}},
		} {
			b.Run(fmt.Sprintf("%s/burst=%d", bc.name, burst), func(b *testing.B) {
				b.ReportAllocs()
				// CPU time of this thread (Go and C run on it): on a shared
				// host it moves far less than wall time.
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				cpu0 := threadCPU()
				pkts := 0
				for b.Loop() {
					pkts += bc.fn()
				}
				b.ReportMetric(float64(threadCPU()-cpu0)/float64(b.N), "cpu-ns/op")
				b.ReportMetric(float64(pkts)/b.Elapsed().Seconds(), "pkts/s")
				b.ReportMetric(float64(pkts)/float64(b.N), "pkts/op")
			})
			// Leave the rings empty for the next case.
			p.master.TxBurstAlloc(0, tx, n, 0, size)
			n = 0
			for {
				m, _, _ := p.slave.RefillRxBurst(0, refill, 0, rx, 256)
				refill = m
				if m == 0 {
					break
				}
			}
		}
		tx.Free()
		rx.Free()
	}
}

// threadCPU is the calling thread's CPU time in ns.
func threadCPU() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return ts.Nano()
}
