package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/memif-go/memif"
	"github.com/memif-go/memif/internal/proctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The test binary re-executes itself as a peer process: MEMIF_PEER_ROLE
// (master or slave) and MEMIF_PEER_SOCKET select it. The peer echoes every
// frame back, zero-copy where libmemif allows (a slave's BufferEnqTx).
func TestMain(m *testing.M) {
	if role := os.Getenv("MEMIF_PEER_ROLE"); role != "" {
		if err := runEchoPeer(role == "master", os.Getenv("MEMIF_PEER_SOCKET")); err != nil {
			fmt.Fprintln(os.Stderr, "peer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runEchoPeer(master bool, path string) error {
	if master {
		os.Remove(path) // a killed master left its socket file behind
	}
	ep, err := memif.NewEndpoint(memif.EndpointConfig{
		Socket:    memif.SocketArgs{Path: path},
		Conn:      memif.ConnArgs{IsMaster: master},
		Mode:      memif.WaitAdaptive,
		Reconnect: 50 * time.Millisecond,
		OnLinkUp:  func(memif.Link) { fmt.Println("peer: up") },
	}, echo)
	if err != nil {
		return err
	}
	return ep.Run(context.Background()) // until killed
}

// echo returns every frame until the link goes down: zero-copy on a slave
// (Queue.Echo), copied on a master, whose rx buffers belong to the slave.
func echo(ctx context.Context, q *memif.Queue) error {
	frame := make([]byte, 0, 1<<16)
	for {
		n, err := q.Receive(ctx)
		if err != nil {
			return nil // the link went down
		}
		if !q.Link().Master {
			for done := 0; done < n; {
				k, err := q.Echo(done, n-done)
				if err != nil {
					return err
				}
				if k == 0 {
					runtime.Gosched() // ring full
				}
				done += k
			}
			continue
		}
		rx := q.Rx()
		for i := range n { // a chain may continue in the next burst: gathered across
			if frame = append(frame, rx.Data(i)...); !rx.HasNext(i) {
				q.Append(frame)
				frame = frame[:0]
			}
		}
		if _, err := q.Flush(ctx); err != nil {
			return nil
		}
	}
}

// peerProc is the test binary running as an echo peer.
type peerProc struct{ *proctest.Proc }

func startPeer(t *testing.T, role, path string) *peerProc {
	t.Helper()
	var p *proctest.Proc
	t.Cleanup(func() { // runs after proctest's cleanup has reaped the peer
		if t.Failed() && p != nil {
			t.Logf("peer output:\n%s", p.String())
		}
	})
	p = proctest.StartWith(t, proctest.Options{Env: []string{"MEMIF_PEER_ROLE=" + role, "MEMIF_PEER_SOCKET=" + path}},
		os.Args[0], "-test.run=^$")
	return &peerProc{p}
}

func (p *peerProc) alive() error { return p.Alive() }

func (p *peerProc) kill9(t *testing.T) {
	t.Helper()
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGKILL))
	<-p.Exited
}

func TestCrossProcessKillAndRestart(t *testing.T) {
	for _, ourRole := range []string{"master", "slave"} {
		t.Run("we are "+ourRole, func(t *testing.T) {
			peerRole := map[string]string{"master": "slave", "slave": "master"}[ourRole]
			path := filepath.Join(t.TempDir(), "memif.sock")
			var sargs memif.SocketArgs
			sargs.Path = path
			var peer *peerProc
			if ourRole == "slave" {
				sargs.ConnectionRequestTimer = 50 * time.Millisecond
				peer = startPeer(t, peerRole, path) // the master must listen first
				waitFile(t, path, 30*time.Second, peer.alive)
			}
			e := newEndpoint(t, sargs, memif.ConnArgs{IsMaster: ourRole == "master"})
			if ourRole == "master" {
				peer = startPeer(t, peerRole, path)
			}
			e.waitUp(t, 30*time.Second) // a -race child starting up on a loaded host
			res := echoTraffic(t, e.conn, 0, 1, 20000, func(s uint64) int { return 60 + int(s%3000) }, false, 60*time.Second)
			require.Equal(t, uint64(20000), res.received.Load())

			// kill -9 mid-traffic: our side sees the link go down, and
			// every frame received before that was intact.
			stop := make(chan struct{})
			live := &trafficResult{}
			errs := make(chan error, 2)
			go func() { errs <- sendFrames(e.conn, 0, 2, 1<<30, func(uint64) int { return 200 }, stop, live) }()
			go func() { errs <- recvFrames(e.conn, 0, 2, 1<<30, false, stop, live) }()
			deadline := time.Now().Add(30 * time.Second)
			for live.received.Load() < 5000 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			require.GreaterOrEqual(t, live.received.Load(), uint64(5000), "traffic flowing before the kill")
			peer.kill9(t)
			select {
			case <-e.down:
			case <-time.After(10 * time.Second):
				t.Fatal("no OnDisconnect within 10s of kill -9")
			}
			for i := 0; i < 2; i++ {
				select {
				case err := <-errs:
					assert.ErrorIs(t, err, memif.ErrDisconnected, "traffic stops with ErrDisconnected, no corrupt frame")
				case <-time.After(10 * time.Second):
					close(stop)
					t.Fatal("traffic goroutines did not stop after the link went down")
				}
			}
			assert.Zero(t, live.reordered.Load())

			// A restarted peer reconnects and traffic resumes intact.
			startPeer(t, peerRole, path)
			e.waitUp(t, 30*time.Second) // a -race child starting up on a loaded host
			res = echoTraffic(t, e.conn, 0, 3, 5000, func(s uint64) int { return 60 + int(s%1400) }, false, 60*time.Second)
			assert.Equal(t, uint64(5000), res.received.Load())
		})
	}
}
