package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/memif-go/memif"
	"github.com/memif-go/memif/internal/memiftest"
	"github.com/memif-go/memif/internal/pkt"
	"github.com/memif-go/memif/internal/proctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// buildREADMEResponder builds the README's Endpoint responder in a new
// module, as a user would write it.
func buildREADMEResponder(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(readme), "<!-- endpoint-responder -->\n```go\n")
	require.True(t, ok, "README has the Endpoint responder")
	prog, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	require.Less(t, strings.Count(prog, "\n"), 40, "the responder is under 40 lines")
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(prog), 0o644))
	gomod := "module example.com/responder\n\ngo 1.24\n\nrequire github.com/memif-go/memif v0.0.0\n\nreplace github.com/memif-go/memif => " + root + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644))
	for _, args := range [][]string{{"mod", "tidy"}, {"build", "-o", "responder", "."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %v: %s", args, out)
	}
	return filepath.Join(dir, "responder")
}

// TestREADMEEndpointResponderWithTestpmd: testpmd forwards (io) between
// two memif server ports; the README responder is the slave of one, a
// verifying Endpoint of ours the slave of the other. Every frame we send
// comes back through testpmd, the responder and testpmd again, with its
// MACs swapped and its payload intact.
func TestREADMEEndpointResponderWithTestpmd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a separate module; skipped in -short")
	}
	dir := t.TempDir()
	ours, theirs := filepath.Join(dir, "ours.sock"), filepath.Join(dir, "responder.sock")
	p := startTestpmd(t, "role=server,id=0,socket="+ours+",socket-abstract=no", "io",
		"role=server,id=0,socket="+theirs+",socket-abstract=no")
	waitFile(t, theirs, 30*time.Second, p.alive)
	bin := buildREADMEResponder(t)
	resp := proctest.Start(t, bin, theirs)

	const count, size = 20000, 256
	result := make(chan error, 1)
	ep := memiftest.Run(t, memif.EndpointConfig{Socket: memif.SocketArgs{Path: ours}},
		func(ctx context.Context, q *memif.Queue) error {
			result <- verifyEchoes(ctx, q, count, size)
			<-ctx.Done()
			return nil
		})
	select {
	case err := <-result:
		require.NoError(t, err, "responder output:\n%s\ntestpmd:\n%s", resp.String(), p.out.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("no result within 90s; responder output:\n%s", resp.String())
	}
	st := ep.Stats()[0]
	assert.GreaterOrEqual(t, st.TxPackets, uint64(count), "counted with the probes")
	assert.GreaterOrEqual(t, st.RxPackets, uint64(count))
	assert.Zero(t, st.Drops)
	rx, tx := p.stop(t)
	// Each frame twice (from us, from the responder), and the probes.
	assert.GreaterOrEqual(t, rx, uint64(2*count), "testpmd's RX-packets")
	assert.GreaterOrEqual(t, tx, uint64(2*count), "testpmd's TX-packets")
	require.NoError(t, resp.Cmd.Process.Signal(os.Interrupt))
	exited, err := resp.Wait(10 * time.Second)
	require.True(t, exited, "the responder ends on SIGINT")
	assert.NoError(t, err, "responder output:\n%s", resp.String())
	assert.False(t, regexp.MustCompile(`panic|fatal`).MatchString(resp.String()), resp.String())
}

// verifyEchoes sends count frames, at most a window in flight (testpmd
// drops what a full ring cannot take), and checks every one that returns.
func verifyEchoes(ctx context.Context, q *memif.Queue, count, size int) error {
	if err := probe(ctx, q, size, 60*time.Second); err != nil {
		return err
	}
	var tr pkt.Tracker
	sent := uint64(0)
	for tr.Received < uint64(count) {
		for sent < uint64(count) && sent-tr.Received < window {
			fillFrame(q.Stage(size), 1, sent)
			sent++
		}
		if _, err := q.Flush(ctx); err != nil {
			return err
		}
		wait, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := q.Receive(wait)
		cancel()
		if err != nil {
			return fmt.Errorf("after %d of %d frames back: %w", tr.Received, count, err)
		}
		for i := range n {
			if q.Rx().HasNext(i) {
				return fmt.Errorf("a %d-byte frame came back chained", size)
			}
			st, seq, err := checkFrame(q.Rx().Data(i), true)
			if err != nil {
				return err
			}
			if st == probeStream {
				continue // a late probe
			}
			if st != 1 {
				return fmt.Errorf("frame of stream %d", st)
			}
			tr.See(seq)
		}
	}
	if tr.Lost != 0 || tr.Reordered != 0 {
		return fmt.Errorf("lost %d, reordered %d", tr.Lost, tr.Reordered)
	}
	return nil
}

const probeStream = 2

// probe sends a frame every 50ms until one comes back: testpmd drops what
// it cannot forward until the responder's link is up.
func probe(ctx context.Context, q *memif.Queue, size int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for seq := uint64(0); time.Now().Before(deadline); seq++ {
		fillFrame(q.Stage(size), probeStream, seq)
		if _, err := q.Flush(ctx); err != nil {
			return err
		}
		wait, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		n, err := q.Receive(wait)
		cancel()
		if err != nil && wait.Err() == nil {
			return err
		}
		for i := range n {
			if _, _, err := checkFrame(q.Rx().Data(i), true); err != nil {
				return err
			}
		}
		if n > 0 {
			return nil
		}
	}
	return fmt.Errorf("no probe came back within %v", timeout)
}
