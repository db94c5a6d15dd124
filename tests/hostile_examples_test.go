package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/memif-go/memif"
	"github.com/memif-go/memif/internal/memifwire"
	"github.com/memif-go/memif/internal/proctest"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestExamplesAsMastersSurviveHostilePeers runs every example that can be
// a master as a process and attacks its socket before INIT, as any local
// process could (libmemif alone dies of the first message): each example
// must stay alive and still give a good slave its link.
func TestExamplesAsMastersSurviveHostilePeers(t *testing.T) {
	examples := []struct {
		name string
		args func(sock, dir string) []string
	}{
		{"icmp_responder", func(sock, _ string) []string { return []string{"-master", "-socket", sock} }},
		{"receiver", func(sock, _ string) []string { return []string{"-socket", sock} }},
		{"sender", func(sock, _ string) []string { return []string{"-master", "-socket", sock} }},
		{"capture", func(sock, dir string) []string {
			return []string{"-master", "-socket", sock, "-w", filepath.Join(dir, "c.pcap")}
		}},
		{"bridge", func(sock, dir string) []string {
			return []string{"-a-socket", sock, "-a-role", "master", "-b-socket", filepath.Join(dir, "b.sock"), "-b-role", "slave"}
		}},
	}
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			dir := t.TempDir()
			sock := filepath.Join(dir, "memif.sock")
			bin := filepath.Join(dir, ex.name)
			build := exec.Command("go", "build", "-o", bin, "./"+ex.name)
			build.Dir = "../examples" // the examples are their own module
			// whose go line may be newer than the binding's floor, which
			// ./build.sh floor runs these tests with.
			build.Env = append(os.Environ(), "GOTOOLCHAIN=auto")
			out, err := build.CombinedOutput()
			require.NoError(t, err, "%s", out)
			p := proctest.Start(t, bin, ex.args(sock, dir)...)
			waitListening(t, p, sock)
			attackBeforeInit(t, sock)
			require.NoError(t, p.Alive(), "the example died under attack")
			requireLink(t, sock)
			require.NoError(t, p.Alive())
		})
	}
}

// waitListening dials until the master accepts (bounded), then hangs up.
func waitListening(t *testing.T, p *proctest.Proc, sock string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: sock})
		unix.Close(fd)
		if err == nil {
			return
		}
		require.NoError(t, p.Alive(), "the example exited before listening")
		require.False(t, time.Now().After(deadline), "%s: nobody listens within 30s: %v\n%s", sock, err, p.String())
		time.Sleep(10 * time.Millisecond)
	}
}

// attackBeforeInit sends what crashes an unguarded libmemif master, each
// on a channel of its own, and checks the master closes every one.
func attackBeforeInit(t *testing.T, sock string) {
	attacks := []struct {
		name string
		msg  func() (*memifwire.Msg, []int)
	}{
		{"DISCONNECT", func() (*memifwire.Msg, []int) { return memifwire.Disconnect(), nil }},
		{"ADD_RING", func() (*memifwire.Msg, []int) {
			return memifwire.Ring(true, 0, 0, 0, 10), []int{memifwire.EventFD(t)}
		}},
		{"ADD_REGION", func() (*memifwire.Msg, []int) {
			return memifwire.Region(0, 4096), []int{memifwire.MemFD(t, 4096)}
		}},
		{"CONNECT", func() (*memifwire.Msg, []int) { return memifwire.Connect(), nil }},
		{"HELLO", func() (*memifwire.Msg, []int) { return memifwire.Hello(), nil }},
		{"unterminated INIT", func() (*memifwire.Msg, []int) { return memifwire.Init(0).Str(33, 32, "", true), nil }},
	}
	for _, a := range attacks {
		p := memifwire.Dial(t, sock)
		p.Expect(memifwire.TypeHello, 10*time.Second)
		m, fds := a.msg()
		require.NoError(t, p.Msg(m, fds...), a.name)
		p.ExpectClosed(10 * time.Second)
	}
	// Hang up with the master's HELLO unread (the kernel then reports a
	// reset ahead of the queued message), and cut a handshake short after
	// a 64 MiB region (libmemif then unmaps [0, 64 MiB)).
	reset := memifwire.Dial(t, sock)
	require.True(t, reset.Readable(10*time.Second), "no HELLO within 10s")
	require.NoError(t, reset.Msg(memifwire.Disconnect()))
	reset.Close()
	cut := memifwire.Dial(t, sock)
	cut.Expect(memifwire.TypeHello, 10*time.Second)
	require.NoError(t, cut.Msg(memifwire.Init(0)))
	cut.Expect(memifwire.TypeAck, 10*time.Second)
	require.NoError(t, cut.Msg(memifwire.Region(0, 64<<20), memifwire.MemFD(t, 64<<20)))
	cut.Expect(memifwire.TypeAck, 10*time.Second)
	cut.Close()
}

// requireLink connects a good slave (interface id 0) and waits for its link.
func requireLink(t *testing.T, sock string) {
	t.Helper()
	l, err := memif.NewLoop(&memif.LoopArgs{Socket: memif.SocketArgs{Path: sock}})
	require.NoError(t, err)
	up := make(chan struct{}, 1)
	_, err = memif.Create(&memif.ConnArgs{Socket: l.Socket(), OnConnect: func(*memif.Conn) error {
		up <- struct{}{}
		return nil
	}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- l.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-ran)
	}()
	select {
	case <-up:
	case <-time.After(20 * time.Second):
		t.Fatal("a good slave got no link within 20s after the attacks")
	}
}
