//go:build linux && cgo

package memif

import (
	"fmt"
	"testing"
)

// BenchmarkForward: one goroutine sends a burst of 64 packets into pair 1
// (CopyTx), moves them from pair 1's slave to pair 2's master, and receives
// them on pair 2's slave (CopyRx), per op; fused moves with Forward,
// unfused with CopyRx into Go memory then CopyTx. Both pairs poll (no
// eventfd writes). ns/op is per burst; compare the two on one run.
//
//	go test -run xxx -bench Forward -count 5 .
func BenchmarkForward(b *testing.B) {
	const burst = 64
	for _, size := range []int{64, 1500} {
		for _, mode := range []string{"fused", "unfused"} {
			b.Run(fmt.Sprintf("%s/%d", mode, size), func(b *testing.B) {
				p1, p2 := benchPair(b), benchPair(b)
				p1.d.do(func() {
					if err := p2.master.SetRxMode(RxModePolling, 0); err != nil {
						b.Error(err)
					}
				})
				data := make([]byte, burst*size)
				offs := make([]int32, burst+1)
				for i := range offs {
					offs[i] = int32(i * size)
				}
				txb, _ := NewBuffers(1024)
				defer txb.Free()
				fwdRx, _ := NewBuffers(burst)
				defer fwdRx.Free()
				fwdTx, _ := NewBuffers(1024)
				defer fwdTx.Free()
				rxb, _ := NewBuffers(burst)
				defer rxb.Free()
				mid := make([]byte, burst*2048+size)
				midOffs := make([]int32, burst+1)
				dst := make([]byte, burst*2048+size)
				dstOffs := make([]int32, burst+1)
				var moved, got int
				b.ReportAllocs()
				for b.Loop() {
					if _, err := p1.master.CopyTx(0, txb, data, offs); err != nil {
						b.Fatal(err)
					}
					if mode == "fused" {
						n, _, _, err := p1.slave.Forward(0, p2.master, 0, fwdRx, fwdTx)
						if err != nil {
							b.Fatal(err)
						}
						moved += n
					} else {
						n, _, err := p1.slave.CopyRx(0, fwdRx, mid, midOffs)
						if err != nil {
							b.Fatal(err)
						}
						if n > 0 {
							k, err := p2.master.CopyTx(0, fwdTx, mid, midOffs[:n+1])
							if err != nil {
								b.Fatal(err)
							}
							moved += k
						}
					}
					n, _, err := p2.slave.CopyRx(0, rxb, dst, dstOffs)
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
				b.ReportMetric(float64(got)/b.Elapsed().Seconds()/1e6, "Mpps")
				if moved < b.N*burst/2 {
					b.Fatalf("moved %d packets in %d bursts", moved, b.N)
				}
			})
		}
	}
}
