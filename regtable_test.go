//go:build linux && cgo

package memif

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// libmemif's region table, on both sides, is one of regtable.c's
// reservations: any 16-bit region index reads inside it, and what lies past
// libmemif's entries is kernel zeroes (a NULL region address).
func TestHostileRegionTableHoldsAnyIndex(t *testing.T) {
	p := hostilePair(t)
	for _, c := range []*Conn{p.master, p.slave} {
		d, err := c.Details()
		require.NoError(t, err)
		require.NotEmpty(t, d.Regions)
		table, reach := regionTable(d.Regions[0].Addr)
		require.NotNil(t, table, "master %v: libmemif's region table is not a regtable.c block", d.IsMaster)
		require.GreaterOrEqual(t, reach, uintptr(regionTableReach))
		last := unsafe.Slice((*byte)(unsafe.Add(table, 65535*regionTableEntry)), regionTableEntry)
		assert.Equal(t, make([]byte, regionTableEntry), last, "entry 65535 reads as zeroes")
	}
}

// The race the table's reach answers, made deterministic: right after the
// receiver's pre-check, every descriptor it checked gets region index 65535
// (setTOCTOURegion). libmemif reads entry 65535 of its region table (inside
// the reservation, zeroes), the post-check drops and counts every packet,
// the process lives, and packets after it flow and verify. Without
// regtable.c this read lands 2 MiB past a small heap block: a SIGSEGV, or
// an ASan report under ./build.sh asan.
func TestHostileRegionIndexAfterCheck(t *testing.T) {
	eachWay(t, func(t *testing.T, from, to *Conn, s *ringSender, r *receiver) {
		before := descStats(t, to, 0)
		seqs, _ := s.send(100, 200, 300, 400, 500, 600, 700, 800) // one buffer each
		to.setTOCTOURegion(65535)
		n, _, err := to.RefillRxBurst(0, r.refill, 0, r.bufs, r.bufs.Cap())
		to.setTOCTOURegion(-1)
		require.NoError(t, err)
		require.Zero(t, n, "a buffer of region 65535 was handed out")
		r.refill = 0
		after := descStats(t, to, 0)
		assert.Equal(t, uint64(len(seqs)), after.RxBadDescriptors-before.RxBadDescriptors)
		assert.Equal(t, uint64(len(seqs)), after.RxDropped-before.RxDropped)
		flow(t, s, r, 100) // several rings' worth: every dropped slot came back
		r.done()
	})
}

// The same on a master's allocation, which reads the slave's descriptors:
// rewritten to region 65535 right after the pre-check, the buffer libmemif
// computes from entry 65535 (zeroes) comes back emptied and counted, the
// slave drops the slot it gets back, and traffic after it verifies.
func TestHostileRegionIndexAfterMasterAllocCheck(t *testing.T) {
	p := hostilePair(t)
	s, r := newSender(t, p.master), newReceiver(t, p.slave)
	flow(t, s, r, 2)
	whole := newBufs(t, 1<<8) // the whole ring: one memif_buffer_alloc call
	slots := saveSlaveSlots(p.master, 1<<8)
	before := descStats(t, p.master, 0)
	slave0 := descStats(t, p.slave, 0)
	p.master.setTOCTOURegion(65535)
	n, err := p.master.BufferAlloc(0, whole, 1, 100)
	p.master.setTOCTOURegion(-1)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Zero(t, whole.Len(0), "emptied, not pointing outside the regions")
	after := descStats(t, p.master, 0)
	require.Equal(t, before.TxBadDescriptors+1, after.TxBadDescriptors)
	sent, err := p.master.TxBurst(0, whole, 1) // the slot goes back, empty
	require.NoError(t, err)
	require.Equal(t, 1, sent)
	slots.restore(1) // the free slots the test rewrote: as the slave left them
	flow(t, s, r, 100)
	st := descStats(t, p.slave, 0)
	// The sent slot still names region 65535 and is empty: the slave's
	// libmemif reads entry 65535 (zeroes), its post-check drops the buffer
	// as an empty packet (how a peer gives back allocations) and repairs
	// the slot, which the flow above then used again.
	require.Equal(t, slave0.RxBadDescriptors, st.RxBadDescriptors)
	require.Equal(t, slave0.RxEmpty+1, st.RxEmpty)
	require.Equal(t, slave0.RxDropped+1, st.RxDropped)
	r.done()
}
