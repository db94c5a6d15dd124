//go:build linux && cgo

package memif

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A hostile peer, played by the test: it writes bad descriptors straight
// into the shared rings of a loopback pair. Each must be dropped (or
// refused) and counted, the process must live, and good packets after it
// must flow and verify.

const hostileBufSize = 2048

type attack struct {
	name string
	mut  func(d *ringDesc)
}

var attacks = []attack{
	{"region 200", func(d *ringDesc) { d.Region = 200 }},
	{"offset 4 GiB away", func(d *ringDesc) { d.Offset = 0xffffff00 }},
	{"length 0x7fffffff", func(d *ringDesc) { d.Length = 0x7fffffff }},
	{"zero length", func(d *ringDesc) { d.Length = 0 }},
	{"buffer size + 1", func(d *ringDesc) { d.Length = hostileBufSize + 1 }},
}

// hostilePair connects a pair with known buffer sizes, in polling mode (no
// eventfd writes to wait on: the test drives both sides itself).
func hostilePair(t *testing.T) *pair {
	args := ConnArgs{BufferSize: hostileBufSize, Log2RingSize: 8}
	return connectPair(t, args, args)
}

// ringSender allocates and sends verified packets, recording their ring slots.
type ringSender struct {
	t     *testing.T
	c     *Conn
	bufs  *Buffers
	views []*Buffers
	seq   uint64
	pkt   []byte
}

func newSender(t *testing.T, c *Conn) *ringSender {
	// Room for a 5000-byte packet in the master's worst case (64-byte
	// segments) from any of the first slots.
	b := newBufs(t, 256)
	s := &ringSender{t: t, c: c, bufs: b, pkt: make([]byte, 1<<16)}
	for i := 0; i < b.Cap(); i++ {
		s.views = append(s.views, b.Slice(i, b.Cap()))
	}
	return s
}

// send sends one packet per size and returns each packet's ring slots.
func (s *ringSender) send(sizes ...int) (seqs []uint64, slots [][]uint16) {
	s.t.Helper()
	n := 0
	for _, sz := range sizes {
		got, err := s.c.BufferAlloc(0, s.views[n], 1, uint16(sz))
		require.NoError(s.t, err)
		require.Positive(s.t, got)
		p := s.pkt[:sz]
		fillPacket(p, 1, s.seq)
		off := 0
		var sl []uint16
		for j := n; j < n+got; j++ {
			off += copy(s.bufs.Data(j), p[off:])
			sl = append(sl, s.bufs.slot(j))
		}
		require.Equal(s.t, sz, off)
		seqs = append(seqs, s.seq)
		slots = append(slots, sl)
		s.seq++
		n += got
	}
	sent, err := s.c.TxBurst(0, s.bufs, n)
	require.NoError(s.t, err)
	require.Equal(s.t, n, sent)
	return seqs, slots
}

// receiver receives with RefillRxBurst and verifies every packet.
type receiver struct {
	t      *testing.T
	c      *Conn
	bufs   *Buffers
	refill int
	pkt    []byte
}

func newReceiver(t *testing.T, c *Conn) *receiver {
	b := newBufs(t, 64)
	return &receiver{t: t, c: c, bufs: b}
}

// recv returns the sequence numbers of the next want packets (each
// verified), waiting at most 5s; it also fails on anything beyond want.
func (r *receiver) recv(want int) []uint64 {
	r.t.Helper()
	var got []uint64
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < want {
		require.False(r.t, time.Now().After(deadline), "received %d of %d packets", len(got), want)
		n, _, err := r.c.RefillRxBurst(0, r.refill, 0, r.bufs, r.bufs.Cap())
		require.NoError(r.t, err)
		r.refill = n
		v := r.bufs.Batch(n)
		for i := range v.Len() {
			r.pkt = append(r.pkt, v.Data(i)...)
			if v.HasNext(i) {
				continue
			}
			_, seq, err := checkPacket(r.pkt)
			require.NoError(r.t, err)
			r.pkt = r.pkt[:0]
			got = append(got, seq)
		}
	}
	require.Len(r.t, got, want)
	require.Empty(r.t, r.pkt, "a chain left open")
	return got
}

// done gives every buffer back and checks no ring slot was lost: the
// receiver holds nothing and the ring is whole.
func (r *receiver) done() {
	r.t.Helper()
	require.NoError(r.t, r.c.RefillQueue(0, r.refill, 0))
	r.refill = 0
	cur, rel := r.c.ringIndex(false, 0)
	require.Equal(r.t, cur, rel, "received slots not given back")
}

func without(seqs []uint64, drop ...uint64) []uint64 {
	var out []uint64
	for _, s := range seqs {
		skip := false
		for _, d := range drop {
			skip = skip || s == d
		}
		if !skip {
			out = append(out, s)
		}
	}
	return out
}

// flow sends and receives rounds*8 packets, every one verified.
func flow(t *testing.T, s *ringSender, r *receiver, rounds int) {
	t.Helper()
	for k := 0; k < rounds; k++ {
		seqs, _ := s.send(64, 100, 1500, 3000, 64, 700, 2048, 5000)
		require.Equal(t, seqs, r.recv(len(seqs)))
	}
}

// eachWay runs f once per direction on a fresh hostile pair: from sends
// (s), to receives (r), after two rounds of verified traffic.
func eachWay(t *testing.T, f func(t *testing.T, from, to *Conn, s *ringSender, r *receiver)) {
	for _, dir := range []string{"slave receives", "master receives"} {
		t.Run(dir, func(t *testing.T) {
			p := hostilePair(t)
			from, to := p.master, p.slave
			if dir == "master receives" {
				from, to = p.slave, p.master
			}
			require.NotNil(t, from.ringDesc(true, 0, 0), "ring layout not found")
			s, r := newSender(t, from), newReceiver(t, to)
			flow(t, s, r, 2)
			f(t, from, to, s, r)
		})
	}
}

func TestHostileRxDescriptors(t *testing.T) {
	eachWay(t, func(t *testing.T, from, to *Conn, s *ringSender, r *receiver) {
		var bad, empty uint64
		for _, a := range attacks {
			seqs, slots := s.send(100, 200, 300, 400, 500, 600, 700, 800)
			a.mut(from.ringDesc(true, 0, slots[3][0])) // after the send: the receiver's to read
			require.Equal(t, without(seqs, seqs[3]), r.recv(7), a.name)
			if a.name == "zero length" {
				empty++ // a packet of one empty buffer: a peer giving buffers back
			} else {
				bad++
			}
			st := descStats(t, to, 0)
			assert.Equal(t, bad, st.RxBadDescriptors, a.name)
			assert.Equal(t, empty, st.RxEmpty, a.name)
			assert.Equal(t, bad+empty, st.RxDropped, a.name)
			flow(t, s, r, 3)
		}
		// A bad segment drops its whole chained packet, nothing else.
		seqs, slots := s.send(100, 5000, 100)
		require.Len(t, slots[1], 3)
		from.ringDesc(true, 0, slots[1][1]).Region = 200
		require.Equal(t, without(seqs, seqs[1]), r.recv(2))
		st := descStats(t, to, 0)
		assert.Equal(t, bad+1, st.RxBadDescriptors)
		assert.Equal(t, bad+empty+3, st.RxDropped)

		// An empty buffer inside a chain cuts bytes out of the packet:
		// bad, the whole packet goes.
		seqs, slots = s.send(100, 5000, 3000)
		from.ringDesc(true, 0, slots[1][1]).Length = 0
		require.Equal(t, without(seqs, seqs[1]), r.recv(2))
		st = descStats(t, to, 0)
		assert.Equal(t, bad+2, st.RxBadDescriptors)
		assert.Equal(t, bad+empty+6, st.RxDropped)
		// Several rings' worth: every dropped slot was given back.
		flow(t, s, r, 100)
		r.done()
	})
}

// RxBurst + RefillQueue(count of buffers got): the dropped slots among
// them are given back too, and CopyRx drops and counts the same way.
// A peer moving its producer index past the ring (two laps ahead, nothing
// sent) cannot make us take a slot twice: a receive takes at most the
// slots given back to the peer, and counts the index as bad once.
func TestHostileRxIndexBeyondRing(t *testing.T) {
	p := hostilePair(t)
	h := p.slave.ringHead(true, 0) // the slave publishes S2M slots by head
	require.NotNil(t, h)
	cur, _ := p.master.ringIndex(false, 0)
	*h = cur + 512 // the ring holds 256
	b := newBufs(t, 1024)
	before := descStats(t, p.master, 0)
	n, _, err := p.master.RxBurst(0, b, 1024)
	require.NoError(t, err)
	after := descStats(t, p.master, 0)
	cur2, rel2 := p.master.ringIndex(false, 0)
	assert.Equal(t, uint16(256), cur2-rel2, "a ring's worth taken, no slot twice")
	assert.Equal(t, 256, n+int(after.RxDropped-before.RxDropped))
	assert.Equal(t, before.RxBadDescriptors+1, after.RxBadDescriptors)
	seen := map[uint16]bool{}
	for i := range n {
		slot := b.slot(i) & 255
		assert.False(t, seen[slot], "slot %d handed out twice", slot)
		seen[slot] = true
	}
}

func TestHostileRxDescriptorsRxBurstAndCopyRx(t *testing.T) {
	p := hostilePair(t)
	s := newSender(t, p.master)
	bufs := newBufs(t, 64)
	for i, a := range attacks {
		seqs, slots := s.send(100, 200, 300, 400)
		a.mut(p.master.ringDesc(true, 0, slots[0][0]))
		n, _, err := p.slave.RxBurst(0, bufs, bufs.Cap())
		require.NoError(t, err)
		require.Equal(t, 3, n, a.name)
		for j := 0; j < n; j++ {
			_, seq, err := checkPacket(bufs.Data(j))
			require.NoError(t, err)
			require.Equal(t, seqs[j+1], seq)
		}
		require.NoError(t, p.slave.RefillQueue(0, n, 0))
		cur, rel := p.slave.ringIndex(false, 0)
		require.Equal(t, cur, rel, "%s: the dropped slot was not given back", a.name)

		seqs, slots = s.send(100, 200, 300)
		a.mut(p.master.ringDesc(true, 0, slots[2][0]))
		dst := make([]byte, 64*hostileBufSize)
		offs := make([]int32, 65)
		n, _, err = p.slave.CopyRx(0, bufs, dst, offs)
		if a.name == "zero length" {
			require.NoError(t, err, "a packet of one empty buffer is dropped quietly (counted)")
		} else {
			require.ErrorIs(t, err, ErrOversizedBuffer, a.name)
		}
		require.Equal(t, 2, n)
		for j := 0; j < n; j++ {
			_, seq, err := checkPacket(dst[offs[j]:offs[j+1]])
			require.NoError(t, err)
			require.Equal(t, seqs[j], seq)
		}
		st := descStats(t, p.slave, 0)
		require.Equal(t, uint64(2*(i+1)), st.RxBadDescriptors+st.RxEmpty)
	}
	flow(t, s, newReceiver(t, p.slave), 100)
}

// A master allocates from slots its slave filled: a bad one stops
// allocation before it (ErrBadDescriptor, counted once) on every
// allocating path, with no write past a small batch (the zero-length case
// overflowed it before), until the slave fixes the slot.
func TestHostileMasterTxDescriptors(t *testing.T) {
	p := hostilePair(t)
	s, r := newSender(t, p.master), newReceiver(t, p.slave)
	flow(t, s, r, 2)
	small := newBufs(t, 4)
	data := make([]byte, 300)
	offs := []int32{0, 100, 200, 300}
	short := attack{"length 1", func(d *ringDesc) { d.Length = 1 }}
	for i, a := range append(attacks, short) {
		slots := saveSlaveSlots(p.master, 16)
		for k := range slots.descs {
			a.mut(slots.desc(k))
		}
		n, err := p.master.BufferAlloc(0, small, 1, 100)
		require.ErrorIs(t, err, ErrBadDescriptor, a.name)
		require.Zero(t, n)
		_, n, err = p.master.TxBurstAlloc(0, small, 0, 1, 100)
		require.ErrorIs(t, err, ErrBadDescriptor, a.name)
		require.Zero(t, n)
		n, err = p.master.CopyTx(0, small, data, offs)
		require.ErrorIs(t, err, ErrBadDescriptor, a.name)
		require.Zero(t, n)
		st := descStats(t, p.master, 0)
		require.Equal(t, uint64(i+1), st.TxBadDescriptors, "%s: counted once per bad slot", a.name)
		slots.restore(0) // the slave repairs it
		flow(t, s, r, 3)
	}
	// A batch of the whole ring (the fast configuration): lengths and
	// region indexes still stop allocation; an offset outside the region is
	// caught after libmemif computed it, and the buffer comes back empty
	// (length 0, counted) instead of pointing there.
	whole := newBufs(t, 1<<8)
	stats := func(c *Conn) DescriptorStats {
		st := descStats(t, c, 0)
		return st
	}
	for _, a := range append(attacks, short) {
		cur, _ := p.master.ringIndex(true, 0)
		d := p.master.ringDesc(true, 0, cur)
		saved := *d
		a.mut(d)
		tx0, rx0 := stats(p.master).TxBadDescriptors, stats(p.slave).RxBadDescriptors
		n, err := p.master.BufferAlloc(0, whole, 1, 100)
		if a.name == "offset 4 GiB away" {
			require.NoError(t, err)
			require.Equal(t, 1, n)
			require.Zero(t, whole.Len(0), "emptied, not pointing outside the region")
			require.Empty(t, whole.Data(0))
			sent, err := p.master.TxBurst(0, whole, 1) // the slot goes back, empty
			require.NoError(t, err)
			require.Equal(t, 1, sent)
			// No repair by the test: the slave drops the empty buffer and
			// puts its own buffer back in the slot.
			flow(t, s, r, 2)
			require.Equal(t, rx0, stats(p.slave).RxBadDescriptors, "an empty buffer given back is not bad")
			require.Positive(t, stats(p.slave).RxEmpty)
		} else {
			require.ErrorIs(t, err, ErrBadDescriptor, a.name)
			require.Zero(t, n)
			*d = saved
			flow(t, s, r, 2)
			require.Equal(t, rx0, stats(p.slave).RxBadDescriptors)
		}
		require.Equal(t, tx0+1, stats(p.master).TxBadDescriptors, a.name)
	}
	// A head moved beyond the ring (libmemif would hand out up to 65535
	// slots, far past any batch): allocation stops, counted.
	head := p.master.ringHead(true, 0)
	require.NotNil(t, head)
	h := *head
	cur, _ := p.master.ringIndex(true, 0)
	*head = cur + 60000
	tx0 := stats(p.master).TxBadDescriptors
	n, err := p.master.BufferAlloc(0, whole, 1, 100)
	require.ErrorIs(t, err, ErrBadDescriptor)
	require.Zero(t, n)
	_, err = p.master.CopyTx(0, small, data, offs)
	require.ErrorIs(t, err, ErrBadDescriptor)
	require.Equal(t, tx0+1, stats(p.master).TxBadDescriptors)
	*head = h
	flow(t, s, r, 2)

	// A bad slot further on: what fits before it is allocated.
	cur, _ = p.master.ringIndex(true, 0)
	d := p.master.ringDesc(true, 0, cur+2)
	saved := *d
	d.Region = 300
	n, err = p.master.BufferAlloc(0, s.bufs, 4, 100)
	require.ErrorIs(t, err, ErrBadDescriptor)
	require.Equal(t, 2, n)
	for j := 0; j < n; j++ {
		fillPacket(s.bufs.Data(j)[:100], 1, s.seq)
		s.seq++
	}
	sent, err := p.master.TxBurst(0, s.bufs, n)
	require.NoError(t, err)
	require.Equal(t, 2, sent)
	require.Equal(t, []uint64{s.seq - 2, s.seq - 1}, r.recv(2))
	*d = saved
	flow(t, s, r, 100)
	r.done()
}

// A slave's free tx slots are its own, but the master can scribble on
// them: a bad region or offset is repaired (counted), and what the slave
// sends still arrives intact.
func TestHostileSlaveTxDescriptors(t *testing.T) {
	p := hostilePair(t)
	s, r := newSender(t, p.slave), newReceiver(t, p.master)
	flow(t, s, r, 2)
	for i, a := range attacks[:2] { // a slave's allocation ignores lengths
		cur, _ := p.slave.ringIndex(true, 0)
		a.mut(p.slave.ringDesc(true, 0, cur))
		a.mut(p.slave.ringDesc(true, 0, cur+100)) // checked later, once per cycle
		flow(t, s, r, 40)
		st := descStats(t, p.slave, 0)
		require.Equal(t, uint64(2*(i+1)), st.TxBadDescriptors, a.name)
	}
	r.done()
}

func TestDescriptorStatsErrors(t *testing.T) {
	p := hostilePair(t)
	_, err := p.master.DescriptorStats(1)
	require.ErrorIs(t, err, ErrQID)
	var nilConn *Conn
	_, err = nilConn.DescriptorStats(0)
	require.ErrorIs(t, err, ErrInvalArg)
	require.NoError(t, p.d.deleteConn(p.slave))
	waitConn(t, p.mev.disconnected, "master OnDisconnect", 20*time.Second)
	_, err = p.master.DescriptorStats(0)
	require.ErrorIs(t, err, ErrDisconnected)
	require.False(t, errors.Is(err, ErrInvalArg), fmt.Sprint(err))
}

// A master learns its slave's buffer length from the first buffer the slave
// refilled (half of it, for headroom) and bounds its batches by it. A
// shorter buffer of at least minSegment is a slave refilling with more
// headroom: the bound follows it down, nothing is refused. Below
// minSegment (what the caller's batch was checked against) a buffer is
// refused, counted, and served again once the slave fixes it.
func TestMasterLearnsSlaveBufferLength(t *testing.T) {
	p := hostilePair(t)
	s, r := newSender(t, p.master), newReceiver(t, p.slave)
	flow(t, s, r, 2) // the master has allocated: it learned 2048 bytes
	small := newBufs(t, 64)
	for _, length := range []uint32{minSegment - 1, 1} {
		cur, _ := p.master.ringIndex(true, 0)
		d := p.master.ringDesc(true, 0, cur)
		saved := *d
		d.Length = length
		before := descStats(t, p.master, 0)
		n, err := p.master.BufferAlloc(0, small, 1, 100)
		require.ErrorIs(t, err, ErrBadDescriptor, "length %d", length)
		require.Zero(t, n)
		after := descStats(t, p.master, 0)
		require.Equal(t, before.TxBadDescriptors+1, after.TxBadDescriptors)
		*d = saved
		flow(t, s, r, 2)
	}
	// Shorter than learned, down to minSegment: still a buffer.
	for _, length := range []uint32{hostileBufSize/2 - 1, minSegment} {
		cur, _ := p.master.ringIndex(true, 0)
		p.master.ringDesc(true, 0, cur).Length = length
		before := descStats(t, p.master, 0)
		flow(t, s, r, 2) // every packet verified, the first in that buffer
		after := descStats(t, p.master, 0)
		require.Equal(t, before.TxBadDescriptors, after.TxBadDescriptors, "length %d", length)
	}
}

// A slave that shortens its buffers right after the master's pre-check
// (simulated at that exact point) makes libmemif take far more descriptors
// than the batch holds (it would with a rewritten head too, up to 65535): they land in the batch's slack, never past it, and
// are given back; the allocation fails with ErrBadDescriptor, counted, and
// traffic resumes once the slave behaves.
func TestMasterAllocRaceCannotOverflowBatch(t *testing.T) {
	p := hostilePair(t)
	s, r := newSender(t, p.master), newReceiver(t, p.slave)
	flow(t, s, r, 2)
	small := newBufs(t, 40) // room for 2000 bytes in 64-byte buffers
	data := make([]byte, 2000)
	offs := []int32{0, 1000, 2000}
	for _, tc := range []struct {
		name  string
		alloc func() (int, error)
	}{
		{"BufferAlloc, small batch", func() (int, error) { return p.master.BufferAlloc(0, small, 1, 2000) }},
		{"TxBurstAlloc", func() (int, error) { _, n, err := p.master.TxBurstAlloc(0, small, 0, 1, 2000); return n, err }},
		{"CopyTx", func() (int, error) { return p.master.CopyTx(0, small, data, offs) }},
	} {
		slots := saveSlaveSlots(p.master, 1<<8)
		before := descStats(t, p.master, 0)
		p.master.setTOCTOULength(16, 0) // a 1000-byte packet now takes 63 buffers
		n, err := tc.alloc()
		p.master.setTOCTOULength(0, 0)
		require.ErrorIs(t, err, ErrBadDescriptor, tc.name)
		require.Zero(t, n, tc.name)
		after := descStats(t, p.master, 0)
		require.Greater(t, after.TxBadDescriptors, before.TxBadDescriptors, tc.name)
		// The buffers libmemif took went back to the slave empty (it drops
		// and counts them, then refills them); the slave "repairs" the
		// free ones it shortened.
		require.Greater(t, slots.taken(), small.Cap(), "%s: libmemif took more buffers than the batch holds", tc.name)
		slots.restore(slots.taken())
		flow(t, s, r, 2)
	}
}

// descStats is c's descriptor guard counts of queue qid.
func descStats(t testing.TB, c *Conn, qid uint16) DescriptorStats {
	t.Helper()
	st, err := c.DescriptorStats(qid)
	require.NoError(t, err)
	return st
}

// slaveSlots is what the slave left in n slots of the master's tx ring 0
// (its free buffers) from the master's next one on: a test that rewrites
// them, playing a hostile slave, puts back (restore) what the slave would
// repair.
type slaveSlots struct {
	c     *Conn
	cur   uint16
	descs []ringDesc
}

func saveSlaveSlots(c *Conn, n int) slaveSlots {
	cur, _ := c.ringIndex(true, 0)
	s := slaveSlots{c: c, cur: cur, descs: make([]ringDesc, n)}
	for k := range s.descs {
		s.descs[k] = *s.desc(k)
	}
	return s
}

// desc is the k-th saved slot as it is in the ring now.
func (s slaveSlots) desc(k int) *ringDesc { return s.c.ringDesc(true, 0, s.cur+uint16(k)) }

// taken is how many slots the master took since the save.
func (s slaveSlots) taken() int {
	now, _ := s.c.ringIndex(true, 0)
	return int(now - s.cur)
}

// restore puts back the saved slots from the k-th on.
func (s slaveSlots) restore(k int) {
	for ; k < len(s.descs); k++ {
		*s.desc(k) = s.descs[k]
	}
}
