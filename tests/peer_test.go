// Package tests holds interop tests against real memif peers: DPDK testpmd,
// VPP, and this binding in another process.
package tests

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/memif-go/memif"
	"github.com/memif-go/memif/internal/memiftest"
	"github.com/memif-go/memif/internal/pkt"
	"github.com/memif-go/memif/internal/proctest"
	"github.com/stretchr/testify/require"
)

// Test frames: Ethernet header, then the verified pkt format.
var (
	macA      = []byte{0x02, 0, 0, 0, 0, 0x0a}
	macB      = []byte{0x02, 0, 0, 0, 0, 0x0b}
	etherType = uint16(0x88b5) // IEEE local experimental
)

const ethLen = 14

// fillFrame writes frame seq of stream: dst macB, src macA.
func fillFrame(b []byte, stream uint16, seq uint64) {
	copy(b[0:6], macB)
	copy(b[6:12], macA)
	binary.BigEndian.PutUint16(b[12:], etherType)
	pkt.Fill(b[ethLen:], stream, seq)
}

// checkFrame verifies a returned frame; swapped says the peer swapped MACs.
func checkFrame(b []byte, swapped bool) (stream uint16, seq uint64, err error) {
	if len(b) < ethLen+pkt.HeaderLen {
		return 0, 0, fmt.Errorf("short frame of %d bytes", len(b))
	}
	dst, src := macB, macA
	if swapped {
		dst, src = macA, macB
	}
	if !bytes.Equal(b[0:6], dst) || !bytes.Equal(b[6:12], src) {
		return 0, 0, fmt.Errorf("MACs %x %x, want %x %x", b[0:6], b[6:12], dst, src)
	}
	if binary.BigEndian.Uint16(b[12:]) != etherType {
		return 0, 0, errors.New("EtherType changed")
	}
	return pkt.Check(b[ethLen:])
}

// endpoint is one memif interface of ours, on a Loop, driven with the
// binding's bursts from the test's goroutines.
type endpoint struct {
	conn     *memif.Conn
	up, down chan struct{} // a value per link-up and link-down
}

func newEndpoint(t *testing.T, sargs memif.SocketArgs, cargs memif.ConnArgs) *endpoint {
	t.Helper()
	loop := memiftest.StartLoop(t, sargs)
	e := &endpoint{up: make(chan struct{}, 64), down: make(chan struct{}, 64)}
	cargs.Socket = loop.Socket()
	cargs.OnConnect = func(*memif.Conn) error { e.up <- struct{}{}; return nil }
	cargs.OnDisconnect = func(*memif.Conn) error { e.down <- struct{}{}; return nil }
	var err error
	e.conn, err = memif.Create(&cargs) // the Loop's end deletes it
	require.NoError(t, err)
	return e
}

func (e *endpoint) waitUp(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-e.up:
	case <-time.After(timeout):
		t.Fatalf("no link within %v", timeout)
	}
}

// trafficResult is what a send/receive run saw.
type trafficResult struct {
	sent, received, lost, reordered atomic.Uint64
}

// window bounds the frames in flight, so a peer that forwards (and drops
// when our rx ring is full, as testpmd does) never has cause to drop.
const window = 128

// echoTraffic sends count frames of size(seq) on queue qid and verifies every
// echo the peer sends back, until all came back or timeout.
func echoTraffic(t *testing.T, c *memif.Conn, qid, stream uint16, count int, size func(uint64) int, swapped bool, timeout time.Duration) *trafficResult {
	t.Helper()
	res := &trafficResult{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var sendErr, recvErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		sendErr = sendFrames(c, qid, stream, count, size, stop, res)
	}()
	go func() {
		defer wg.Done()
		recvErr = recvFrames(c, qid, stream, count, swapped, stop, res)
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		close(stop)
		<-done
		t.Errorf("echo traffic: %d of %d frames back within %v", res.received.Load(), count, timeout)
	}
	require.NoError(t, sendErr)
	require.NoError(t, recvErr)
	return res
}

func sendFrames(c *memif.Conn, qid, stream uint16, count int, size func(uint64) int, stop <-chan struct{}, res *trafficResult) error {
	bufs, err := memif.NewBuffers(256)
	if err != nil {
		return err
	}
	defer bufs.Free()
	frame := make([]byte, 1<<16)
	for seq := uint64(0); seq < uint64(count); {
		select {
		case <-stop:
			return nil
		default:
		}
		if seq-res.received.Load()-res.lost.Load() >= window {
			if !c.Connected() {
				return fmt.Errorf("sender: %w", memif.ErrDisconnected)
			}
			runtime.Gosched()
			continue
		}
		// One frame per allocation: frames may be chains.
		sz := size(seq)
		n, err := c.BufferAlloc(qid, bufs, 1, uint16(sz))
		if err != nil && !errors.Is(err, memif.ErrNoBufRing) {
			return err
		}
		if n == 0 {
			runtime.Gosched()
			continue
		}
		f := frame[:sz]
		fillFrame(f, stream, seq)
		off := 0
		for i := 0; i < n; i++ {
			off += copy(bufs.Data(i), f[off:])
		}
		if _, err := c.TxBurst(qid, bufs, n); err != nil {
			return err
		}
		seq++
		res.sent.Store(seq)
	}
	return nil
}

func recvFrames(c *memif.Conn, qid, stream uint16, count int, swapped bool, stop <-chan struct{}, res *trafficResult) error {
	bufs, err := memif.NewBuffers(256)
	if err != nil {
		return err
	}
	defer bufs.Free()
	var tr pkt.Tracker
	var frame []byte
	refill := 0
	for tr.Received < uint64(count) {
		select {
		case <-stop:
			return c.RefillQueue(qid, refill, 0)
		default:
		}
		n, _, err := c.RefillRxBurst(qid, refill, 0, bufs, bufs.Cap())
		if err != nil {
			return err
		}
		refill = n
		if n == 0 {
			runtime.Gosched()
			continue
		}
		for i := 0; i < n; i++ {
			frame = append(frame, bufs.Data(i)...)
			if bufs.HasNext(i) {
				continue // chain continues (maybe in the next burst)
			}
			st, seq, err := checkFrame(frame, swapped)
			if err != nil {
				return err
			}
			if st != stream {
				return fmt.Errorf("frame of stream %d on stream %d", st, stream)
			}
			frame = frame[:0]
			tr.See(seq)
		}
		res.received.Store(tr.Received)
		res.lost.Store(tr.Lost)
		res.reordered.Store(tr.Reordered)
	}
	return c.RefillQueue(qid, refill, 0)
}

// output collects a child's output for tests to read while it runs.
type output = proctest.Output

// waitFile waits for path to exist (a peer's socket), bounded.
func waitFile(t *testing.T, path string, timeout time.Duration, alive func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if err := alive(); err != nil {
			t.Fatalf("peer exited before creating %s: %v", path, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %v", path, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
