//go:build linux && cgo

package memif

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkPacketAtATime: ns per packet written with TxWriter and read with
// RxReader in one goroutine (master -> slave), in groups of 32 so the
// reader's bursts are not all of one packet. Compare with BenchmarkTraffic's
// bursts.
func BenchmarkPacketAtATime(b *testing.B) {
	for _, size := range []int{64, 1500, 9000} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			p := benchPair(b)
			w, _ := NewTxWriter(p.master, 0)
			defer w.Close()
			r, _ := NewRxReader(p.slave, 0, 64)
			defer r.Close()
			r.SetTimeout(5 * time.Second)
			w.SetTimeout(5 * time.Second)
			pkt := make([]byte, size)
			const group = 32
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := w.WritePacket(pkt); err != nil {
					b.Fatal(err)
				}
				if i%group == group-1 {
					for range group {
						if _, err := r.Next(); err != nil {
							b.Fatal(err)
						}
					}
				}
			}
		})
	}
}
