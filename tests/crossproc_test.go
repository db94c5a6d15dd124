package tests

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/memif-go/memif"
	"github.com/memif-go/memif/internal/exutil"
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
	s, err := memif.CreateSocket(&memif.SocketArgs{Path: path, ConnectionRequestTimer: 50 * time.Millisecond})
	if err != nil {
		return err
	}
	ev := exutil.NewEvents()
	args := memif.ConnArgs{Socket: s, IsMaster: master}
	ev.Wire(&args)
	c, err := memif.Create(&args)
	if err != nil {
		return err
	}
	exutil.Drive(s)
	for {
		if _, err := ev.WaitUp(0); err != nil {
			return err
		}
		fmt.Println("peer: up")
		if err := echo(c, master); err != nil && !errors.Is(err, memif.ErrDisconnected) {
			return err
		}
	}
}

// echo returns every frame on queue 0 until the link goes down.
func echo(c *memif.Conn, copyMode bool) error {
	rx, _ := memif.NewBuffers(64)
	tx, _ := memif.NewBuffers(64)
	defer rx.Free()
	defer tx.Free()
	frame := make([]byte, 0, 1<<16)
	for {
		n, _, err := c.RxBurst(0, rx, rx.Cap())
		if err != nil {
			return err
		}
		if n == 0 {
			runtime.Gosched()
			continue
		}
		if !copyMode {
			for done := 0; done < n; {
				view := rx.Slice(done, n)
				q, err := c.BufferEnqTx(0, view, n-done)
				if err != nil && !errors.Is(err, memif.ErrNoBufRing) {
					return err
				}
				if q > 0 {
					if _, err := c.TxBurst(0, view, q); err != nil {
						return err
					}
				}
				done += q
			}
		} else {
			// A master cannot move rx buffers to tx: copy each frame. A
			// chain may continue in the next burst: accumulate across.
			for i := 0; i < n; i++ {
				frame = append(frame, rx.Data(i)...)
				if rx.HasNext(i) {
					continue
				}
				for {
					k, err := c.BufferAlloc(0, tx, 1, uint16(len(frame)))
					if err != nil && !errors.Is(err, memif.ErrNoBufRing) {
						return err
					}
					if k == 0 {
						runtime.Gosched()
						continue
					}
					off := 0
					for j := 0; j < k; j++ {
						off += copy(tx.Data(j), frame[off:])
					}
					if _, err := c.TxBurst(0, tx, k); err != nil {
						return err
					}
					break
				}
				frame = frame[:0]
			}
		}
		if err := c.RefillQueue(0, n, 0); err != nil {
			return err
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
				waitFile(t, path, 10*time.Second, peer.alive)
			}
			e := newEndpoint(t, sargs, memif.ConnArgs{IsMaster: ourRole == "master"})
			if ourRole == "master" {
				peer = startPeer(t, peerRole, path)
			}
			e.waitUp(t, 10*time.Second)
			res := echoTraffic(t, e.conn, 0, 1, 20000, func(s uint64) int { return 60 + int(s%3000) }, false, 60*time.Second)
			require.Equal(t, uint64(20000), res.received.Load())

			// kill -9 mid-traffic: our side sees the link go down, and
			// every frame received before that was intact.
			stop := make(chan struct{})
			live := &trafficResult{}
			errs := make(chan error, 2)
			go func() { errs <- sendFrames(e.conn, 0, 2, 1<<30, func(uint64) int { return 200 }, stop, live) }()
			go func() { errs <- recvFrames(e.conn, 0, 2, 1<<30, false, stop, live) }()
			deadline := time.Now().Add(10 * time.Second)
			for live.received.Load() < 5000 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			require.GreaterOrEqual(t, live.received.Load(), uint64(5000), "traffic flowing before the kill")
			peer.kill9(t)
			select {
			case <-e.ev.Down:
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
			e.waitUp(t, 10*time.Second)
			res = echoTraffic(t, e.conn, 0, 3, 5000, func(s uint64) int { return 60 + int(s%1400) }, false, 60*time.Second)
			assert.Equal(t, uint64(5000), res.received.Load())
		})
	}
}
