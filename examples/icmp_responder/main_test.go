package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/memif-go/memif"
	"github.com/memif-go/memif/internal/memiftest"
	"github.com/memif-go/memif/internal/proctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { proctest.Main(m) }

// TestEndToEnd runs the responder as a process and pings it over memif from
// this test: junk it must drop, one ARP request, then 50 pings of many sizes
// (one 8000-byte jumbo that crosses as a chain both ways) in two rounds with
// a reconnect between them. SIGINT must then end it with exit 0 and counters
// that match.
func TestEndToEnd(t *testing.T) {
	bin := proctest.Self(t)
	out, err := exec.Command(bin, "-h").CombinedOutput()
	require.NoError(t, err, "-h exits 0")
	require.Contains(t, string(out), "create interface memif id 0 master")

	for _, c := range []struct {
		name   string
		args   []string
		queues int  // queue pairs the link gets
		master bool // the responder is the master, this test the slave
	}{
		{"interrupt", nil, 1, false},
		// Bursts of 3 buffers cut every jumbo chain across bursts.
		{"polling", []string{"-mode", "polling", "-burst", "3"}, 1, false},
		{"queues2", []string{"-queues", "2", "-burst", "3"}, 2, false},
		{"master-polling-queues2", []string{"-master", "-mode", "polling"}, 2, true},
		// A slave whose rx queues are in polling mode never asks us for
		// interrupts (as gomemif): our replies must not depend on them.
		{"master-interrupt-peer-polls", []string{"-master"}, 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := fmt.Sprintf("@icmp-test-%d-%s", os.Getpid(), c.name)
			p := newPinger(t, path, !c.master, c.queues)
			if !c.master {
				p.connectAsync() // listen first: the responder connects at once
			}
			child := startChild(t, bin, append([]string{"-socket", path,
				"-ip", ourIP.String(), "-mac", ourMAC.String()}, c.args...)...)
			if c.master {
				p.connectAsync() // our request timer retries until it listens
			}
			p.waitUp()
			if c.master {
				p.pollRx()
			}

			// Junk first: replies come back in order on a queue, so once the
			// ARP reply is in, the responder has judged these three too.
			p.send(0, arpFrame(t, layers.ARPRequest, layers.EthernetBroadcast, otherIP))
			p.send(0, icmpFrame(t, ourMAC, otherIP, layers.ICMPv4TypeEchoRequest, newEcho(9, 9, 8)))
			cut := echoRequest(t, newEcho(9, 9, 8))
			cut[14+3] += 20 // IPv4 total length beyond the frame
			p.send(0, cut)
			p.send(0, arpFrame(t, layers.ARPRequest, layers.EthernetBroadcast, ourIP))
			got := p.receive(1)
			require.Equal(t, uint16(0), got[0].qid)
			checkARPReply(t, got[0].data)

			p.pingRound(0, 25, 0xbeef)
			p.disconnect() // the responder must wait for us and come back
			p.connectAsync()
			p.waitUp()
			if c.master {
				p.pollRx()
			}
			p.pingRound(25, 25, 0xcafe)

			require.NoError(t, child.cmd.Process.Signal(os.Interrupt))
			select {
			case <-child.done:
			case <-time.After(20 * time.Second):
				t.Fatal("the responder did not exit within 20s of SIGINT")
			}
			require.NoError(t, child.err, "exit status")
			assert.Equal(t, "rx packets 54\narp replies 1\nicmp replies 50\n"+
				"dropped 3 (not for us 2, malformed 1, unsupported 0, too big 0, tx ring full 0, tx error 0, link down 0)\n",
				child.stdout.String())
			assert.Equal(t, 2, strings.Count(child.stderr.String(), "link up"), "one link per round")
		})
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{{"-mode", "busy"}, {"-ip", "fe80::1"}, {"-mac", "nope"}, {"-queues", "0"}, {"-burst", "0"}, {"extra"}} {
		_, err := parseFlags(args)
		require.Error(t, err, "%v", args)
	}
	cfg, err := parseFlags([]string{"-master", "-queues", "4", "-mode", "polling", "-socket", "@x"})
	require.NoError(t, err)
	assert.True(t, cfg.link.Master && cfg.polling)
	assert.Equal(t, 4, cfg.link.Queues)
	assert.Equal(t, "@x", cfg.link.Socket)
}

// child is the responder process; t.Cleanup kills it if the test did not
// end it.
type child struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
	err            error // of Wait, once done is closed
}

func startChild(t *testing.T, bin string, args ...string) *child {
	c := &child{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	require.NoError(t, c.cmd.Start())
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			c.cmd.Process.Kill()
			<-c.done
		}
		if t.Failed() {
			t.Logf("icmp_responder stderr:\n%s\nstdout:\n%s", c.stderr.String(), c.stdout.String())
		}
	})
	return c
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pinger is this test's end of the link, driven with the binding on a
// Loop.
type pinger struct {
	t      *testing.T
	loop   *memif.Loop
	up     chan *memif.Conn
	down   chan *memif.Conn
	args   memif.ConnArgs
	conn   *memif.Conn
	queues int
	tx, rx *memif.Buffers
	chain  [][]byte // per queue: a chained reply being gathered
	segs   []int
}

// rxFrame is one received frame, its queue and how many buffers it took.
type rxFrame struct {
	qid  uint16
	data []byte
	segs int
}

func newPinger(t *testing.T, path string, master bool, queues int) *pinger {
	sa := memif.SocketArgs{Path: path, AppName: "icmp-responder-test"}
	if !master {
		sa.ConnectionRequestTimer = 50 * time.Millisecond
	}
	loop := memiftest.StartLoop(t, sa)
	p := &pinger{t: t, loop: loop, up: make(chan *memif.Conn, 8), down: make(chan *memif.Conn, 8), queues: queues,
		chain: make([][]byte, queues), segs: make([]int, queues)}
	p.args = memif.ConnArgs{Socket: loop.Socket(), IsMaster: master, NumS2MRings: uint8(queues),
		NumM2SRings: uint8(queues), InterfaceName: "pinger",
		OnConnect:    func(c *memif.Conn) error { p.up <- c; return nil },
		OnDisconnect: func(c *memif.Conn) error { p.down <- c; return nil }}
	// Batches of the whole (default 1024) ring: any allocation fits.
	var err error
	p.tx, err = memif.NewBuffers(1024)
	require.NoError(t, err)
	p.rx, err = memif.NewBuffers(1024)
	require.NoError(t, err)
	t.Cleanup(func() {
		p.tx.Free()
		p.rx.Free()
	})
	return p
}

func (p *pinger) connectAsync() {
	conn, err := memif.Create(&p.args)
	require.NoError(p.t, err)
	p.conn = conn
}

func (p *pinger) waitUp() {
	var c *memif.Conn
	select {
	case c = <-p.up:
	case <-time.After(15 * time.Second):
		p.t.Fatal("no link within 15s")
	}
	require.Same(p.t, p.conn, c)
	d, err := c.Details()
	require.NoError(p.t, err)
	require.Len(p.t, d.RxQueues, p.queues)
	require.Len(p.t, d.TxQueues, p.queues)
}

func (p *pinger) disconnect() {
	require.NoError(p.t, p.conn.Delete())
	p.conn = nil
	select { // OnDisconnect ran inside Delete
	case <-p.down:
	default:
		p.t.Fatal("Delete of a connected interface did not run OnDisconnect")
	}
	for q := range p.chain {
		require.Empty(p.t, p.chain[q], "a chain was cut by the disconnect")
	}
}

// pollRx puts our rx queues in polling mode: the responder is then never
// asked to signal us.
func (p *pinger) pollRx() {
	for q := range uint16(p.queues) {
		require.NoError(p.t, p.conn.SetRxMode(memif.RxModePolling, q))
	}
}

// send transmits one frame on queue q, chained if it needs more than one buffer.
func (p *pinger) send(q uint16, frame []byte) {
	deadline := time.Now().Add(10 * time.Second)
	n, err := p.conn.BufferAlloc(q, p.tx, 1, uint16(len(frame)))
	// A master's tx ring holds the buffers the slave gave it: none until the
	// slave's refill on connect, which may come after our OnConnect.
	for errors.Is(err, memif.ErrNoBufRing) && p.conn.IsMaster() && time.Now().Before(deadline) {
		runtime.Gosched()
		n, err = p.conn.BufferAlloc(q, p.tx, 1, uint16(len(frame)))
	}
	require.NoError(p.t, err)
	off := 0
	for i := range n {
		off += copy(p.tx.Data(i), frame[off:])
	}
	require.Equal(p.t, len(frame), off)
	if len(frame) > 2048 {
		require.Greater(p.t, n, 1, "a %d-byte frame should be a chain", len(frame))
	}
	sent, err := p.conn.TxBurst(q, p.tx, n)
	require.NoError(p.t, err)
	require.Equal(p.t, n, sent)
}

// receive returns the next n frames from all queues, in arrival order per
// queue, failing after 10s.
func (p *pinger) receive(n int) []rxFrame {
	var got []rxFrame
	pfds := make([]unix.PollFd, p.queues)
	for q := range pfds {
		fd, err := p.conn.QueueEventFD(uint16(q))
		require.NoError(p.t, err)
		pfds[q] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < n {
		idle := true
		for q := range uint16(p.queues) {
			for more := true; more; {
				var k int
				var err error
				k, more, err = p.conn.RxBurst(q, p.rx, p.rx.Cap())
				require.NoError(p.t, err)
				for i := range k {
					p.chain[q] = append(p.chain[q], p.rx.Data(i)...)
					p.segs[q]++
					if !p.rx.HasNext(i) {
						got = append(got, rxFrame{qid: q, data: p.chain[q], segs: p.segs[q]})
						p.chain[q], p.segs[q] = nil, 0
					}
				}
				if k > 0 {
					idle = false
					require.NoError(p.t, p.conn.RefillQueue(q, k, 0))
				}
			}
		}
		if idle {
			require.True(p.t, time.Now().Before(deadline), "%d of %d replies within 10s", len(got), n)
			unix.Poll(pfds, 10) // until an rx interrupt, re-checking now and then
		}
	}
	return got
}

// pingSize gives ping i its payload size: many sizes around the 2048-byte
// buffer, and one 8000-byte jumbo.
func pingSize(i int) int {
	if i == 7 {
		return 8000
	}
	sizes := []int{0, 1, 18, 56, 100, 512, 1000, 1472, 2006, 2007, 3000, 4000}
	return sizes[i%len(sizes)]
}

// pingRound sends pings first..first+count-1 round-robin over the queues and
// checks every reply, and that it came back on the queue of its request.
func (p *pinger) pingRound(first, count int, id uint16) {
	t := p.t
	want := map[uint16]echo{}
	wantQ := map[uint16]uint16{}
	for i := first; i < first+count; i++ {
		e := newEcho(id, uint16(i), pingSize(i))
		q := uint16(i % p.queues)
		p.send(q, echoRequest(t, e))
		want[e.seq], wantQ[e.seq] = e, q
	}
	for _, f := range p.receive(count) {
		pkt := gopacket.NewPacket(f.data, layers.LayerTypeEthernet, gopacket.Default)
		icmp, ok := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		require.True(t, ok, "not an ICMP reply: %v", pkt)
		e, ok := want[icmp.Seq]
		require.True(t, ok, "unexpected or duplicate reply seq %d", icmp.Seq)
		delete(want, icmp.Seq)
		checkEchoReply(t, f.data, e)
		assert.Equal(t, wantQ[e.seq], f.qid, "queue of the reply to seq %d", e.seq)
		if len(f.data) > 2048 {
			assert.Greater(t, f.segs, 1, "a %d-byte reply should come as a chain", len(f.data))
		}
	}
	require.Empty(t, want, "pings without a reply")
}
