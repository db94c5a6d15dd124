//go:build linux && cgo

package memif

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// streamSize mixes one-buffer packets with chains of up to four 2048-byte
// buffers.
func streamSize(seq uint64) int { return hdrLen + 48 + int(seq*397%7000) }

// writeStream sends count verified packets with a TxWriter, giving up
// when stop closes.
func writeStream(c *Conn, stream uint16, count int, stop <-chan struct{}) error {
	w, err := NewTxWriter(c, 0)
	if err != nil {
		return err
	}
	defer w.Close()
	w.SetTimeout(50 * time.Millisecond)
	pkt := make([]byte, MaxPacket)
	for seq := uint64(0); seq < uint64(count); {
		p := pkt[:streamSize(seq)]
		fillPacket(p, stream, seq)
		switch err := w.WritePacket(p); {
		case err == nil:
			seq++
		case errors.Is(err, ErrTimeout):
			select {
			case <-stop:
				return fmt.Errorf("writer stopped at seq %d", seq)
			default:
			}
		default:
			return err
		}
	}
	return nil
}

// readStream reads count packets with an RxReader and verifies each one
// (length, crc, stream, sequence without gaps); every third is read with
// AppendNext.
func readStream(c *Conn, stream uint16, count int, stop <-chan struct{}) error {
	r, err := NewRxReader(c, 0, 64)
	if err != nil {
		return err
	}
	defer r.Close()
	r.SetTimeout(50 * time.Millisecond)
	var copied []byte
	for next := uint64(0); next < uint64(count); {
		var p []byte
		if next%3 == 0 {
			copied, err = r.AppendNext(copied[:0])
			p = copied
		} else {
			p, err = r.Next()
		}
		if errors.Is(err, ErrTimeout) {
			select {
			case <-stop:
				return fmt.Errorf("reader stopped after %d of %d packets", next, count)
			default:
				continue
			}
		}
		if err != nil {
			return err
		}
		st, seq, err := checkPacket(p)
		if err != nil {
			return err
		}
		if st != stream || seq != next || len(p) != streamSize(seq) {
			return fmt.Errorf("got stream %d seq %d (%d bytes), want stream %d seq %d (%d bytes)", st, seq, len(p), stream, next, streamSize(next))
		}
		next++
	}
	if r.Drops() != 0 {
		return fmt.Errorf("%d drops", r.Drops())
	}
	return nil
}

func TestRxReaderTxWriterBothWays(t *testing.T) {
	p := connectPair(t, ConnArgs{}, ConnArgs{})
	const count = 5000
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	stop := make(chan struct{})
	for _, dir := range []struct {
		from, to *Conn
		stream   uint16
	}{{p.slave, p.master, 1}, {p.master, p.slave, 2}} {
		wg.Add(2)
		go func() { defer wg.Done(); errs <- writeStream(dir.from, dir.stream, count, stop) }()
		go func() { defer wg.Done(); errs <- readStream(dir.to, dir.stream, count, stop) }()
	}
	waitAll(t, &wg, stop, 60*time.Second)
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func TestRxReaderTimeoutDisconnectClose(t *testing.T) {
	p := connectPair(t, ConnArgs{}, ConnArgs{})
	r, err := NewRxReader(p.master, 0, 32)
	require.NoError(t, err)
	w, err := NewTxWriter(p.slave, 0)
	require.NoError(t, err)

	r.SetTimeout(20 * time.Millisecond)
	start := time.Now()
	_, err = r.Next()
	require.ErrorIs(t, err, ErrTimeout)
	assert.Less(t, time.Since(start), 10*time.Second, "a 20ms timeout ends the wait") // bounded, not a speed claim
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout(), "gopacket's PacketSource retries on Timeout()")

	// A reader blocked without a timeout sees the link go down at once
	// (the disconnect kicks its eventfd), not at its recheck.
	r.SetTimeout(0)
	r.SetRecheck(time.Hour)
	got := make(chan error, 1)
	go func() { _, err := r.Next(); got <- err }()
	require.NoError(t, p.d.deleteConn(p.slave))
	select {
	case err := <-got:
		assert.ErrorIs(t, err, ErrDisconnected)
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not return within 5s of the link going down")
	}
	assert.ErrorIs(t, w.WritePacket([]byte("x")), ErrDeleted)
	assert.ErrorIs(t, w.WritePacket(nil), ErrInvalArg)

	require.NoError(t, r.Close())
	require.NoError(t, w.Close())
	_, err = r.Next()
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, w.WritePacket([]byte("x")), ErrClosed)
	require.NoError(t, r.Close(), "Close twice")
}

func TestRxReaderTxWriterNoAllocs(t *testing.T) {
	p := connectPair(t, ConnArgs{}, ConnArgs{})
	r, err := NewRxReader(p.master, 0, 32)
	require.NoError(t, err)
	defer r.Close()
	w, err := NewTxWriter(p.slave, 0)
	require.NoError(t, err)
	defer w.Close()
	r.SetTimeout(5 * time.Second)
	w.SetTimeout(5 * time.Second)
	for _, size := range []int{64, 5000} { // one buffer, then a chain
		pkt := make([]byte, size)
		copied := make([]byte, 0, size)
		seq := uint64(0)
		var failed error
		allocs := testing.AllocsPerRun(200, func() {
			fillPacket(pkt, 3, seq)
			if err := w.WritePacket(pkt); err != nil {
				failed = err
				return
			}
			var got []byte
			var err error
			if seq%2 == 0 {
				got, err = r.Next()
			} else {
				copied, err = r.AppendNext(copied[:0])
				got = copied
			}
			if err != nil {
				failed = err
				return
			}
			if _, s, err := checkPacket(got); err != nil || s != seq {
				failed = fmt.Errorf("seq %d: got %d, %v", seq, s, err)
			}
			seq++
		})
		require.NoError(t, failed)
		assert.Zero(t, allocs, "%d-byte packets: WritePacket + Next or AppendNext allocate", size)
	}
}

// The pattern the package doc recommends: OnDisconnect waits until the
// reader goroutine has let go of its views. The reader must never wait for
// the control path, which OnDisconnect holds.
func TestRxReaderOnDisconnectWaitsForReader(t *testing.T) {
	d := newDriver(t, &SocketArgs{Path: testSocketPath(t)})
	var reading sync.WaitGroup
	readErr := make(chan error, 1)
	waited := make(chan bool, 1)
	up := make(chan *Conn, 2)
	master, err := d.create(ConnArgs{IsMaster: true,
		OnConnect: func(c *Conn) error {
			r, err := NewRxReader(c, 0, 32)
			if err != nil {
				return err
			}
			reading.Add(1)
			go func() {
				defer reading.Done()
				defer r.Close()
				for {
					if _, err := r.Next(); err != nil {
						readErr <- err
						return
					}
				}
			}()
			up <- c
			return nil
		},
		OnDisconnect: func(*Conn) error {
			done := make(chan struct{})
			go func() { reading.Wait(); close(done) }()
			select {
			case <-done:
				waited <- true
			case <-time.After(5 * time.Second):
				waited <- false
			}
			return nil
		}})
	require.NoError(t, err)
	slave, err := d.create(ConnArgs{OnConnect: func(c *Conn) error { up <- c; return nil }})
	require.NoError(t, err)
	waitConn(t, up, "link up", 20*time.Second)
	waitConn(t, up, "link up", 20*time.Second)
	w, err := NewTxWriter(slave, 0)
	require.NoError(t, err)
	defer w.Close()
	require.NoError(t, w.WritePacket(make([]byte, 64)))
	require.NoError(t, d.deleteConn(slave))
	select {
	case ok := <-waited:
		require.True(t, ok, "OnDisconnect waited 5s for the reader")
	case <-time.After(10 * time.Second):
		t.Fatal("no OnDisconnect within 10s")
	}
	assert.ErrorIs(t, <-readErr, ErrDisconnected)
	require.NoError(t, d.deleteConn(master))
}

// A peer may chain buffers without end: a chain longer than MaxPacket is
// dropped whole (counted), and the packet after it is read intact.
func TestRxReaderDropsOverlongChain(t *testing.T) {
	p := connectPair(t, ConnArgs{}, ConnArgs{})
	r, err := NewRxReader(p.master, 0, 16) // the chain spans several bursts
	require.NoError(t, err)
	defer r.Close()
	r.SetTimeout(5 * time.Second)
	tx := newBufs(t, 64)

	const links = 40 // 40 x 2048 bytes > MaxPacket
	n, err := p.slave.BufferAlloc(0, tx, links, 2048)
	require.NoError(t, err)
	require.Equal(t, links, n)
	for i := range n {
		tx.SetNext(i, i < n-1)
	}
	sent, err := p.slave.TxBurst(0, tx, n)
	require.NoError(t, err)
	require.Equal(t, n, sent)

	w, err := NewTxWriter(p.slave, 0)
	require.NoError(t, err)
	defer w.Close()
	for seq := range uint64(3) {
		pkt := make([]byte, streamSize(seq))
		fillPacket(pkt, 9, seq)
		require.NoError(t, w.WritePacket(pkt))
	}
	for want := range uint64(3) {
		got, err := r.Next()
		require.NoError(t, err)
		st, seq, err := checkPacket(got)
		require.NoError(t, err)
		assert.Equal(t, uint16(9), st)
		assert.Equal(t, want, seq)
	}
	assert.Equal(t, uint64(1), r.Drops())
}

// No reader's wake-up is lost: thousands of round trips between two
// RxReader/TxWriter pairs, one packet in flight, every echo verified, with
// a one-hour recheck. Each reader parks whenever it finds the ring empty
// (no spin first; with the spin a peer answering within it, as on one
// CPU, may leave nothing to park for), so a signal
// swallowed between its last look at the ring and its park would stall
// the test (bounded here) instead of costing a recheck.
func TestRxReaderNoLostWakeup(t *testing.T) {
	p := connectPair(t, ConnArgs{}, ConnArgs{})
	const count = 10000
	readers := make([]*RxReader, 2)
	for i, c := range []*Conn{p.master, p.slave} {
		r, err := NewRxReader(c, 0, 32)
		require.NoError(t, err)
		defer r.Close()
		r.SetRecheck(time.Hour)
		r.spin = 0 // park on every empty look: how fast the peer answers decides nothing
		readers[i] = r
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() { // the master echoes
		defer wg.Done()
		errs <- func() error {
			w, err := NewTxWriter(p.master, 0)
			if err != nil {
				return err
			}
			defer w.Close()
			for range count {
				pkt, err := readers[0].Next()
				if err != nil {
					return err
				}
				if err := w.WritePacket(pkt); err != nil {
					return err
				}
			}
			return nil
		}()
	}()
	go func() { // the slave sends and verifies each echo
		defer wg.Done()
		errs <- func() error {
			w, err := NewTxWriter(p.slave, 0)
			if err != nil {
				return err
			}
			defer w.Close()
			pkt := make([]byte, MaxPacket)
			for seq := range uint64(count) {
				out := pkt[:streamSize(seq)]
				fillPacket(out, 4, seq)
				if err := w.WritePacket(out); err != nil {
					return err
				}
				in, err := readers[1].Next()
				if err != nil {
					return err
				}
				st, s, err := checkPacket(in)
				if err != nil {
					return err
				}
				if st != 4 || s != seq || len(in) != len(out) {
					return fmt.Errorf("got stream %d seq %d (%d bytes), want seq %d (%d bytes)", st, s, len(in), seq, len(out))
				}
			}
			return nil
		}()
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		p.d.deleteConn(p.master) // the link going down wakes the readers
		<-done
		t.Fatal("round trips did not finish within 60s: a wake-up was lost")
	}
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Positive(t, readers[0].parks+readers[1].parks, "the readers parked between packets")
	assert.Zero(t, readers[0].Drops()+readers[1].Drops())
}
