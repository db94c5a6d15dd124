package tests

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testpmd is a DPDK testpmd process with the memif PMD (see shared/peers.md).
type testpmd struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser // testpmd exits (printing its stats) at EOF
	out    *output
	exited chan error
	done   bool
}

var testpmdSeq int

// startTestpmd runs testpmd with one memif port: vdev holds the PMD's
// arguments (role, id, socket, secret...), fwd the forwarding mode; each of
// more adds a port (net_memif1, ...) with those arguments.
func startTestpmd(t *testing.T, vdev, fwd string, more ...string) *testpmd {
	t.Helper()
	bin, err := exec.LookPath("dpdk-testpmd")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("dpdk-testpmd not found: CI must install dpdk-dev and librte-net-memif23")
		}
		t.Skip("dpdk-testpmd not found: apt-get install dpdk-dev librte-net-memif23 to run the DPDK interop tests")
	}
	pmds, _ := filepath.Glob("/usr/lib/*/dpdk/pmds-*/librte_net_memif.so")
	require.NotEmpty(t, pmds, "the memif PMD (librte-net-memif23) is not installed")
	dir := filepath.Dir(pmds[0])
	testpmdSeq++
	args := []string{"-l", "0-1", "--no-huge", "-m", "1024", "--no-pci",
		fmt.Sprintf("--file-prefix=memif-go-%d-%d", os.Getpid(), testpmdSeq),
		"-d", filepath.Join(dir, "librte_net_memif.so"), "-d", filepath.Join(dir, "librte_mempool_ring.so"),
		"--vdev=net_memif0," + vdev}
	for i, v := range more {
		args = append(args, fmt.Sprintf("--vdev=net_memif%d,%s", i+1, v))
	}
	args = append(args, "--", "--total-num-mbufs=16384", "--forward-mode="+fwd, "--auto-start")
	// testpmd's stdout is a pipe here, which C buffers fully: unbuffer it so
	// readiness and statistics lines arrive as printed.
	if sb, err := exec.LookPath("stdbuf"); err == nil {
		args = append([]string{"-o0", "-e0", bin}, args...)
		bin = sb
	}
	p := &testpmd{cmd: exec.Command(bin, args...), out: &output{}, exited: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.stdin, err = p.cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if !p.done {
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("testpmd output:\n%s", p.out.String())
		}
	})
	return p
}

// alive reports an early exit.
func (p *testpmd) alive() error {
	select {
	case err := <-p.exited:
		p.done = true
		p.exited <- err
		return fmt.Errorf("exited (%v): %s", err, p.out.String())
	default:
		return nil
	}
}

// waitStarted waits until testpmd forwards.
func (p *testpmd) waitStarted(t *testing.T) {
	t.Helper()
	p.waitOutput(t, `(?m)^Press enter to exit|forwarding packets/burst`)
}

// waitOutput waits (bounded) for testpmd to print a line matching re.
func (p *testpmd) waitOutput(t *testing.T, re string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !regexp.MustCompile(re).MatchString(p.out.String()) {
		require.NoError(t, p.alive())
		if time.Now().After(deadline) {
			t.Fatalf("testpmd did not print %q within 30s:\n%s", re, p.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop ends testpmd (EOF on its stdin, as pressing enter) and returns its port counters (RX-packets,
// TX-packets of the forward statistics it prints on exit).
func (p *testpmd) stop(t *testing.T) (rx, tx uint64) {
	t.Helper()
	p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		t.Fatalf("testpmd did not exit within 20s of EOF")
	}
	p.done = true
	out := p.out.String()
	m := regexp.MustCompile(`RX-packets:\s+(\d+)\s+RX-dropped:\s+\d+\s+RX-total:\s+\d+\s+TX-packets:\s+(\d+)`).FindAllStringSubmatch(out, -1)
	if m == nil {
		m = regexp.MustCompile(`(?s)RX-packets:\s+(\d+).*?TX-packets:\s+(\d+)`).FindAllStringSubmatch(out, -1)
	}
	require.NotNil(t, m, "no forward statistics in testpmd output:\n%s", out)
	last := m[len(m)-1]
	rx, _ = strconv.ParseUint(last[1], 10, 64)
	tx, _ = strconv.ParseUint(last[2], 10, 64)
	return rx, tx
}
