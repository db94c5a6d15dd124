//go:build linux && cgo

package memif

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// libmemif's memif_refill_queue on a master compares tail + count with
// last_head without the 16-bit wrap: near tail 65535 it hands back every
// received buffer instead of count, and the slave overwrites buffers the
// application still holds. The binding moves a master's tail itself. This
// test holds up to 192 buffers across 5 wraps of the ring indexes and
// re-verifies every held packet (sequence number, checksum, bytes) right
// before giving it back.
func TestRefillQueueExactAcrossIndexWrap(t *testing.T) {
	for _, role := range []string{"master receives", "slave receives"} {
		t.Run(role, func(t *testing.T) {
			args := ConnArgs{BufferSize: 256, Log2RingSize: 8}
			p := connectPair(t, args, args)
			from, to := p.slave, p.master
			if role == "slave receives" {
				from, to = p.master, p.slave
			}
			const size, burst, held = 64, 32, 6
			total := uint64(5*65536 + 1000)
			if testing.Short() {
				total = 70000 // one wrap
			}
			tx := newBufs(t, burst)
			type batch struct {
				b    *Buffers
				n    int
				pkts [][]byte // copies, to compare with what is still in the ring
			}
			var free, hold []*batch
			for i := 0; i < held+1; i++ {
				b := newBufs(t, burst)
				free = append(free, &batch{b: b})
			}
			var sent, next uint64
			deadline := time.Now().Add(2 * time.Minute)
			for next < total {
				require.False(t, time.Now().After(deadline), "stuck at %d of %d packets", next, total)
				// The sender fills every slot it is given: a slot handed
				// back early gets overwritten at once.
				for k := int(min(burst, total-sent)); k > 0; k = int(min(burst, total-sent)) {
					n, err := from.BufferAlloc(0, tx, k, size)
					if err != nil && !errors.Is(err, ErrNoBufRing) {
						require.NoError(t, err)
					}
					for i := 0; i < n; i++ {
						fillPacket(tx.Data(i), 1, sent)
						sent++
					}
					if n == 0 {
						break
					}
					got, err := from.TxBurst(0, tx, n)
					require.NoError(t, err)
					require.Equal(t, n, got)
				}
				if len(free) > 0 {
					bt := free[0]
					n, _, err := to.RxBurst(0, bt.b, burst)
					require.NoError(t, err)
					if n > 0 {
						free = free[1:]
						bt.n, bt.pkts = n, bt.pkts[:0]
						for i := 0; i < n; i++ {
							_, seq, err := checkPacket(bt.b.Data(i))
							require.NoError(t, err)
							require.Equal(t, next, seq)
							next++
							bt.pkts = append(bt.pkts, append([]byte(nil), bt.b.Data(i)...))
						}
						hold = append(hold, bt)
					}
				}
				if len(hold) == held || (len(free) == 0 && len(hold) > 0) || next == total {
					// Give back the oldest batch, after checking that nothing
					// overwrote it while held.
					bt := hold[0]
					hold = hold[1:]
					for i := 0; i < bt.n; i++ {
						if !bytes.Equal(bt.pkts[i], bt.b.Data(i)) {
							_, seq, _ := checkPacket(bt.pkts[i])
							t.Fatalf("held packet seq %d was overwritten: its buffer went back to the peer early", seq)
						}
					}
					require.NoError(t, to.RefillQueue(0, bt.n, 0))
					free = append(free, bt)
				}
			}
			for _, bt := range hold {
				require.NoError(t, to.RefillQueue(0, bt.n, 0))
			}
			cur, rel := to.ringIndex(false, 0)
			require.Equal(t, cur, rel)
			require.Equal(t, uint16(total), cur, "ring index after %d packets", total)
		})
	}
}
