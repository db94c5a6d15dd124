package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/memif-go/memif/internal/memiftest"
	"github.com/memif-go/memif/internal/pkt"
	"github.com/memif-go/memif/internal/proctest"
	"github.com/stretchr/testify/require"
)

const frames = 20000

// frameSize spreads frames over 64..1500 bytes, with a 4000-byte frame (a
// chain of two 2048-byte buffers) now and then.
func frameSize(seq uint64) int {
	if seq%97 == 3 {
		return 4000
	}
	return 64 + int(seq*7919%1437)
}

// TestBridgeForwardsBothWays runs the bridge as slave between two masters
// of this test and checks every frame each way, then the exit counters.
func TestBridgeForwardsBothWays(t *testing.T) {
	_, a, b, br := startBetweenMasters(t, "", "100ms")

	deadline := time.Now().Add(2 * time.Minute)
	type result struct {
		name string
		recv bool
		tr   pkt.Tracker
		err  error
	}
	results := make(chan result, 4)
	var wg sync.WaitGroup
	for _, d := range []struct {
		name     string
		from, to *peer
		stream   uint16
	}{{"a->b", a, b, 1}, {"b->a", b, a, 2}} {
		wg.Add(2)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			results <- result{name: d.name + " send", err: d.from.send(0, d.stream, frames, deadline)}
		}()
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			tr, err := d.to.receive(0, d.stream, frames, deadline)
			results <- result{name: d.name + " receive", recv: true, tr: tr, err: err}
		}()
	}
	wg.Wait()
	close(results)
	for r := range results {
		require.NoError(t, r.err, "%s; bridge: %s", r.name, br)
		if r.recv {
			require.Equal(t, uint64(frames), r.tr.Received, r.name)
			require.Zero(t, r.tr.Lost, r.name)
			require.Zero(t, r.tr.Reordered, r.name)
		}
	}
	// The periodic counters catch up with what arrived.
	require.True(t, br.Stdout.WaitFor(regexp.MustCompile(fmt.Sprintf(
		`(?m)^a->b forwarded %d ring-full 0 down 0 oversize 0 \| b->a forwarded %d `, frames, frames)), 20*time.Second), "%s", br)
	require.Equal(t, []int{frames, 0, 0, 0, frames, 0, 0, 0}, br.stop(t))
}

// TestBridgeLinkFlap takes B's link down and up again: frames meanwhile
// are dropped and counted, traffic resumes after.
func TestBridgeLinkFlap(t *testing.T) {
	pathB, a, b, br := startBetweenMasters(t, "f", "20ms")
	deadline := time.Now().Add(time.Minute)
	pass := func(stream uint16, n int) {
		errs := make(chan error, 1)
		go func() { errs <- a.send(0, stream, n, deadline) }()
		tr, err := b.receive(0, stream, n, deadline)
		require.NoError(t, err, "%s", br)
		require.NoError(t, <-errs)
		require.Equal(t, pkt.Tracker{Next: uint64(n), Received: uint64(n)}, tr)
	}
	pass(3, 1000)

	require.NoError(t, b.Close())
	require.True(t, br.Stderr.WaitFor(regexp.MustCompile(`b down`), 20*time.Second), "%s", br)
	require.NoError(t, a.send(0, 4, 500, deadline))
	require.True(t, br.Stdout.WaitFor(regexp.MustCompile(`(?m)^a->b forwarded 1000 ring-full 0 down 500 `), 20*time.Second), "%s", br)

	b = newPeer(t, pathB, true, 1)
	br.waitUp(t, b)
	require.True(t, br.Stderr.WaitFor(regexp.MustCompile(`(?s)b down.*b up`), 20*time.Second), "%s", br)
	pass(5, 1000)
	require.Equal(t, []int{2000, 0, 500, 0, 0, 0, 0, 0}, br.stop(t))
}

// TestBridgeQueuesMasterRole runs the bridge with two queues, as slave on
// A and master on B: each rx queue goes out on the tx queue of its number.
func TestBridgeQueuesMasterRole(t *testing.T) {
	const n = 3000
	pathA := fmt.Sprintf("@bridge-test-qa-%d", os.Getpid())
	pathB := fmt.Sprintf("@bridge-test-qb-%d", os.Getpid())
	a := newPeer(t, pathA, true, 2)
	br := startBridge(t, "-a-socket", pathA, "-a-queues", "2", "-b-socket", pathB, "-b-role", "master",
		"-stats", "0", "-tx-wait", "20s")
	b := newPeer(t, pathB, false, 2)
	br.waitUp(t, a, b)

	deadline := time.Now().Add(time.Minute)
	errs := make(chan error, 8)
	trs := make(chan pkt.Tracker, 4)
	var wg sync.WaitGroup
	for q := range uint16(2) {
		for _, d := range []struct{ from, to *peer }{{a, b}, {b, a}} {
			stream := 10 + q
			if d.from == b {
				stream += 10
			}
			wg.Add(2)
			go func() {
				defer wg.Done()
				errs <- d.from.send(q, stream, n, deadline)
			}()
			go func() {
				defer wg.Done()
				tr, err := d.to.receive(q, stream, n, deadline)
				errs <- err
				trs <- tr
			}()
		}
	}
	wg.Wait()
	close(errs)
	close(trs)
	for err := range errs {
		require.NoError(t, err, "%s", br)
	}
	for tr := range trs {
		require.Equal(t, pkt.Tracker{Next: n, Received: n}, tr)
	}
	require.Equal(t, []int{2 * n, 0, 0, 0, 2 * n, 0, 0, 0}, br.stop(t))
}

// bridgeProc is a running bridge.
type bridgeProc struct{ *proctest.Proc }

func TestMain(m *testing.M) { proctest.Main(m) }

func startBridge(t *testing.T, args ...string) *bridgeProc {
	return &bridgeProc{proctest.StartSelf(t, args...)}
}

// startBetweenMasters starts two masters of this test, one queue each, on
// sockets "@bridge-test-<tag>a-<pid>" and ...b..., and the bridge as slave
// between them printing counters every stats; it returns once all is up.
func startBetweenMasters(t *testing.T, tag, stats string) (pathB string, a, b *peer, br *bridgeProc) {
	pathA := fmt.Sprintf("@bridge-test-%sa-%d", tag, os.Getpid())
	pathB = fmt.Sprintf("@bridge-test-%sb-%d", tag, os.Getpid())
	a = newPeer(t, pathA, true, 1)
	b = newPeer(t, pathB, true, 1)
	br = startBridge(t, "-a-socket", pathA, "-b-socket", pathB, "-stats", stats, "-tx-wait", "20s")
	br.waitUp(t, a, b)
	return pathB, a, b, br
}

// waitUp waits for the links of ms. Our masters are up before the
// bridge's slaves are: wait for its word too, or frames for a side it does
// not see up yet would be dropped.
func (p *bridgeProc) waitUp(t *testing.T, ms ...*peer) {
	for _, m := range ms {
		require.NoError(t, m.WaitUp(20*time.Second), "bridge: %s", p)
	}
	require.True(t, p.Stderr.WaitFor(regexp.MustCompile(`(?s)(a up.*b up)|(b up.*a up)`), 20*time.Second), "%s", p)
}

// stop sends SIGINT, expects exit status 0 and returns the final counters:
// a->b forwarded, ring-full, down, oversize, then b->a.
func (p *bridgeProc) stop(t *testing.T) []int {
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGINT))
	select {
	case <-p.Exited:
		require.NoError(t, p.Err, "bridge: %s", p)
	case <-time.After(20 * time.Second):
		t.Fatalf("bridge did not exit on SIGINT: %s", p)
	}
	m := regexp.MustCompile(`total: a->b forwarded (\d+) ring-full (\d+) down (\d+) oversize (\d+) \| ` +
		`b->a forwarded (\d+) ring-full (\d+) down (\d+) oversize (\d+)`).FindStringSubmatch(p.Stdout.String())
	require.NotNil(t, m, "%s", p)
	var got []int
	for _, s := range m[1:] {
		n, _ := strconv.Atoi(s)
		got = append(got, n)
	}
	return got
}

// TestBridgeFlags checks that bad flags fail with a message.
func TestBridgeFlags(t *testing.T) {
	bin := proctest.Self(t)
	for args, msg := range map[string]string{
		"-b-socket @x":                           "-a-socket is required",
		"-a-socket @x -b-socket @y -a-role boss": `-a-role "boss" is neither`,
		"-a-socket @x -b-socket @y -burst 0":     "-burst 0 is outside",
	} {
		out, err := exec.Command(bin, regexp.MustCompile(` +`).Split(args, -1)...).CombinedOutput()
		require.Error(t, err, args)
		require.Contains(t, string(out), msg, args)
	}
}

// peer is one end of the test: an Endpoint on its own socket.
type peer struct{ *memiftest.Peer }

func newPeer(t *testing.T, path string, master bool, queues int) *peer {
	// Every frame has the length its sequence number gives; streams 10 and
	// up say which queue they must arrive on.
	check := func(qid int, stream uint16, seq uint64, f []byte) error {
		if len(f) != frameSize(seq) {
			return fmt.Errorf("seq %d: %d bytes, want %d", seq, len(f), frameSize(seq))
		}
		if stream >= 10 && qid != int(stream%10) {
			return fmt.Errorf("stream %d on queue %d", stream, qid)
		}
		return nil
	}
	return &peer{memiftest.NewPeer(t, path, master, queues, check)}
}

// send transmits count frames of stream on queue q.
func (m *peer) send(q, stream uint16, count int, deadline time.Time) error {
	return m.Send(int(q), count, func(seq uint64) []byte {
		f := make([]byte, frameSize(seq))
		pkt.Fill(f, stream, seq)
		return f
	}, deadline)
}

// receive waits for count frames of stream.
func (m *peer) receive(_, stream uint16, count int, deadline time.Time) (pkt.Tracker, error) {
	return m.Receive(stream, count, deadline)
}
