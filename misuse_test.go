//go:build linux && cgo

package memif

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Mistakes must fail with a typed error (or a zero value), never crash,
// wedge a queue or send stale buffers.

func TestNilReceivers(t *testing.T) {
	var c *Conn
	b := newBufs(t, 4)
	var err error
	isArg := func(err error) {
		t.Helper()
		require.ErrorIs(t, err, ErrInvalArg)
		var ae *ArgError
		require.True(t, errors.As(err, &ae), "%v", err)
	}
	isArg(c.Delete())
	isArg(c.RequestConnection())
	_, err = c.Details()
	isArg(err)
	_, err = c.QueueEventFD(0)
	isArg(err)
	isArg(c.SetRxMode(RxModePolling, 0))
	_, _, err = c.RxBurst(0, b, 1)
	isArg(err)
	_, _, err = c.RefillRxBurst(0, 0, 0, b, 1)
	isArg(err)
	isArg(c.RefillQueue(0, 1, 0))
	_, err = c.BufferAlloc(0, b, 1, 64)
	isArg(err)
	_, err = c.TxBurst(0, b, 0)
	isArg(err)
	_, err = c.BufferEnqTx(0, b, 0)
	isArg(err)
	isArg(c.SetNextFreeBuffer(0, b, 0))
	_, err = c.ReleaseTx(0)
	isArg(err)
	_, _, err = c.TxBurstAlloc(0, b, 0, 1, 64)
	isArg(err)
	_, err = c.CopyTx(0, b, []byte{1}, []int32{0, 1})
	isArg(err)
	_, _, err = c.CopyRx(0, b, make([]byte, 1<<16), make([]int32, 2))
	isArg(err)
	_, err = c.DescriptorStats(0)
	isArg(err)
	assert.Nil(t, c.Socket())
	assert.False(t, c.IsMaster())
	assert.False(t, c.Connected())

	var nb *Buffers
	freed, err := NewBuffers(2)
	require.NoError(t, err)
	freed.Free()
	for _, x := range []*Buffers{nb, freed} {
		assert.Zero(t, x.Cap())
		assert.Nil(t, x.Data(0))
		assert.Zero(t, x.Len(0))
		assert.False(t, x.HasNext(0))
		x.SetNext(0, true)
		end, size := x.PacketEnd(0, 4)
		assert.Equal(t, 0, end+size)
		out, _ := x.AppendPacket(nil, 0, 4)
		assert.Empty(t, out)
		assert.Nil(t, x.Slice(0, 1))
		x.Free()
		isArg(x.SetLen(0, 1))
		_, err = x.View(0)
		isArg(err)
	}
	// Indexes outside a live batch.
	assert.Nil(t, b.Data(-1))
	assert.Nil(t, b.Data(4))
	assert.Zero(t, b.Len(99))
	isArg(b.SetLen(4, 0))
	_, err = b.View(-1)
	isArg(err)
}

// txMisuse runs each misuse of the tx API on one side of a pair, checks
// the typed error, and that the queue still sends verified packets with
// nothing stale or duplicated reaching the receiver.
func TestTxMisuse(t *testing.T) {
	eachWay(t, func(t *testing.T, from, to *Conn, s *ringSender, r *receiver) {
		noMore := func() {
			t.Helper()
			n, _, err := to.RefillRxBurst(0, r.refill, 0, r.bufs, r.bufs.Cap())
			require.NoError(t, err)
			r.refill = n
			require.Zero(t, n, "a stale or rolled-back buffer reached the receiver")
		}
		alloc := func(b *Buffers, k int) {
			t.Helper()
			n, err := from.BufferAlloc(0, b, k, 100)
			require.NoError(t, err)
			require.Equal(t, k, n)
			for i := 0; i < n; i++ {
				fillPacket(b.Data(i), 1, s.seq)
				s.seq++
			}
		}

		// Count above the allocation: refused, the allocation given back.
		alloc(s.bufs, 4)
		_, err := from.TxBurst(0, s.bufs, 5)
		assertArgErr(t, err, "count")
		noMore()
		flow(t, s, r, 2)

		// The same batch twice: the second is refused, nothing twice.
		alloc(s.bufs, 4)
		sent, err := from.TxBurst(0, s.bufs, 4)
		require.NoError(t, err)
		require.Equal(t, 4, sent)
		require.Equal(t, []uint64{s.seq - 4, s.seq - 3, s.seq - 2, s.seq - 1}, r.recv(4))
		_, err = from.TxBurst(0, s.bufs, 4)
		require.ErrorIs(t, err, ErrStaleTxBuffer)
		noMore()
		flow(t, s, r, 2)

		// An abandoned allocation (the batch reused before sending): the
		// send is refused and both allocations are given back.
		alloc(s.bufs, 4)
		alloc(s.bufs, 4)
		_, err = from.TxBurst(0, s.bufs, 4)
		require.ErrorIs(t, err, ErrStaleTxBuffer)
		noMore()
		flow(t, s, r, 2)

		// An allocation given back on purpose: ReleaseTx; sending it
		// afterwards is refused.
		alloc(s.bufs, 5)
		n, err := from.ReleaseTx(0)
		require.NoError(t, err)
		require.Equal(t, 5, n)
		_, err = from.TxBurst(0, s.bufs, 5)
		require.ErrorIs(t, err, ErrStaleTxBuffer)
		n, err = from.ReleaseTx(0)
		require.NoError(t, err)
		require.Zero(t, n)
		noMore()
		flow(t, s, r, 2)

		// The same through TxBurstAlloc.
		_, n, err = from.TxBurstAlloc(0, s.bufs, 0, 2, 100)
		require.NoError(t, err)
		for i := 0; i < n; i++ {
			fillPacket(s.bufs.Data(i), 1, s.seq)
			s.seq++
		}
		sent, _, err = from.TxBurstAlloc(0, s.bufs, n, 0, 100)
		require.NoError(t, err)
		require.Equal(t, n, sent)
		require.Equal(t, []uint64{s.seq - 2, s.seq - 1}, r.recv(2))
		_, _, err = from.TxBurstAlloc(0, s.bufs, n, 0, 100)
		require.ErrorIs(t, err, ErrStaleTxBuffer)
		noMore()

		// CopyTx after an abandoned BufferAlloc: the allocation goes back.
		alloc(s.bufs, 3)
		data := make([]byte, 200)
		fillPacket(data[:100], 1, s.seq)
		fillPacket(data[100:], 1, s.seq+1)
		s.seq += 2
		sent, err = from.CopyTx(0, s.bufs, data, []int32{0, 100, 200})
		require.NoError(t, err)
		require.Equal(t, 2, sent)
		require.Equal(t, []uint64{s.seq - 2, s.seq - 1}, r.recv(2))
		noMore()

		// Many rejections: the queue never wedges.
		for k := 0; k < 300; k++ {
			alloc(s.bufs, 3)
			_, err = from.TxBurst(0, s.bufs, 4)
			assertArgErr(t, err, "count")
			noMore()
		}
		flow(t, s, r, 50)
		r.done()
		// What was given back reached the receiver as empty buffers,
		// dropped and counted as such, not as a bad peer.
		st := descStats(t, to, 0)
		require.Zero(t, st.RxBadDescriptors)
		require.Equal(t, uint64(4+8+5+3+900), st.RxEmpty)
	})
}

// Conn.Delete inside OnConnect or OnDisconnect (a use-after-free in
// libmemif, which keeps using the connection after the callback returns) is
// refused with ErrDeleteInCallback; the connection stays usable.
func TestDeleteInsideCallback(t *testing.T) {
	d := newDriver(t, &SocketArgs{Path: testSocketPath(t)})
	errs := make(chan error, 4)
	mev := newEvents()
	master, err := d.create(mev.wire(ConnArgs{IsMaster: true}))
	require.NoError(t, err)
	slave, err := d.create(ConnArgs{
		OnConnect:    func(c *Conn) error { errs <- c.Delete(); return nil },
		OnDisconnect: func(c *Conn) error { errs <- c.Delete(); return nil },
	})
	require.NoError(t, err)
	wait := func(what string) error {
		t.Helper()
		select {
		case err := <-errs:
			return err
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s", what)
			return nil
		}
	}
	require.ErrorIs(t, wait("OnConnect"), ErrDeleteInCallback)
	waitConn(t, mev.connected, "master OnConnect", 20*time.Second)
	s, r := newSender(t, master), newReceiver(t, slave)
	flow(t, s, r, 2)
	require.NoError(t, d.deleteConn(master))
	require.ErrorIs(t, wait("OnDisconnect"), ErrDeleteInCallback)
	require.NoError(t, d.deleteConn(slave))
}

// After the link goes down, views of batches filled on it are nil and View
// says why; the binding never hands out a view into unmapped memory.
func TestViewsAfterDisconnect(t *testing.T) {
	p := hostilePair(t)
	s := newSender(t, p.master)
	s.send(100, 200)
	rx := newBufs(t, 8)
	n, _, err := p.slave.RxBurst(0, rx, 8)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	v, err := rx.View(1)
	require.NoError(t, err)
	_, seq, err := checkPacket(v)
	require.NoError(t, err)
	require.Equal(t, uint64(1), seq)
	tx := newBufs(t, 4)
	k, err := p.master.BufferAlloc(0, tx, 1, 64)
	require.NoError(t, err)
	require.Equal(t, 1, k)
	rxv, txv := rx.Batch(n), tx.Batch(k)
	require.Equal(t, v, rxv.Data(1), "a Batch gives the same views")
	require.Equal(t, 64, len(txv.Data(0)))

	require.NoError(t, p.d.deleteConn(p.master))
	waitConn(t, p.sev.disconnected, "slave OnDisconnect", 20*time.Second)
	// The event is sent from inside OnDisconnect; views die when it returns.
	waitFor(t, 20*time.Second, "views of the ended session cleared", func() bool { return rx.Data(0) == nil })
	for _, b := range []*Buffers{rx, tx} {
		assert.Nil(t, b.Data(0))
		_, err = b.View(0)
		require.ErrorIs(t, err, ErrStaleView)
	}
	assert.Equal(t, 100, rx.Len(0), "Len stays readable: it is the batch's own memory")
	// A Batch made before the end checks the session at every Data.
	assert.Nil(t, rxv.Data(1))
	assert.Nil(t, txv.Data(0))
	assert.Equal(t, 200, rxv.Size(1))
}

// A Slice of a batch freed after the Slice was made fails its bursts with
// an *ArgError and still reads mapped memory.
func TestSliceOfFreedBatch(t *testing.T) {
	p := connectPair(t, ConnArgs{}, ConnArgs{})
	b, err := NewBuffers(8)
	require.NoError(t, err)
	sl := b.Slice(2, 8)
	require.NotNil(t, sl)
	b.Free()
	_, _, err = p.slave.RxBurst(0, sl, 1)
	var ae *ArgError
	require.ErrorAs(t, err, &ae)
	_, err = p.master.BufferAlloc(0, sl, 1, 64)
	require.ErrorAs(t, err, &ae)
	assert.Zero(t, sl.Len(0), "its descriptors are still mapped")
	v := sl.Batch(1)
	assert.Zero(t, v.Len())
}

// A Batch made before any burst is empty: a burst may fill the descriptors
// afterwards, and a Batch with no session would keep reading them after
// that session's memory is unmapped (a crash, not a nil view).
func TestBatchBeforeBurst(t *testing.T) {
	p := connectPair(t, ConnArgs{}, ConnArgs{})
	rx := newBufs(t, 8)
	early := rx.Batch(8)
	assert.Zero(t, early.Len(), "no burst has filled the batch")
	s := newSender(t, p.master)
	s.send(100, 100, 100)
	n, _, err := p.slave.RxBurst(0, rx, 8)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	v := rx.Batch(n)
	require.Equal(t, n, v.Len())
	for i := range v.Len() {
		_, seq, err := checkPacket(v.Data(i))
		require.NoError(t, err)
		assert.Equal(t, uint64(i), seq)
	}
	require.NoError(t, p.slave.RefillQueue(0, n, 0))
	require.NoError(t, p.d.deleteConn(p.master))
	waitConn(t, p.sev.disconnected, "slave OnDisconnect", 20*time.Second)
	waitFor(t, 20*time.Second, "session unmapped", func() bool { return rx.meta.session.unmapped.Load() })
	for i := range 8 {
		assert.Nil(t, early.Data(i), "the early Batch after the link ended")
		assert.Nil(t, v.Data(i), "the burst's Batch after the link ended")
	}
}

// Batch never panics: indexes outside it give zero values, a nil or freed
// batch gives an empty Batch, and a Batch outlives Free of its Buffers
// (it keeps their descriptor memory).
func TestBatchMisuse(t *testing.T) {
	var nilb *Buffers
	for _, v := range []Batch{nilb.Batch(4), {}} {
		assert.Zero(t, v.Len())
		assert.Nil(t, v.Data(0))
		assert.Zero(t, v.Size(-1))
		assert.False(t, v.HasNext(0))
	}
	p, rx, n := receivedOnSlave(t, 100, 3000)
	big := rx.Batch(n + 100)
	require.Equal(t, rx.Cap(), big.Len(), "clipped to the batch")
	v := rx.Batch(n)
	require.Equal(t, n, v.Len())
	for _, i := range []int{-1, n, 1 << 20} {
		assert.Nil(t, v.Data(i))
		assert.Zero(t, v.Size(i))
		assert.False(t, v.HasNext(i))
	}
	require.NoError(t, p.slave.RefillQueue(0, n, 0))
	rx.Free()
	freed := rx.Batch(1)
	assert.Zero(t, freed.Len(), "a freed batch has no buffers")
	tail := rx.Slice(1, rx.Cap()) // nil: the batch is freed
	assert.Nil(t, tail)
	assert.Equal(t, 100, v.Size(0), "the descriptors outlive Free while a Batch holds them")
	runtime.KeepAlive(v)
}

// A Slice of a batch freed on a live link gives no views: Free kills its
// Slices, whatever the session.
func TestSliceOfFreedBatchOnLiveLink(t *testing.T) {
	p, b, n := receivedOnSlave(t, 100, 100)
	require.Equal(t, 2, n)
	sl := b.Slice(0, n)
	for i := range n {
		_, seq, err := checkPacket(sl.Data(i))
		require.NoError(t, err)
		assert.Equal(t, uint64(i), seq)
	}
	require.NoError(t, p.slave.RefillQueue(0, n, 0))
	b.Free()
	for i := range n {
		if debugViews {
			assert.Panics(t, func() { sl.Data(i) }, "a Slice of the freed batch")
		} else {
			assert.Nil(t, sl.Data(i), "a Slice of the freed batch")
		}
	}
}

// receivedOnSlave sends packets of these sizes from a fresh pair's master
// and receives them on the slave into a batch of 8 that the caller frees
// (the tests free it mid-test on purpose).
func receivedOnSlave(t *testing.T, sizes ...int) (p *pair, b *Buffers, n int) {
	t.Helper()
	p = connectPair(t, ConnArgs{}, ConnArgs{})
	newSender(t, p.master).send(sizes...)
	b, err := NewBuffers(8)
	require.NoError(t, err)
	n, _, err = p.slave.RxBurst(0, b, 8)
	require.NoError(t, err)
	return p, b, n
}
