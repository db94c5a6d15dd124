//go:build linux && cgo

package memif

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sendTxBurstAlloc transmits count packets of size bytes with the pipelined
// TxBurstAlloc loop: fill the buffers of one call, send them with the next.
func sendTxBurstAlloc(c *Conn, qid, stream uint16, count, size, batch int, stop <-chan struct{}) error {
	bufs, err := NewBuffers(batch)
	if err != nil {
		return err
	}
	defer bufs.Free()
	segs := (size + 2047) / 2048
	per := batch / segs // packets per allocation that surely fit the batch
	pkt := make([]byte, size)
	seq, n := uint64(0), 0
	for {
		select {
		case <-stop:
			return fmt.Errorf("stream %d stopped at seq %d", stream, seq)
		default:
		}
		// Fill what the previous call allocated.
		for i := 0; i < n; {
			end, sz := bufs.PacketEnd(i, n)
			if sz != size {
				return fmt.Errorf("seq %d: allocated %d bytes for %d", seq, sz, size)
			}
			fillPacket(pkt, stream, seq)
			off := 0
			for j := i; j < end; j++ {
				off += copy(bufs.Data(j), pkt[off:])
			}
			seq++
			i = end
		}
		want := min(per, count-int(seq))
		sent, got, err := c.TxBurstAlloc(qid, bufs, n, want, uint16(size))
		if err != nil && !errors.Is(err, ErrNoBufRing) {
			return err
		}
		if sent != n {
			return fmt.Errorf("sent %d of %d buffers", sent, n)
		}
		n = got
		if want == 0 {
			return nil
		}
		if got == 0 {
			runtime.Gosched() // ring full until the receiver catches up
		}
	}
}

func TestFastTxBurstAllocStream(t *testing.T) {
	for _, size := range []int{64, 2048, 3000, 9000} {
		for _, dir := range []string{"m2s", "s2m"} {
			t.Run(fmt.Sprintf("%s/%d", dir, size), func(t *testing.T) {
				args := ConnArgs{BufferSize: 2048, Log2RingSize: 10}
				p := connectPair(t, args, args)
				tx, rx := p.master, p.slave
				if dir == "s2m" {
					tx, rx = rx, tx
				}
				const count = 20_000
				stop := make(chan struct{})
				var wg sync.WaitGroup
				errs := make(chan error, 2)
				wg.Add(2)
				// A master bounds allocation for 64-byte segments unless the
				// batch holds the ring: small batches while that fits.
				batch := 64
				if dir == "m2s" && size > 3000 {
					batch = 1024
				}
				go func() { defer wg.Done(); errs <- sendTxBurstAlloc(tx, 0, 3, count, size, batch, stop) }()
				go func() { defer wg.Done(); errs <- recvStream(rx, 0, 3, count, stop) }()
				waitAll(t, &wg, stop, 60*time.Second)
				close(errs)
				for err := range errs {
					assert.NoError(t, err)
				}
			})
		}
	}
}

// sendCopyTx transmits count packets of size(seq) bytes with CopyTx, up to
// burst packets a call from one flat slice.
func sendCopyTx(c *Conn, qid, stream uint16, count int, size func(uint64) int, batch, burst int, stop <-chan struct{}) error {
	bufs, err := NewBuffers(batch)
	if err != nil {
		return err
	}
	defer bufs.Free()
	data := make([]byte, burst*65536)
	offs := make([]int32, burst+1)
	for seq := uint64(0); seq < uint64(count); {
		k := min(burst, count-int(seq))
		for i := 0; i < k; i++ {
			sz := size(seq + uint64(i))
			offs[i+1] = offs[i] + int32(sz)
			fillPacket(data[offs[i]:offs[i+1]], stream, seq+uint64(i))
		}
		for done := 0; done < k; {
			select {
			case <-stop:
				return fmt.Errorf("stream %d stopped at seq %d", stream, seq+uint64(done))
			default:
			}
			n, err := c.CopyTx(qid, bufs, data, offs[done:k+1])
			if err != nil && !errors.Is(err, ErrNoBufRing) {
				return err
			}
			if n == 0 {
				runtime.Gosched()
			}
			done += n
		}
		seq += uint64(k)
	}
	return nil
}

// recvCopyRx receives count packets with CopyRx and verifies them in order,
// joining packets CopyRx split with ErrPartialChain.
func recvCopyRx(c *Conn, qid, stream uint16, count, batch, dstLen int, stop <-chan struct{}) (partials int, err error) {
	bufs, err := NewBuffers(batch)
	if err != nil {
		return 0, err
	}
	defer bufs.Free()
	dst := make([]byte, dstLen)
	offs := make([]int32, batch+1)
	var carry []byte
	for next := uint64(0); next < uint64(count); {
		select {
		case <-stop:
			return partials, fmt.Errorf("stream %d: stopped after %d of %d packets", stream, next, count)
		default:
		}
		n, _, err := c.CopyRx(qid, bufs, dst, offs)
		partial := errors.Is(err, ErrPartialChain)
		if err != nil && !partial {
			return partials, err
		}
		if n == 0 {
			runtime.Gosched()
			continue
		}
		for i := 0; i < n; i++ {
			pkt := dst[offs[i]:offs[i+1]]
			if carry != nil && i == 0 {
				pkt = append(carry, pkt...)
				carry = nil
			}
			if partial && i == n-1 {
				carry = append([]byte(nil), pkt...)
				partials++
				break
			}
			st, seq, err := checkPacket(pkt)
			if err != nil {
				return partials, err
			}
			if st != stream || seq != next {
				return partials, fmt.Errorf("queue %d: got stream %d seq %d, want stream %d seq %d", qid, st, seq, stream, next)
			}
			next++
		}
	}
	return partials, nil
}

func TestFastCopyTxCopyRxStream(t *testing.T) {
	const count = 20_000
	// 1..5 buffers a packet, sizes straddling buffer boundaries.
	size := func(seq uint64) int { return hdrLen + int(seq*997%9000) }
	for _, tc := range []struct {
		name         string
		batch, dst   int
		wantPartials bool
	}{
		{"roomy", 256, 256*2048 + 65536, false},
		{"tight", 8, 3 * 2048, true}, // dst fills mid-chain
	} {
		for _, dir := range []string{"m2s", "s2m"} {
			t.Run(tc.name+"/"+dir, func(t *testing.T) {
				args := ConnArgs{BufferSize: 2048, Log2RingSize: 10}
				p := connectPair(t, args, args)
				tx, rx := p.master, p.slave
				if dir == "s2m" {
					tx, rx = rx, tx
				}
				stop := make(chan struct{})
				var wg sync.WaitGroup
				var sendErr, recvErr error
				var partials int
				wg.Add(2)
				batch := 64 // a slave's segments are its buffer size
				if dir == "m2s" {
					batch = 1024 // the ring: no bound for the slave's segments
				}
				go func() { defer wg.Done(); sendErr = sendCopyTx(tx, 0, 5, count, size, batch, 32, stop) }()
				go func() {
					defer wg.Done()
					partials, recvErr = recvCopyRx(rx, 0, 5, count, tc.batch, tc.dst, stop)
				}()
				waitAll(t, &wg, stop, 60*time.Second)
				assert.NoError(t, sendErr)
				assert.NoError(t, recvErr)
				if tc.wantPartials {
					assert.NotZero(t, partials, "a tight dst splits chains")
				}
			})
		}
	}
}

// A chain the peer publishes in two bursts arrives as a partial packet, then
// the rest.
func TestFastCopyRxChainSplitByPeer(t *testing.T) {
	args := ConnArgs{BufferSize: 2048}
	p := connectPair(t, args, args)
	tx := newBufs(t, 1024) // the whole ring: a master's segments are the slave's choice
	rx := newBufs(t, 8)
	pkt := make([]byte, 5000)
	fillPacket(pkt, 1, 42)
	n, err := p.master.BufferAlloc(0, tx, 1, uint16(len(pkt)))
	require.NoError(t, err)
	require.Equal(t, 3, n)
	off := 0
	for i := 0; i < n; i++ {
		off += copy(tx.Data(i), pkt[off:])
	}
	sent, err := p.master.TxBurst(0, tx, 2) // first two segments only
	require.NoError(t, err)
	require.Equal(t, 2, sent)

	dst := make([]byte, 64*1024)
	offs := make([]int32, 9)
	got, more, err := p.slave.CopyRx(0, rx, dst, offs)
	require.ErrorIs(t, err, ErrPartialChain)
	assert.True(t, more)
	require.Equal(t, 1, got)
	first := append([]byte(nil), dst[offs[0]:offs[1]]...)
	assert.Equal(t, 4096, len(first))

	sent, err = p.master.TxBurst(0, tx.Slice(2, 1024), 1)
	require.NoError(t, err)
	require.Equal(t, 1, sent)
	got, more, err = p.slave.CopyRx(0, rx, dst, offs)
	require.NoError(t, err)
	assert.False(t, more)
	require.Equal(t, 1, got)
	whole := append(first, dst[offs[0]:offs[1]]...)
	st, seq, err := checkPacket(whole)
	require.NoError(t, err)
	assert.Equal(t, uint16(1), st)
	assert.Equal(t, uint64(42), seq)
}

// CopyRx refills with ConnArgs.RxHeadroom: the master then allocates
// shorter segments and chains earlier.
func TestFastCopyWithRxHeadroom(t *testing.T) {
	p := connectPair(t, ConnArgs{BufferSize: 2048}, ConnArgs{BufferSize: 2048, RxHeadroom: 128})
	tx := newBufs(t, 1024) // the whole ring: segments are the peer's choice
	rx := newBufs(t, 64)
	data := make([]byte, 4*2048)
	offs := []int32{0, 2048, 4096, 6144, 8192}
	for i := 0; i < 4; i++ {
		fillPacket(data[offs[i]:offs[i+1]], 2, uint64(i))
	}
	dst := make([]byte, 64*2048)
	roffs := make([]int32, 65)
	for round := 0; round < 600; round++ { // wraps the ring: refills take effect
		n, err := p.master.CopyTx(0, tx, data, offs)
		require.NoError(t, err)
		require.Equal(t, 4, n)
		got, _, err := p.slave.CopyRx(0, rx, dst, roffs)
		require.NoError(t, err)
		require.Equal(t, 4, got)
		for i := 0; i < got; i++ {
			_, seq, err := checkPacket(dst[roffs[i]:roffs[i+1]])
			require.NoError(t, err)
			require.Equal(t, uint64(i), seq)
		}
	}
}

func TestFastArgumentErrors(t *testing.T) {
	p := connectPair(t, ConnArgs{BufferSize: 2048}, ConnArgs{BufferSize: 2048})
	bufs := newBufs(t, 8)
	_, _, err := p.master.TxBurstAlloc(0, bufs, 9, 0, 64)
	assertArgErr(t, err, "count")
	_, _, err = p.master.TxBurstAlloc(0, bufs, 0, 9, 64)
	assertArgErr(t, err, "count")
	_, _, err = p.slave.TxBurstAlloc(0, bufs, 0, 4, 9000) // 20 segments
	assertArgErr(t, err, "count")
	_, _, err = p.master.TxBurstAlloc(0, bufs, 0, 1, 9000) // up to 141 of the slave's segments
	assertArgErr(t, err, "size")
	_, _, err = p.master.TxBurstAlloc(1, bufs, 0, 4, 64)
	assert.ErrorIs(t, err, ErrQID)
	_, _, err = p.master.TxBurstAlloc(0, nil, 0, 4, 64)
	assertArgErr(t, err, "buffers")

	_, n, err := p.master.TxBurstAlloc(0, bufs, 0, 2, 64)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	assertArgErr(t, bufs.SetLen(1, 65), "length")
	require.NoError(t, bufs.SetLen(1, 64))
	sent, _, err := p.master.TxBurstAlloc(0, bufs, 2, 0, 64)
	require.NoError(t, err)
	require.Equal(t, 2, sent)

	data := make([]byte, 100)
	_, err = p.master.CopyTx(0, bufs, data, []int32{0, 50, 50})
	assertArgErr(t, err, "offs")
	_, err = p.master.CopyTx(0, bufs, data, []int32{0, 101})
	assertArgErr(t, err, "offs")
	_, err = p.master.CopyTx(0, bufs, data, []int32{-1, 10})
	assertArgErr(t, err, "offs")
	_, err = p.master.CopyTx(0, bufs, nil, []int32{0, 10})
	assertArgErr(t, err, "data")
	_, err = p.master.CopyTx(0, bufs, data, nil)
	assertArgErr(t, err, "offs")
	_, err = p.master.CopyTx(0, bufs, make([]byte, 9000), []int32{0, 9000})
	assertArgErr(t, err, "bufs")
	n, err = p.master.CopyTx(0, bufs, data, []int32{0})
	assert.NoError(t, err)
	assert.Zero(t, n)

	_, _, err = p.slave.CopyRx(0, bufs, make([]byte, 2047), make([]int32, 9))
	assertArgErr(t, err, "dst")
	_, _, err = p.slave.CopyRx(0, bufs, make([]byte, 4096), make([]int32, 1))
	assertArgErr(t, err, "offs")
	_, _, err = p.slave.CopyRx(0, nil, make([]byte, 4096), make([]int32, 9))
	assertArgErr(t, err, "buffers")
	// Drain what the valid calls sent.
	got, _, err := p.slave.CopyRx(0, bufs, make([]byte, 8*2048), make([]int32, 9))
	require.NoError(t, err)
	assert.Equal(t, 2, got)

	require.NoError(t, p.d.deleteConn(p.master))
	waitConn(t, p.sev.disconnected, "slave OnDisconnect", 20*time.Second)
	_, _, err = p.slave.TxBurstAlloc(0, bufs, 0, 1, 64)
	assert.ErrorIs(t, err, ErrDisconnected)
	_, err = p.slave.CopyTx(0, bufs, data, []int32{0, 64})
	assert.ErrorIs(t, err, ErrDisconnected)
	_, _, err = p.slave.CopyRx(0, bufs, make([]byte, 4096), make([]int32, 9))
	assert.ErrorIs(t, err, ErrDisconnected)
}

// Every hot-path method, including the fused ones and their ring-full and
// partial-chain errors, allocates nothing.
func TestFastAllocsPerRun(t *testing.T) {
	p := connectPair(t, ConnArgs{BufferSize: 2048}, ConnArgs{BufferSize: 2048})
	tx := newBufs(t, 64)
	rx := newBufs(t, 64)
	data := make([]byte, 32*64)
	offs := make([]int32, 33)
	for i := range offs {
		offs[i] = int32(i * 64)
	}
	dst := make([]byte, 64*2048)
	roffs := make([]int32, 65)
	refill, n := 0, 0
	cases := []struct {
		name string
		fn   func()
	}{
		{"RxBurst empty", func() { p.slave.RxBurst(0, rx, 0) }},
		{"BufferAlloc+TxBurst+RefillRxBurst", func() {
			k, _ := p.master.BufferAlloc(0, tx, 32, 64)
			p.master.TxBurst(0, tx, k)
			refill, _, _ = p.slave.RefillRxBurst(0, refill, 0, rx, 64)
		}},
		{"RefillQueue", func() { p.slave.RefillQueue(0, refill, 0); refill = 0 }},
		{"TxBurstAlloc+RefillRxBurst", func() {
			_, n, _ = p.master.TxBurstAlloc(0, tx, n, 32, 64)
			refill, _, _ = p.slave.RefillRxBurst(0, refill, 0, rx, 64)
		}},
		{"flush", func() { p.master.TxBurstAlloc(0, tx, n, 0, 64); n = 0; p.slave.RefillQueue(0, refill, 0) }},
		{"CopyTx+CopyRx", func() {
			p.master.CopyTx(0, tx, data, offs)
			p.slave.CopyRx(0, rx, dst, roffs)
		}},
		{"CopyTx ring full", func() { p.master.CopyTx(0, tx, data, offs) }},
		{"TxBurstAlloc ring full", func() {
			_, k, _ := p.master.TxBurstAlloc(0, tx, 0, 32, 64)
			p.master.TxBurstAlloc(0, tx, k, 0, 64)
		}},
		{"CopyRx drain", func() { p.slave.CopyRx(0, rx, dst, roffs) }},
		{"BufferAlloc+TxBurst+RefillRxBurstWait", func() {
			k, _ := p.master.BufferAlloc(0, tx, 32, 64)
			p.master.TxBurst(0, tx, k)
			refill, _, _ = p.slave.RefillRxBurstWait(0, refill, 0, rx, 64, time.Microsecond)
		}},
		{"RefillRxBurstWait idle", func() { refill, _, _ = p.slave.RefillRxBurstWait(0, refill, 0, rx, 64, time.Microsecond) }},
		{"CopyTx+CopyRxWait", func() {
			p.master.CopyTx(0, tx, data, offs)
			p.slave.CopyRxWait(0, rx, dst, roffs, time.Microsecond)
		}},
		{"CopyRxWait idle", func() { p.slave.CopyRxWait(0, rx, dst, roffs, time.Microsecond) }},
	}
	for _, tc := range cases {
		assert.Zero(t, testing.AllocsPerRun(100, tc.fn), tc.name)
	}
	// Ring-full errors are prebuilt; so is a partial chain.
	_, err := p.master.CopyTx(0, tx, data, offs)
	for i := 0; i < 100 && err == nil; i++ {
		_, err = p.master.CopyTx(0, tx, data, offs)
	}
	assert.ErrorIs(t, err, ErrNoBufRing)
	for {
		k, _, err := p.slave.CopyRx(0, rx, dst, roffs)
		require.NoError(t, err)
		if k == 0 {
			break
		}
	}
	big, bigOffs := make([]byte, 5000), []int32{0, 5000}
	ring := newBufs(t, 1024) // a master's chains need the ring's worth
	k, err := p.master.CopyTx(0, ring, big, bigOffs)
	require.NoError(t, err)
	require.Equal(t, 1, k)
	_, _, err = p.slave.CopyRx(0, rx, dst[:4096], roffs)
	require.ErrorIs(t, err, ErrPartialChain)
	k, _, err = p.slave.CopyRx(0, rx, dst[:4096], roffs)
	require.NoError(t, err)
	require.Equal(t, 1, k)
	assert.Zero(t, testing.AllocsPerRun(50, func() {
		p.master.CopyTx(0, ring, big, bigOffs)
		p.slave.CopyRx(0, rx, dst[:4096], roffs) // partial
		p.slave.CopyRx(0, rx, dst[:4096], roffs) // the rest
	}))
}
