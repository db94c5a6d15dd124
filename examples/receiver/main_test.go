package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The receiver and the sender run as two processes, as users run them.

var (
	binDir     string
	buildFlags []string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "memif-go-traffic-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	args := append(append([]string{"build"}, buildFlags...), "-o", dir+"/", ".", "../sender")
	out, err := exec.Command("go", args...).CombinedOutput()
	code := 1
	if err != nil {
		fmt.Fprintf(os.Stderr, "building receiver and sender: %v\n%s", err, out)
	} else {
		binDir = dir
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

const exitTimeout = 60 * time.Second

var sockSeq atomic.Int32

func testSocket() string {
	return fmt.Sprintf("@memif-go-traffic-test-%d-%d", os.Getpid(), sockSeq.Add(1))
}

// proc is a child process whose stderr is watched line by line.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdout bytes.Buffer // read only after done
	mu     sync.Mutex
	stderr strings.Builder
	grew   chan struct{} // closed and replaced on every stderr line
	done   chan struct{}
	err    error // of Wait, set before done closes
}

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(filepath.Join(binDir, name), args...),
		grew: make(chan struct{}), done: make(chan struct{})}
	p.cmd.Stdout = &p.stdout
	pipe, err := p.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			close(p.grew)
			p.grew = make(chan struct{})
			p.mu.Unlock()
		}
		p.err = p.cmd.Wait() // after the pipe is drained, as Wait requires
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("%s stderr:\n%s%s stdout:\n%s", p.name, p.stderr.String(), p.name, p.stdout.String())
}

// waitLog waits until stderr holds s n times.
func (p *proc) waitLog(t *testing.T, s string, n int) {
	t.Helper()
	timeout := time.After(exitTimeout)
	for {
		p.mu.Lock()
		got, grew := strings.Count(p.stderr.String(), s), p.grew
		p.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-grew:
		case <-p.done:
			p.mu.Lock()
			got = strings.Count(p.stderr.String(), s)
			p.mu.Unlock()
			require.GreaterOrEqual(t, got, n, "%s exited before logging %q %d times: %v\n%s", p.name, s, n, p.err, p.output())
			return
		case <-timeout:
			require.Failf(t, "timeout", "%s did not log %q %d times within %v\n%s", p.name, s, n, exitTimeout, p.output())
		}
	}
}

// wait waits for the process to exit and returns its stdout.
func (p *proc) wait(t *testing.T) string {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(exitTimeout):
		require.Failf(t, "timeout", "%s still running after %v\n%s", p.name, exitTimeout, p.output())
	}
	return p.stdout.String()
}

// waitOK waits for a zero exit status and returns stdout.
func (p *proc) waitOK(t *testing.T) string {
	t.Helper()
	out := p.wait(t)
	require.NoError(t, p.err, "%s", p.output())
	return out
}

var (
	recvSummary = regexp.MustCompile(`(?m)^received (\d+) lost (\d+) reordered (\d+) corrupt (\d+) mpps ([0-9.]+) gbps ([0-9.]+)$`)
	sendSummary = regexp.MustCompile(`(?m)^sent (\d+) bytes (\d+) seconds ([0-9.]+) mpps ([0-9.]+) gbps ([0-9.]+) retries (\d+)$`)
)

func checkReceived(t *testing.T, out string, want int) {
	t.Helper()
	m := recvSummary.FindStringSubmatch(out)
	require.NotNil(t, m, "receiver summary missing in %q", out)
	t.Log(m[0])
	assert.Equal(t, strconv.Itoa(want), m[1], "received")
	assert.Equal(t, []string{"0", "0", "0"}, m[2:5], "lost, reordered, corrupt")
}

func checkSent(t *testing.T, out string, want, size int) (seconds float64) {
	t.Helper()
	m := sendSummary.FindStringSubmatch(out)
	require.NotNil(t, m, "sender summary missing in %q", out)
	t.Log(m[0])
	assert.Equal(t, strconv.Itoa(want), m[1], "sent")
	assert.Equal(t, strconv.Itoa(want*size), m[2], "bytes")
	seconds, err := strconv.ParseFloat(m[3], 64)
	require.NoError(t, err)
	return seconds
}

func TestTwoQueues(t *testing.T) {
	sock := testSocket()
	r := start(t, "receiver", "-socket", sock, "-c", "200000", "-queues", "2")
	r.waitLog(t, "listening on "+sock, 1)
	s := start(t, "sender", "-socket", sock, "-count", "100000", "-queues", "2", "-size", "256")
	checkSent(t, s.waitOK(t), 200000, 256)
	checkReceived(t, r.waitOK(t), 200000)
	r.waitLog(t, "2 rx queue(s)", 1)
}

// 4000-byte frames need chains of 2048-byte buffers; the rate makes the
// run last about a second.
func TestChainedPaced(t *testing.T) {
	sock := testSocket()
	r := start(t, "receiver", "-socket", sock, "-c", "20000")
	r.waitLog(t, "listening on "+sock, 1)
	s := start(t, "sender", "-socket", sock, "-size", "4000", "-rate", "20000", "-count", "20000")
	sec := checkSent(t, s.waitOK(t), 20000, 4000)
	assert.GreaterOrEqual(t, sec, 0.9, "20000 packets at 20000/s took %vs", sec)
	checkReceived(t, r.waitOK(t), 20000)
	r.waitLog(t, "2048-byte buffers", 1)
}

// The sender's connect at start fails; its connection request timer gets
// it the link once the receiver listens.
func TestReceiverStartsLate(t *testing.T) {
	sock := testSocket()
	s := start(t, "sender", "-socket", sock, "-count", "50000", "-queues", "2", "-size", "1000", "-wait", "30s")
	s.waitLog(t, "waiting for link", 1)
	r := start(t, "receiver", "-socket", sock, "-c", "100000", "-queues", "2")
	checkSent(t, s.waitOK(t), 100000, 1000)
	checkReceived(t, r.waitOK(t), 100000)
}

func TestRolesFlipped(t *testing.T) {
	sock := testSocket()
	r := start(t, "receiver", "-socket", sock, "-slave", "-c", "60000", "-queues", "3")
	r.waitLog(t, "connecting on "+sock, 1)
	s := start(t, "sender", "-socket", sock, "-master", "-count", "20000", "-queues", "3", "-size", "3000")
	checkSent(t, s.waitOK(t), 60000, 3000)
	checkReceived(t, r.waitOK(t), 60000)
}

// Without -c the receiver outlives its senders, restarts its sequence
// tracking for each, and reports on SIGTERM.
func TestReceiverOutlivesSenders(t *testing.T) {
	sock := testSocket()
	r := start(t, "receiver", "-socket", sock, "-queues", "2")
	r.waitLog(t, "listening on "+sock, 1)
	s1 := start(t, "sender", "-socket", sock, "-count", "10000")
	checkSent(t, s1.waitOK(t), 10000, 64)
	r.waitLog(t, "link down", 1)
	s2 := start(t, "sender", "-socket", sock, "-count", "10000", "-queues", "2")
	checkSent(t, s2.waitOK(t), 20000, 64)
	r.waitLog(t, "link down", 2)
	r.waitLog(t, "link up", 2)
	require.NoError(t, r.cmd.Process.Signal(syscall.SIGTERM))
	checkReceived(t, r.waitOK(t), 30000)
}

// A refused handshake leaves the receiver waiting; the sender says why it
// gave up.
func TestSecretMismatch(t *testing.T) {
	sock := testSocket()
	r := start(t, "receiver", "-socket", sock, "-secret", "right")
	r.waitLog(t, "listening on "+sock, 1)
	s := start(t, "sender", "-socket", sock, "-secret", "wrong", "-wait", "3s") // room for two -race processes to meet on a loaded host
	s.wait(t)
	require.Error(t, s.err)
	assert.Contains(t, s.output(), "Incorrect secret")
	require.NoError(t, r.cmd.Process.Signal(syscall.SIGTERM))
	checkReceived(t, r.waitOK(t), 0)
}

func TestBadFlags(t *testing.T) {
	for _, c := range []struct {
		bin  string
		args []string
		msg  string
	}{
		{"receiver", []string{"-queues", "0"}, "-queues 0 is outside"},
		{"sender", []string{"-size", "9001"}, "-size 9001 is outside"},
		{"sender", []string{"-count", "0"}, "give -count or -duration"},
	} {
		p := start(t, c.bin, c.args...)
		p.wait(t)
		require.Error(t, p.err, "%s", p.output())
		assert.Contains(t, p.output(), c.msg)
	}
}

// A sender with no peer gives up after -wait and says so.
func TestSenderWaitTimeout(t *testing.T) {
	s := start(t, "sender", "-socket", testSocket(), "-wait", "300ms")
	s.wait(t)
	require.Error(t, s.err)
	assert.Contains(t, s.output(), "no connection within 300ms")
}
