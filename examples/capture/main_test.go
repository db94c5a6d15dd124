package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/memif-go/memif"
	"github.com/memif-go/memif/internal/pkt"
	"github.com/memif-go/memif/internal/proctest"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// frame is test frame seq: 60..1513 bytes, and every 50th a 5000-byte
// chain of three 2048-byte buffers.
func frame(seq uint64) []byte {
	size := 60 + int(seq*7919%1454)
	if seq%50 == 7 {
		size = 5000
	}
	b := make([]byte, size)
	pkt.Fill(b, 7, seq)
	return b
}

// TestCaptureWritesPcap captures 500 frames from our master and reads the
// file back: every frame, byte for byte, in order.
func TestCaptureWritesPcap(t *testing.T) {
	const n = 500
	path := fmt.Sprintf("@capture-test-%d", os.Getpid())
	file := filepath.Join(t.TempDir(), "out.pcap")
	m := newPeer(t, path, true)
	p := startCapture(t, "-socket", path, "-w", file, "-c", strconv.Itoa(n))
	p.waitUp(t, m)

	require.NoError(t, m.send(n, time.Now().Add(time.Minute)), "%s", p)
	p.wait(t)
	require.Contains(t, p.Stdout.String(), fmt.Sprintf("captured %d frames", n))
	checkPcap(t, file, n)

	if _, err := exec.LookPath("tshark"); err != nil {
		t.Log("tshark not installed: skipping the tshark cross-check")
		return
	}
	out, err := exec.Command("tshark", "-r", file, "-T", "fields", "-e", "frame.len").Output()
	require.NoError(t, err)
	lens := strings.Fields(string(out))
	require.Len(t, lens, n)
	for i, l := range lens {
		require.Equal(t, strconv.Itoa(len(frame(uint64(i)))), l, "frame %d", i)
	}
}

// TestCaptureEcho sends frames through capture -echo and back, as slave
// (single-buffer frames zero-copy) and as master (copies).
func TestCaptureEcho(t *testing.T) {
	for _, role := range []string{"slave", "master"} {
		t.Run(role, func(t *testing.T) {
			const n = 2000
			path := fmt.Sprintf("@capture-echo-%s-%d", role, os.Getpid())
			file := filepath.Join(t.TempDir(), "echo.pcap")
			args := []string{"-socket", path, "-w", file, "-echo", "-tx-wait", "20s"}
			if role == "master" {
				args = append(args, "-master", "-c", strconv.Itoa(n)) // exits by itself, after the echoes drained
			}
			p := startCapture(t, args...)
			m := newPeer(t, path, role == "slave")
			p.waitUp(t, m)

			deadline := time.Now().Add(time.Minute)
			errs := make(chan error, 1)
			go func() {
				runtime.LockOSThread()
				errs <- m.send(n, deadline)
			}()
			tr, err := m.receive(n, deadline)
			require.NoError(t, err, "%s", p)
			require.NoError(t, <-errs, "%s", p)
			require.Equal(t, pkt.Tracker{Next: n, Received: n}, tr)

			if role == "slave" {
				require.NoError(t, p.Cmd.Process.Signal(syscall.SIGINT))
			}
			p.wait(t)
			zc := 0 // single-buffer frames go back zero-copy on a slave
			if role == "slave" {
				zc = n - n/50
			}
			require.Contains(t, p.Stdout.String(), fmt.Sprintf("captured %d frames, echoed %d (zero-copy %d), echo drops 0", n, n, zc))
			checkPcap(t, file, n)
		})
	}
}

// TestCaptureFlags checks that bad flags fail with a message.
func TestCaptureFlags(t *testing.T) {
	bin, err := buildOnce()
	require.NoError(t, err)
	for args, msg := range map[string]string{
		"-socket @x":             "-w is required",
		"-w x.pcap -queues 0":    "-queues 0 is outside",
		"-w x.pcap -retry 0":     "-retry must be positive",
		"-w /nonexistent/x.pcap": "no such file",
	} {
		cmd := exec.Command(bin, strings.Fields(args)...)
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		require.Error(t, err, args)
		require.Contains(t, string(out), msg, args)
	}
}

// checkPcap reads file and expects exactly frames 0..n-1.
func checkPcap(t *testing.T, file string, n int) {
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	require.NoError(t, err)
	require.Equal(t, layers.LinkTypeEthernet, r.LinkType())
	var last time.Time
	for i := range n {
		data, ci, err := r.ReadPacketData()
		require.NoError(t, err, "frame %d", i)
		require.True(t, bytes.Equal(frame(uint64(i)), data), "frame %d differs", i)
		require.Equal(t, len(data), ci.Length)
		require.False(t, ci.Timestamp.Before(last), "frame %d goes back in time", i)
		last = ci.Timestamp
	}
	_, _, err = r.ReadPacketData()
	require.ErrorIs(t, err, io.EOF, "more than %d frames", n)
}

// captureProc is a running capture.
type captureProc struct{ *proctest.Proc }

var build proctest.Builder

func buildOnce() (string, error) { return build.Build(".") }

func TestMain(m *testing.M) {
	code := m.Run()
	build.Clean()
	os.Exit(code)
}

func startCapture(t *testing.T, args ...string) *captureProc {
	bin, err := buildOnce()
	require.NoError(t, err)
	return &captureProc{proctest.Start(t, bin, args...)}
}

// waitUp waits for both ends of the link: the master's side is up before
// the slave's.
func (p *captureProc) waitUp(t *testing.T, m *peer) {
	select {
	case <-m.up:
	case <-time.After(20 * time.Second):
		t.Fatalf("no link within 20s; capture: %s", p)
	}
	require.True(t, p.Stderr.WaitFor(regexp.MustCompile(`link up`), 20*time.Second), "%s", p)
}

// wait expects the process to exit with status 0.
func (p *captureProc) wait(t *testing.T) {
	select {
	case <-p.Exited:
		require.NoError(t, p.Err, "capture: %s", p)
	case <-time.After(30 * time.Second):
		t.Fatalf("capture did not exit: %s", p)
	}
}

// peer is the test's end of the link.
type peer struct {
	conn *memif.Conn
	up   chan struct{} // a value per link-up
	// views guards shared memory: OnDisconnect waits for the goroutines
	// using it, since the regions are unmapped right after.
	views sync.RWMutex
	down  bool
}

func newPeer(t *testing.T, path string, master bool) *peer {
	sargs := &memif.SocketArgs{Path: path}
	if !master {
		sargs.ConnectionRequestTimer = 20 * time.Millisecond // until capture listens
	}
	loop, err := memif.NewLoop(&memif.LoopArgs{Socket: *sargs})
	require.NoError(t, err)
	p := &peer{up: make(chan struct{}, 8)}
	args := memif.ConnArgs{Socket: loop.Socket(), IsMaster: master, InterfaceName: "test",
		OnConnect: func(*memif.Conn) error { p.up <- struct{}{}; return nil },
		OnDisconnect: func(*memif.Conn) error {
			p.views.Lock()
			p.down = true
			p.views.Unlock()
			return nil
		}}
	p.conn, err = memif.Create(&args)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- loop.Run(ctx) }()
	t.Cleanup(func() {
		cancel() // Run deletes the interface and the socket
		require.NoError(t, <-ran)
	})
	return p
}

var errDown = errors.New("link went down")

// send transmits frames 0..count-1, one allocation per frame (chains need
// their own) and one tx burst per batch. A full ring is retried.
func (p *peer) send(count int, deadline time.Time) error {
	// A master's allocation is bounded for 64-byte segments (the slave chose
	// the lengths) unless the batch holds a ring.
	d, err := p.conn.Details()
	if err != nil {
		return err
	}
	bufs, err := memif.NewBuffers(int(d.TxQueues[0].RingSize))
	if err != nil {
		return err
	}
	defer bufs.Free()
	at := make([]*memif.Buffers, bufs.Cap())
	for i := range at {
		at[i] = bufs.Slice(i, bufs.Cap())
	}
	p.views.RLock()
	defer p.views.RUnlock()
	used, batch := 0, 0
	flush := func() error {
		if used == 0 {
			return nil
		}
		_, err := p.conn.TxBurst(0, bufs, used)
		used, batch = 0, 0
		return err
	}
	for seq := uint64(0); seq < uint64(count); {
		if p.down {
			return errDown
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sent %d of %d frames before the deadline", seq, count)
		}
		f := frame(seq)
		if bufs.Cap()-used < (len(f)+63)/64 || batch == 32 {
			if err := flush(); err != nil {
				return err
			}
		}
		n, err := p.conn.BufferAlloc(0, at[used], 1, uint16(len(f)))
		if n == 0 {
			if !errors.Is(err, memif.ErrNoBufRing) {
				return err
			}
			if err := flush(); err != nil {
				return err
			}
			p.views.RUnlock() // ring full: let the peer run
			runtime.Gosched()
			p.views.RLock()
			continue
		}
		for i, off := used, 0; i < used+n; i++ {
			off += copy(bufs.Data(i), f[off:])
		}
		used += n
		batch++
		seq++
	}
	return flush()
}

// receive takes count frames and checks each against what was sent.
func (p *peer) receive(count int, deadline time.Time) (pkt.Tracker, error) {
	var tr pkt.Tracker
	bufs, err := memif.NewBuffers(256)
	if err != nil {
		return tr, err
	}
	defer bufs.Free()
	efd, err := p.conn.QueueEventFD(0)
	if err != nil {
		return tr, err
	}
	pfd := []unix.PollFd{{Fd: int32(efd), Events: unix.POLLIN}}
	chain := make([]byte, 0, 8192)
	refill, idle := 0, 0
	for tr.Received < uint64(count) {
		if time.Now().After(deadline) {
			return tr, fmt.Errorf("received %d of %d frames before the deadline", tr.Received, count)
		}
		p.views.RLock()
		if p.down {
			p.views.RUnlock()
			return tr, errDown
		}
		n, _, err := p.conn.RefillRxBurst(0, refill, 0, bufs, bufs.Cap())
		refill = n
		if err != nil {
			p.views.RUnlock()
			return tr, err
		}
		for i := 0; i < n; i++ {
			chain = append(chain, bufs.Data(i)...)
			if bufs.HasNext(i) { // may go on in the next burst
				continue
			}
			_, seq, err := pkt.Check(chain)
			if err == nil && !bytes.Equal(chain, frame(seq)) {
				err = fmt.Errorf("frame %d differs from what was sent", seq)
			}
			if err != nil {
				p.views.RUnlock()
				return tr, err
			}
			tr.See(seq)
			chain = chain[:0]
		}
		p.views.RUnlock()
		if n > 0 {
			idle = 0
		} else if idle++; idle < 64 {
			runtime.Gosched()
		} else {
			unix.Poll(pfd, 10) // bounded: rx_burst may eat a racing interrupt
		}
	}
	// Give the last burst back: capture waits for its echoes to drain.
	p.views.RLock()
	defer p.views.RUnlock()
	if !p.down {
		p.conn.RefillQueue(0, refill, 0)
	}
	return tr, nil
}
