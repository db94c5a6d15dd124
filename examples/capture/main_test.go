package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/memif-go/memif/internal/memiftest"
	"github.com/memif-go/memif/internal/pkt"
	"github.com/memif-go/memif/internal/proctest"
	"github.com/stretchr/testify/require"
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
	bin := proctest.Self(t)
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

func TestMain(m *testing.M) { proctest.Main(m) }

func startCapture(t *testing.T, args ...string) *captureProc {
	return &captureProc{proctest.StartSelf(t, args...)}
}

// waitUp waits for both ends of the link: the master's side is up before
// the slave's.
func (p *captureProc) waitUp(t *testing.T, m *peer) {
	require.NoError(t, m.WaitUp(20*time.Second), "capture: %s", p)
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

// peer is the test's end of the link: an Endpoint.
type peer struct{ *memiftest.Peer }

func newPeer(t *testing.T, path string, master bool) *peer {
	check := func(_ int, _ uint16, seq uint64, f []byte) error {
		if !bytes.Equal(f, frame(seq)) {
			return fmt.Errorf("frame %d differs from what was sent", seq)
		}
		return nil
	}
	return &peer{memiftest.NewPeer(t, path, master, 1, check)}
}

// send transmits frames 0..count-1.
func (p *peer) send(count int, deadline time.Time) error { return p.Send(0, count, frame, deadline) }

// receive waits for count frames.
func (p *peer) receive(count int, deadline time.Time) (pkt.Tracker, error) {
	return p.Receive(7, count, deadline)
}
