//go:build linux && cgo

package memif

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// driver owns a socket's control path in one goroutine, as the package's
// threading rule asks: it blocks in PollEvent and runs other control calls
// handed to it with do (waking the poll with CancelPollEvent).
type driver struct {
	t    testing.TB
	s    *Socket
	reqs chan func()
	done chan struct{}
	mu   sync.Mutex
	errs []error // what PollEvent returned besides ErrPollCancel
}

func newDriver(t testing.TB, args *SocketArgs) *driver {
	t.Helper()
	s, err := CreateSocket(args)
	require.NoError(t, err)
	d := &driver{t: t, s: s, reqs: make(chan func(), 16), done: make(chan struct{})}
	go d.loop()
	t.Cleanup(d.close)
	return d
}

func (d *driver) loop() {
	defer close(d.done)
	for {
		// libmemif's CancelPollEvent is sticky (a shutdown signal, not a
		// wake-up), so the loop wakes on a short timeout to run requests.
		err := d.s.PollEvent(2 * time.Millisecond)
		if err != nil {
			d.mu.Lock()
			d.errs = append(d.errs, err)
			d.mu.Unlock()
		}
		for {
			select {
			case fn := <-d.reqs:
				if fn == nil {
					return
				}
				fn()
				continue
			default:
			}
			break
		}
	}
}

// do runs fn on the control goroutine and waits for it.
func (d *driver) do(fn func()) {
	ran := make(chan struct{})
	d.reqs <- func() { fn(); close(ran) }
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		d.t.Fatalf("control goroutine did not run the request within 10s")
	}
}

func (d *driver) pollErrs() []error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]error(nil), d.errs...)
}

// create makes a connection on the control goroutine.
func (d *driver) create(args ConnArgs) (*Conn, error) {
	args.Socket = d.s
	var c *Conn
	var err error
	d.do(func() { c, err = Create(&args) })
	return c, err
}

func (d *driver) deleteConn(c *Conn) error {
	var err error
	d.do(func() { err = c.Delete() })
	return err
}

func (d *driver) close() {
	select {
	case <-d.done:
		return
	default:
	}
	d.do(func() {
		for c := range d.s.conns {
			c.Delete()
		}
	})
	d.reqs <- nil
	<-d.done
	require.NoError(d.t, d.s.Delete())
}

// events counts a connection's callbacks and lets tests wait on them.
type events struct {
	connected    chan *Conn
	disconnected chan *Conn
	interrupts   chan uint16
}

func newEvents() *events {
	return &events{connected: make(chan *Conn, 64), disconnected: make(chan *Conn, 64), interrupts: make(chan uint16, 1024)}
}

// wire records a's callbacks as events, after running those a already has.
func (e *events) wire(a ConnArgs) ConnArgs {
	onUp, onDown := a.OnConnect, a.OnDisconnect
	a.OnConnect = func(c *Conn) error {
		if onUp != nil {
			if err := onUp(c); err != nil {
				return err
			}
		}
		e.connected <- c
		return nil
	}
	a.OnDisconnect = func(c *Conn) error {
		if onDown != nil {
			if err := onDown(c); err != nil {
				return err
			}
		}
		e.disconnected <- c
		return nil
	}
	return a
}

func waitConn(t testing.TB, ch chan *Conn, what string, timeout time.Duration) *Conn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(timeout):
		t.Fatalf("no %s within %v", what, timeout)
		return nil
	}
}

// waitFor polls cond with a short tick until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

var sockSeq int

// testSocketPath returns a fresh abstract socket name (nothing on disk).
func testSocketPath(t testing.TB) string {
	sockSeq++
	return fmt.Sprintf("@memif-go-test-%d-%d", os.Getpid(), sockSeq)
}

// pair is a connected master/slave pair on one socket in this process.
type pair struct {
	d             *driver
	master, slave *Conn
	mev, sev      *events
}

func connectPair(t testing.TB, margs, sargs ConnArgs) *pair {
	t.Helper()
	p := &pair{d: newDriver(t, &SocketArgs{Path: testSocketPath(t)}), mev: newEvents(), sev: newEvents()}
	margs.IsMaster = true
	sargs.IsMaster = false
	var err error
	p.master, err = p.d.create(p.mev.wire(margs))
	require.NoError(t, err)
	p.slave, err = p.d.create(p.sev.wire(sargs))
	require.NoError(t, err)
	waitConn(t, p.mev.connected, "master OnConnect", 20*time.Second)
	waitConn(t, p.sev.connected, "slave OnConnect", 20*time.Second)
	return p
}

// Packet format: seq (8) | stream (2) | payload length (2) | crc32 of payload (4) | payload.
const hdrLen = 16

func fillPacket(b []byte, stream uint16, seq uint64) {
	binary.LittleEndian.PutUint64(b[0:], seq)
	binary.LittleEndian.PutUint16(b[8:], stream)
	pl := b[hdrLen:]
	binary.LittleEndian.PutUint16(b[10:], uint16(len(pl)))
	x := uint32(seq*2654435761) ^ uint32(stream)<<24
	for i := range pl {
		x = x*1664525 + 1013904223
		pl[i] = byte(x >> 24)
	}
	binary.LittleEndian.PutUint32(b[12:], crc32.ChecksumIEEE(pl))
}

// checkPacket verifies one packet and returns its stream and sequence number.
func checkPacket(b []byte) (stream uint16, seq uint64, err error) {
	if len(b) < hdrLen {
		return 0, 0, fmt.Errorf("packet of %d bytes is shorter than the header", len(b))
	}
	seq = binary.LittleEndian.Uint64(b)
	stream = binary.LittleEndian.Uint16(b[8:])
	pl := b[hdrLen:]
	if n := int(binary.LittleEndian.Uint16(b[10:])); n != len(pl) {
		return stream, seq, fmt.Errorf("seq %d: payload is %d bytes, header says %d", seq, len(pl), n)
	}
	if got, want := crc32.ChecksumIEEE(pl), binary.LittleEndian.Uint32(b[12:]); got != want {
		return stream, seq, fmt.Errorf("seq %d: crc %08x, header says %08x", seq, got, want)
	}
	return stream, seq, nil
}

// sendStream transmits count packets of size(seq) bytes on queue qid,
// zero-copy: allocate (chained when larger than bufSize), write in place, send.
func sendStream(c *Conn, qid, stream uint16, count int, size func(uint64) int, bufSize, burst int, stop <-chan struct{}) error {
	bufs, err := NewBuffers(256)
	if err != nil {
		return err
	}
	defer bufs.Free()
	views := make([]*Buffers, bufs.Cap())
	for i := range views {
		views[i] = bufs.Slice(i, bufs.Cap())
	}
	pkt := make([]byte, 1<<16)
	for seq := uint64(0); seq < uint64(count); {
		select {
		case <-stop:
			return fmt.Errorf("stream %d stopped at seq %d", stream, seq)
		default:
		}
		n, k := 0, 0
		for ; k < burst && seq+uint64(k) < uint64(count); k++ {
			sz := size(seq + uint64(k))
			if n+(sz+bufSize-1)/bufSize > bufs.Cap() {
				break
			}
			got, err := c.BufferAlloc(qid, views[n], 1, uint16(sz))
			if err != nil && !errors.Is(err, ErrNoBufRing) {
				return err
			}
			if got == 0 {
				break // ring full until the receiver catches up
			}
			p := pkt[:sz]
			fillPacket(p, stream, seq+uint64(k))
			off := 0
			for j := n; j < n+got; j++ {
				off += copy(bufs.Data(j), p[off:])
			}
			if off != sz {
				return fmt.Errorf("seq %d: allocated %d bytes for %d", seq+uint64(k), off, sz)
			}
			n += got
		}
		if n == 0 {
			runtime.Gosched()
			continue
		}
		sent, err := c.TxBurst(qid, bufs, n)
		if err != nil {
			return err
		}
		if sent != n {
			return fmt.Errorf("sent %d of %d buffers", sent, n)
		}
		seq += uint64(k)
	}
	return nil
}

// streamOne sends count verified packets of size bytes from tx to rx on
// queue 0 and checks every one arrived intact and in order.
func streamOne(t testing.TB, tx, rx *Conn, stream uint16, count, size int) {
	t.Helper()
	runAll(t, 30*time.Second,
		func(stop <-chan struct{}) error {
			return sendStream(tx, 0, stream, count, func(uint64) int { return size }, 2048, 32, stop)
		},
		func(stop <-chan struct{}) error { return recvStream(rx, 0, stream, count, stop) })
}

// recvStream receives count packets on queue qid and verifies each: intact
// (length, crc), from stream, in sequence with no gap.
func recvStream(c *Conn, qid, stream uint16, count int, stop <-chan struct{}) error {
	return recvStreamWait(c, qid, stream, count, 0, stop)
}

// recvStreamWait is recvStream; spin > 0 receives with RefillRxBurstWait,
// waiting in C up to spin per call.
func recvStreamWait(c *Conn, qid, stream uint16, count int, spin time.Duration, stop <-chan struct{}) error {
	bufs, err := NewBuffers(256)
	if err != nil {
		return err
	}
	defer bufs.Free()
	var next uint64
	var pkt []byte
	refill := 0
	for next < uint64(count) {
		select {
		case <-stop:
			return fmt.Errorf("stream %d: stopped after %d of %d packets", stream, next, count)
		default:
		}
		var n int
		if spin > 0 {
			n, _, err = c.RefillRxBurstWait(qid, refill, 0, bufs, bufs.Cap(), spin)
		} else {
			n, _, err = c.RefillRxBurst(qid, refill, 0, bufs, bufs.Cap())
		}
		if err != nil {
			return err
		}
		refill = n
		if n == 0 {
			runtime.Gosched()
			continue
		}
		for i := 0; i < n; i++ {
			// A chain may continue in the next burst: accumulate across.
			pkt = append(pkt, bufs.Data(i)...)
			if bufs.HasNext(i) {
				continue
			}
			st, seq, err := checkPacket(pkt)
			pkt = pkt[:0]
			if err != nil {
				return err
			}
			if st != stream || seq != next {
				return fmt.Errorf("queue %d: got stream %d seq %d, want stream %d seq %d", qid, st, seq, stream, next)
			}
			next++
		}
	}
	return c.RefillQueue(qid, refill, 0)
}

// efdReadable reports whether rx queue qid's eventfd holds a signal, waiting
// up to timeout (0: a look).
func efdReadable(t testing.TB, c *Conn, qid uint16, timeout time.Duration) bool {
	t.Helper()
	fd, err := c.QueueEventFD(qid)
	require.NoError(t, err)
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, int(timeout/time.Millisecond))
		if err == unix.EINTR {
			continue
		}
		require.NoError(t, err)
		return n == 1 && pfd[0].Revents&unix.POLLIN != 0
	}
}

// within returns the next value from ch, failing the test when none comes
// within timeout (what: what was awaited).
func within[T any](t testing.TB, ch <-chan T, timeout time.Duration, what string, args ...any) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("%s: not within %v", fmt.Sprintf(what, args...), timeout)
		panic("unreachable")
	}
}

// newBufs is a batch of n descriptors, freed when the test ends.
func newBufs(t testing.TB, n int) *Buffers {
	t.Helper()
	b, err := NewBuffers(n)
	require.NoError(t, err)
	t.Cleanup(b.Free)
	return b
}
