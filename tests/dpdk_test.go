package tests

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/memif-go/memif"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDPDKServerOurSlave: testpmd is the memif server (master), we connect
// as slave; both forwarding modes, frame sizes up to 9000-byte chains.
func TestDPDKServerOurSlave(t *testing.T) {
	for _, fwd := range []string{"io", "macswap"} {
		t.Run(fwd, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "memif.sock")
			p := startTestpmd(t, "role=server,id=0,socket="+sock+",socket-abstract=no", fwd)
			waitFile(t, sock, 30*time.Second, p.alive)
			e := newEndpoint(t, memif.SocketArgs{Path: sock, ConnectionRequestTimer: 100 * time.Millisecond},
				memif.ConnArgs{InterfaceID: 0})
			e.waitUp(t, 30*time.Second) // testpmd may still be setting up its port
			p.waitStarted(t)
			echoSizesAndCount(t, e, p, fwd == "macswap")
		})
	}
}

// TestDPDKClientOurMaster: we are the master, testpmd connects as client.
func TestDPDKClientOurMaster(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "memif.sock")
	e := newEndpoint(t, memif.SocketArgs{Path: sock}, memif.ConnArgs{IsMaster: true, InterfaceID: 3})
	p := startTestpmd(t, "role=client,id=3,socket="+sock+",socket-abstract=no", "macswap")
	e.waitUp(t, 30*time.Second)
	p.waitStarted(t)
	echoSizesAndCount(t, e, p, true)
}

// echoSizesAndCount sends 64, 512 and 1500-byte frames and 9000-byte chains
// through testpmd, checks every echo, then stops testpmd and checks that
// its port counters equal ours.
func echoSizesAndCount(t *testing.T, e *endpoint, p *testpmd, swapped bool) {
	t.Helper()
	var total uint64
	for i, size := range []int{64, 512, 1500, 9000} {
		count := 5000
		if size == 9000 {
			count = 500
		}
		res := echoTraffic(t, e.conn, 0, uint16(i), count, func(uint64) int { return size }, swapped, 60*time.Second)
		assert.Equal(t, uint64(count), res.received.Load(), "size %d: every frame back", size)
		assert.Zero(t, res.lost.Load(), "size %d", size)
		assert.Zero(t, res.reordered.Load(), "size %d", size)
		total += uint64(count)
	}
	rx, tx := p.stop(t)
	assert.Equal(t, total, rx, "testpmd counted what we sent")
	assert.Equal(t, total, tx, "testpmd counted what it sent back")
}

// TestDPDKSecret: a matching secret connects, a wrong one never does.
func TestDPDKSecret(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "memif.sock")
	p := startTestpmd(t, "role=server,id=0,secret=tops3cret,socket="+sock+",socket-abstract=no", "io")
	waitFile(t, sock, 30*time.Second, p.alive)
	p.waitOutput(t, `(?m)^Port 0: `) // its interface exists: no "ID not found"

	// testpmd 22.11 can rte_panic when a refused peer hangs up while it
	// still writes (sendmsg EPIPE): retry slowly so a refusal is one event.
	wrong := newEndpoint(t, memif.SocketArgs{Path: sock, ConnectionRequestTimer: 300 * time.Millisecond},
		memif.ConnArgs{Secret: "wrong"})
	// Refused: the peer says why.
	deadline := time.Now().Add(20 * time.Second)
	var reason string
	for !strings.Contains(strings.ToLower(reason), "secret") && time.Now().Before(deadline) {
		if d, err := wrong.conn.Details(); err == nil {
			reason = d.Error
		}
		time.Sleep(5 * time.Millisecond)
	}
	require.Contains(t, strings.ToLower(reason), "secret", "testpmd refused the wrong secret")
	assert.Empty(t, wrong.up, "never connected with a wrong secret")
	require.NoError(t, wrong.conn.Delete()) // (the Loop's own Delete at cleanup then finds nothing)

	right := newEndpoint(t, memif.SocketArgs{Path: sock, ConnectionRequestTimer: 50 * time.Millisecond},
		memif.ConnArgs{Secret: "tops3cret"})
	right.waitUp(t, 30*time.Second)
	p.waitStarted(t)
	res := echoTraffic(t, right.conn, 0, 1, 1000, func(uint64) int { return 128 }, false, 30*time.Second)
	assert.Equal(t, uint64(1000), res.received.Load())
}
