package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// VPP interop: runs when vpp and vppctl are on PATH (FD.io's packages, as in
// the project's Docker image). MEMIF_VPP_PLUGIN_PATH names the plugin folder
// of a VPP not installed in the standard place.

type vppProc struct {
	cmd    *exec.Cmd
	cli    string
	ctl    string
	dir    string
	exited chan error
	out    *output
}

func startVPP(t *testing.T) *vppProc {
	t.Helper()
	bin, err := exec.LookPath("vpp")
	if err != nil {
		t.Skip("vpp not found: run the VPP interop tests with VPP installed, e.g. in the Docker image (README, Docker)")
	}
	ctl, err := exec.LookPath("vppctl")
	require.NoError(t, err, "vpp without vppctl")
	require.NoError(t, os.MkdirAll("/run/vpp", 0o755))
	dir := t.TempDir()
	plugins := "plugins { plugin default { disable } plugin memif_plugin.so { enable } plugin ping_plugin.so { enable } }"
	if p := os.Getenv("MEMIF_VPP_PLUGIN_PATH"); p != "" {
		plugins = "plugins { path " + p + " plugin default { disable } plugin memif_plugin.so { enable } plugin ping_plugin.so { enable } }"
	}
	conf := fmt.Sprintf(`unix { nodaemon cli-listen %[1]s/cli.sock log %[1]s/vpp.log full-coredump }
%[2]s
buffers { buffers-per-numa 16384 page-size 4k }
memory { main-heap-size 256M main-heap-page-size 4k }
statseg { socket-name %[1]s/stats.sock size 32M page-size 4k }
socksvr { socket-name %[1]s/api.sock }
api-segment { prefix memif-go-%[3]d }
`, dir, plugins, os.Getpid())
	confPath := filepath.Join(dir, "startup.conf")
	require.NoError(t, os.WriteFile(confPath, []byte(conf), 0o644))
	v := &vppProc{cmd: exec.Command(bin, "-c", confPath), cli: filepath.Join(dir, "cli.sock"), ctl: ctl, dir: dir,
		exited: make(chan error, 1), out: &output{}}
	v.cmd.Stdout, v.cmd.Stderr = v.out, v.out
	require.NoError(t, v.cmd.Start())
	go func() { v.exited <- v.cmd.Wait() }()
	t.Cleanup(func() {
		v.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-v.exited:
		case <-time.After(10 * time.Second):
			v.cmd.Process.Kill()
			<-v.exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "vpp.log"))
			t.Logf("vpp output:\n%s\nvpp.log:\n%s", v.out.String(), log)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(v.cli); err == nil {
			if out, err := exec.Command(ctl, "-s", v.cli, "show", "version").CombinedOutput(); err == nil && strings.Contains(string(out), "vpp") {
				break
			}
		}
		select {
		case err := <-v.exited:
			t.Fatalf("vpp exited at start-up (%v): %s", err, v.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("vpp CLI not ready within 60s: %s", v.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return v
}

// run runs one CLI command and returns its output.
func (v *vppProc) run(t *testing.T, cmd string) string {
	t.Helper()
	out, err := exec.Command(v.ctl, append([]string{"-s", v.cli}, strings.Fields(cmd)...)...).CombinedOutput()
	require.NoError(t, err, "vppctl %s: %s", cmd, out)
	return string(out)
}

// ping pings from VPP and returns sent and received counts.
func (v *vppProc) ping(t *testing.T, args string) (sent, received int) {
	t.Helper()
	out := v.run(t, "ping "+args)
	m := regexp.MustCompile(`Statistics: (\d+) sent, (\d+) received`).FindStringSubmatch(out)
	require.NotNil(t, m, "ping %s: %s", args, out)
	sent, _ = strconv.Atoi(m[1])
	received, _ = strconv.Atoi(m[2])
	return sent, received
}

// responder runs examples/icmp_responder as a process.
type responder struct {
	cmd    *exec.Cmd
	out    *output
	exited chan error
}

func startResponder(t *testing.T, args ...string) *responder {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "icmp_responder")
	build := exec.Command("go", "build", "-o", bin, "./icmp_responder")
	build.Dir = "../examples"                            // the examples are their own module
	build.Env = append(os.Environ(), "GOTOOLCHAIN=auto") // its go line may be above the floor
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	r := &responder{cmd: exec.Command(bin, args...), out: &output{}, exited: make(chan error, 1)}
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	require.NoError(t, r.cmd.Start())
	go func() { r.exited <- r.cmd.Wait() }()
	t.Cleanup(func() {
		r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(10 * time.Second):
			r.cmd.Process.Kill()
			<-r.exited
		}
		if t.Failed() {
			t.Logf("icmp_responder output:\n%s", r.out.String())
		}
	})
	return r
}

// waitCount waits until the responder printed pattern n times.
func (r *responder) waitCount(t *testing.T, pattern string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(r.out.String(), pattern) < n {
		select {
		case err := <-r.exited:
			t.Fatalf("icmp_responder exited (%v):\n%s", err, r.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("icmp_responder did not print %q %d times within 20s:\n%s", pattern, n, r.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pingAll pings until ARP is resolved, then requires every echo back.
func pingAll(t *testing.T, v *vppProc, ip string) {
	t.Helper()
	v.ping(t, ip+" repeat 2") // the first echo may be lost to ARP
	sent, received := v.ping(t, ip+" repeat 5")
	assert.Equal(t, 5, sent)
	assert.Equal(t, 5, received, "every echo answered")
	sent, received = v.ping(t, ip+" size 8000 repeat 2")
	assert.Equal(t, 2, sent)
	assert.Equal(t, 2, received, "jumbo echoes (chained buffers) answered")
}

func TestVPPMasterOurSlave(t *testing.T) {
	v := startVPP(t)
	sock := filepath.Join(v.dir, "memif.sock")
	v.run(t, "create memif socket id 1 filename "+sock)
	v.run(t, "create interface memif socket-id 1 id 0 master")
	v.run(t, "set interface state memif1/0 up")
	v.run(t, "set interface ip address memif1/0 192.168.1.1/24")
	r := startResponder(t, "-socket", sock, "-ip", "192.168.1.2")
	r.waitCount(t, "link up", 1)
	pingAll(t, v, "192.168.1.2")

	// VPP 26.06 keeps the memif connected across admin down/up
	// (memif_interface_admin_up_down only flips a flag): pings must work
	// again after it, with no link change on our side.
	v.run(t, "set interface state memif1/0 down")
	v.run(t, "set interface state memif1/0 up")
	pingAll(t, v, "192.168.1.2")
	assert.Equal(t, 1, strings.Count(r.out.String(), "link up"))

	// Deleting the interface disconnects us; re-creating it reconnects us
	// (our slave retries on its timer) and pings work again.
	v.run(t, "delete interface memif memif1/0")
	r.waitCount(t, "link down", 1)
	v.run(t, "create interface memif socket-id 1 id 0 master")
	v.run(t, "set interface state memif1/0 up")
	v.run(t, "set interface ip address memif1/0 192.168.1.1/24")
	r.waitCount(t, "link up", 2)
	pingAll(t, v, "192.168.1.2")
	assert.Contains(t, v.run(t, "show memif"), "connected")
}

func TestVPPSlaveOurMasterTwoQueues(t *testing.T) {
	v := startVPP(t)
	sock := filepath.Join(v.dir, "ours.sock")
	r := startResponder(t, "-master", "-queues", "2", "-socket", sock, "-ip", "192.168.2.2")
	waitFile(t, sock, 20*time.Second, func() error { return nil })
	v.run(t, "create memif socket id 2 filename "+sock)
	v.run(t, "create interface memif socket-id 2 id 0 slave rx-queues 2 tx-queues 2")
	v.run(t, "set interface state memif2/0 up")
	v.run(t, "set interface ip address memif2/0 192.168.2.1/24")
	r.waitCount(t, "link up", 1)
	assert.Contains(t, r.out.String(), "2 rx / 2 tx queue(s)")
	pingAll(t, v, "192.168.2.2")
}
