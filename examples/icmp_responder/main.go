// Command icmp_responder answers ARP and ICMPv4 echo requests (ping) on a
// memif interface: the Go twin of libmemif's examples/icmp_responder. It is
// a slave by default, keeps reconnecting until SIGINT/SIGTERM, and then
// prints its counters. Run it with -h for how to ping it from VPP or DPDK.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/memif-go/memif"
	"github.com/memif-go/memif/internal/exutil"
)

const name = "icmp_responder"

const usage = `usage: icmp_responder [flags]

Answers ARP requests and ICMPv4 echo requests (ping) for -ip on a memif
interface, as libmemif's examples/icmp_responder does. Jumbo frames arrive
and leave as buffer chains. It reconnects whenever the peer goes away and
runs until SIGINT or SIGTERM, then prints its counters.

Ping it from VPP (VPP is the master on its default socket, this the slave):

  vpp# create interface memif id 0 master
  vpp# set interface state memif0/0 up
  vpp# set interface ip address memif0/0 192.168.1.1/24
  $ icmp_responder -socket /run/vpp/memif.sock -id 0 -ip 192.168.1.2
  vpp# ping 192.168.1.2
  vpp# ping 192.168.1.2 size 8000     (jumbo: crosses as a buffer chain)

  For VPP as slave: "create interface memif id 0 slave" and -master here.

Ping it from the kernel through DPDK testpmd, which forwards between a tap
and its memif server port:

  $ dpdk-testpmd --no-pci --vdev=net_memif0,role=server,id=0,socket=/run/memif.sock,socket-abstract=no \
        --vdev=net_tap0,iface=dtap0 -- -i
  testpmd> set fwd io
  testpmd> start
  $ icmp_responder -socket /run/memif.sock
  $ ip addr add 192.168.1.1/24 dev dtap0 && ip link set dtap0 up && ping 192.168.1.2

Flags:
`

type config struct {
	master  bool
	socket  string
	id      uint
	secret  string
	queues  int
	ip      netip.Addr
	mac     net.HardwareAddr
	polling bool
	burst   int
	retry   time.Duration
}

// stats are totals over all queues and link sessions. rx counts frames;
// each ends in exactly one verdict, so rx == sum(counts).
type stats struct {
	rx     atomic.Uint64
	counts [numVerdicts]atomic.Uint64
}

func (s *stats) count(v verdict, n uint64) { s.counts[v].Add(n) }

func (s *stats) print(w io.Writer) {
	var dropped uint64
	var reasons []string
	for v := dropNotForUs; v < numVerdicts; v++ {
		n := s.counts[v].Load()
		dropped += n
		reasons = append(reasons, fmt.Sprintf("%v %d", v, n))
	}
	fmt.Fprintf(w, "rx packets %d\narp replies %d\nicmp replies %d\ndropped %d (%s)\n",
		s.rx.Load(), s.counts[arpReply].Load(), s.counts[icmpReply].Load(), dropped, strings.Join(reasons, ", "))
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	var st stats
	err = run(cfg, &st)
	st.print(os.Stdout)
	if err != nil {
		exutil.Fatal(name, err)
	}
}

func parseFlags(args []string) (config, error) {
	var cfg config
	var ip, mac, mode string
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	fs.BoolVar(&cfg.master, "master", false, "be the memif master (default: slave)")
	fs.StringVar(&cfg.socket, "socket", memif.DefaultSocketPath, "socket path ('@' prefix = abstract)")
	fs.UintVar(&cfg.id, "id", 0, "memif interface id (must match the peer's)")
	fs.StringVar(&cfg.secret, "secret", "", "shared secret (must match the peer's)")
	fs.IntVar(&cfg.queues, "queues", 1, "queue pairs to ask for as slave (as master, the slave's count is taken)")
	fs.StringVar(&ip, "ip", "192.168.1.2", "IPv4 address to answer for")
	fs.StringVar(&mac, "mac", "02:fe:00:00:00:02", "MAC address of the interface")
	fs.StringVar(&mode, "mode", "interrupt", "rx mode: interrupt (on libmemif's interrupt callback) or polling (a goroutine per queue)")
	fs.IntVar(&cfg.burst, "burst", 256, "rx batch size in buffers (1..4096); a chain may span batches")
	fs.DurationVar(&cfg.retry, "retry", time.Second, "as slave, connection request period while the master is away")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.Parse(args)
	switch {
	case fs.NArg() > 0:
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case cfg.queues < 1 || cfg.queues > 255:
		return cfg, fmt.Errorf("-queues %d is outside 1..255", cfg.queues)
	case cfg.burst < 1 || cfg.burst > 4096:
		return cfg, fmt.Errorf("-burst %d is outside 1..4096", cfg.burst)
	case cfg.id > 1<<32-1:
		return cfg, fmt.Errorf("-id %d does not fit 32 bits", cfg.id)
	case cfg.retry <= 0:
		return cfg, errors.New("-retry must be positive")
	case mode != "interrupt" && mode != "polling":
		return cfg, fmt.Errorf("-mode %q is neither interrupt nor polling", mode)
	}
	cfg.polling = mode == "polling"
	var err error
	if cfg.ip, err = netip.ParseAddr(ip); err != nil || !cfg.ip.Is4() {
		return cfg, fmt.Errorf("-ip %q is not an IPv4 address", ip)
	}
	if cfg.mac, err = net.ParseMAC(mac); err != nil || len(cfg.mac) != 6 {
		return cfg, fmt.Errorf("-mac %q is not an Ethernet MAC address", mac)
	}
	return cfg, nil
}

// app owns the link sessions. Its callbacks all run on the control path
// (the driver goroutine, or main's Delete), one at a time, so sess needs no
// lock.
type app struct {
	cfg  config
	st   *stats
	errs chan error // non-fatal failures of queue goroutines, reported by main
	sess *session
}

// session is one connect..disconnect of the link: a worker per rx queue and,
// in polling mode, the goroutines driving them.
type session struct {
	workers []*worker
	wg      sync.WaitGroup
}

func run(cfg config, st *stats) error {
	sa := memif.SocketArgs{Path: cfg.socket, AppName: "memif-go-icmp-responder"}
	if !cfg.master {
		sa.ConnectionRequestTimer = cfg.retry
	}
	sock, err := memif.CreateSocket(&sa)
	if err != nil {
		return err
	}
	defer sock.Delete()
	a := &app{cfg: cfg, st: st, errs: make(chan error, 16)}
	rings := uint8(cfg.queues) // as master the slave decides (see memif.ConnArgs)
	args := memif.ConnArgs{Socket: sock, Secret: cfg.secret, IsMaster: cfg.master, InterfaceID: uint32(cfg.id),
		NumS2MRings: rings, NumM2SRings: rings, InterfaceName: "icmp_responder",
		OnConnect: a.onConnect, OnDisconnect: a.onDisconnect}
	if !cfg.polling {
		args.OnInterrupt = a.onInterrupt
	}
	conn, err := memif.Create(&args)
	if err != nil {
		return err
	}
	drv := exutil.Drive(sock)
	role, mode := "slave, connecting to", "interrupt"
	if cfg.master {
		role = "master, listening on"
	}
	if cfg.polling {
		mode = "polling"
	}
	fmt.Fprintf(os.Stderr, "%s: %s %s (id %d), answering for %s at %s, %s mode\n",
		name, role, cfg.socket, cfg.id, cfg.ip, cfg.mac, mode)

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	for stop := false; !stop; {
		select {
		case s := <-sigc:
			fmt.Fprintf(os.Stderr, "%s: %v, stopping\n", name, s)
			stop = true
		case err := <-drv.Errs:
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		case err := <-a.errs:
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		}
	}
	drv.Stop()
	return conn.Delete() // ends the session (OnDisconnect) if the link is up
}

func (a *app) report(err error) {
	select {
	case a.errs <- err:
	default:
	}
}

func (a *app) onConnect(c *memif.Conn) error {
	d, err := c.Details()
	if err != nil {
		return err
	}
	if len(d.RxQueues) == 0 || len(d.TxQueues) == 0 {
		return fmt.Errorf("peer negotiated %d rx and %d tx queues", len(d.RxQueues), len(d.TxQueues))
	}
	fmt.Fprintf(os.Stderr, "%s: link up: peer %q (%s), %d rx / %d tx queue(s), %d-byte buffers\n",
		name, d.RemoteIfName, d.RemoteInstName, len(d.RxQueues), len(d.TxQueues), d.TxQueues[0].BufferSize)
	s := &session{}
	defer func() {
		if s != nil { // failed half way: free what was made
			s.end(a.st)
		}
	}()
	for q := range d.RxQueues {
		// A peer may give fewer tx than rx queues: replies then share them.
		txq := d.TxQueues[q%len(d.TxQueues)]
		w, err := newWorker(c, uint16(q), txq.QID, int(txq.RingSize), int(txq.BufferSize), a)
		if err != nil {
			return err
		}
		s.workers = append(s.workers, w)
		if a.cfg.polling {
			if err := c.SetRxMode(memif.RxModePolling, uint16(q)); err != nil {
				return err
			}
		}
	}
	if a.cfg.polling {
		// One goroutine per tx queue, serving the rx queues that reply on it
		// (one each unless the peer gave fewer tx queues).
		for t := range min(len(d.TxQueues), len(d.RxQueues)) {
			var group []*worker
			for q := t; q < len(s.workers); q += len(d.TxQueues) {
				group = append(group, s.workers[q])
			}
			s.wg.Add(1)
			go func(s *session) {
				defer s.wg.Done()
				runtime.LockOSThread()
				if err := poll(group); err != nil {
					a.report(fmt.Errorf("queue %d: %w", t, err))
				}
			}(s)
		}
	}
	a.sess, s = s, nil
	return nil
}

func (a *app) onDisconnect(c *memif.Conn) error {
	msg := ""
	if d, err := c.Details(); err == nil && d.Error != "" {
		msg = ": " + d.Error
	}
	if a.sess != nil {
		a.sess.end(a.st)
		a.sess = nil
	}
	fmt.Fprintf(os.Stderr, "%s: link down%s (icmp replies %d so far)\n", name, msg, a.st.counts[icmpReply].Load())
	return nil
}

// onInterrupt runs on the control path when rx queue qid has packets.
func (a *app) onInterrupt(c *memif.Conn, qid uint16) error {
	if a.sess == nil || int(qid) >= len(a.sess.workers) {
		return nil
	}
	return a.sess.workers[qid].drain()
}

// end waits for the session's goroutines (the link is down, so their bursts
// fail with ErrDisconnected) and frees its batches.
func (s *session) end(st *stats) {
	s.wg.Wait()
	for _, w := range s.workers {
		w.close(st)
	}
}

// poll spins on its rx queues until the link goes down.
func poll(group []*worker) error {
	refill := make([]int, len(group))
	for {
		busy := false
		for i, w := range group {
			n, _, err := w.conn.RefillRxBurst(w.qid, refill[i], 0, w.rx, w.rx.Cap())
			if errors.Is(err, memif.ErrDisconnected) || errors.Is(err, memif.ErrDeleted) {
				return nil
			}
			if err != nil {
				return err
			}
			refill[i] = n
			if n > 0 {
				busy = true
				w.handle(n)
			}
		}
		if !busy {
			runtime.Gosched()
		}
	}
}

// maxFrame is the largest frame handled: BufferAlloc sizes are uint16.
const maxFrame = 0xffff

// worker answers the packets of one rx queue on one tx queue, for one
// session. Only one goroutine uses it at a time.
type worker struct {
	a        *app
	conn     *memif.Conn
	qid, txq uint16
	bufSize  int // negotiated buffer size: bytes per chain segment
	resp     *responder
	rx, tx   *memif.Buffers
	slices   []*memif.Buffers // slices[i] is tx from i on, made on first use

	chain    []byte // a chained frame gathered across buffers (and bursts)
	inChain  bool   // the last burst ended inside a chain
	tooLong  bool   // the chain grew beyond maxFrame: dropped when it ends
	txBufs   int    // buffers allocated in tx, not yet sent
	txFrames [2]int // replies (by verdict) in those buffers
}

func newWorker(c *memif.Conn, qid, txq uint16, ringSize, bufSize int, a *app) (*worker, error) {
	rx, err := memif.NewBuffers(a.cfg.burst)
	if err != nil {
		return nil, err
	}
	// A batch of the whole tx ring: allocating into it from index i, at most
	// ring-i slots are free, so BufferAlloc never writes past its end.
	tx, err := memif.NewBuffers(max(ringSize, 1))
	if err != nil {
		rx.Free()
		return nil, err
	}
	if bufSize == 0 {
		bufSize = 64 // unknown: the binding's own worst case for BufferAlloc
	}
	return &worker{a: a, conn: c, qid: qid, txq: txq, bufSize: bufSize,
		resp: newResponder(a.cfg.mac, a.cfg.ip), rx: rx, tx: tx,
		slices: make([]*memif.Buffers, tx.Cap()), chain: make([]byte, 0, 9216)}, nil
}

// close counts a chain the disconnect cut short and frees the batches.
func (w *worker) close(st *stats) {
	if w.inChain {
		st.rx.Add(1)
		st.count(dropLinkDown, 1)
	}
	w.rx.Free()
	w.tx.Free()
}

// drain answers everything waiting on the rx queue (interrupt mode).
func (w *worker) drain() error {
	for {
		n, more, err := w.conn.RxBurst(w.qid, w.rx, w.rx.Cap())
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		w.handle(n)
		if err := w.conn.RefillQueue(w.qid, n, 0); err != nil {
			return err
		}
		if !more {
			return nil
		}
	}
}

// handle answers the frames in rx[0:n]; a chain the burst cuts is kept for
// the next one. Views into rx are only read here, before the refill.
func (w *worker) handle(n int) {
	for i := 0; i < n; {
		end, size := w.rx.PacketEnd(i, n)
		frame := w.rx.Data(i) // one buffer: parsed in place, in shared memory
		if w.inChain || w.rx.HasNext(i) {
			if len(w.chain)+size <= maxFrame {
				w.chain, _ = w.rx.AppendPacket(w.chain, i, n)
			} else {
				w.tooLong = true
			}
			if w.inChain = w.rx.HasNext(end - 1); w.inChain {
				break // continues in the next burst
			}
			frame = w.chain
		}
		i = end
		w.answer(frame)
		w.chain, w.tooLong = w.chain[:0], false
	}
	w.flush()
}

// answer builds the reply to frame and queues it in tx.
func (w *worker) answer(frame []byte) {
	st := w.a.st
	st.rx.Add(1)
	if w.tooLong {
		st.count(dropTooBig, 1)
		return
	}
	v, reply := w.resp.reply(frame)
	if v != arpReply && v != icmpReply {
		st.count(v, 1)
		return
	}
	if len(reply) > maxFrame {
		st.count(dropTooBig, 1)
		return
	}
	if w.txBufs+(len(reply)+w.bufSize-1)/w.bufSize > w.tx.Cap() {
		w.flush()
	}
	b := w.slices[w.txBufs]
	if b == nil {
		b = w.tx.Slice(w.txBufs, w.tx.Cap())
		w.slices[w.txBufs] = b
	}
	// One packet: a chain as long as the reply needs, or nothing.
	k, err := w.conn.BufferAlloc(w.txq, b, 1, uint16(len(reply)))
	if err != nil {
		w.txDrop(err, 1)
		return
	}
	for j, off := 0, 0; j < k; j++ {
		off += copy(b.Data(j), reply[off:])
	}
	w.txBufs += k
	w.txFrames[v]++
}

// flush sends what answer queued.
func (w *worker) flush() {
	if w.txBufs == 0 {
		return
	}
	_, err := w.conn.TxBurst(w.txq, w.tx, w.txBufs)
	if err != nil {
		w.txDrop(err, uint64(w.txFrames[arpReply]+w.txFrames[icmpReply]))
	} else {
		w.a.st.count(arpReply, uint64(w.txFrames[arpReply]))
		w.a.st.count(icmpReply, uint64(w.txFrames[icmpReply]))
	}
	w.txBufs, w.txFrames = 0, [2]int{}
}

// txDrop counts n replies lost to a transmit error.
func (w *worker) txDrop(err error, n uint64) {
	switch {
	case errors.Is(err, memif.ErrNoBufRing):
		w.a.st.count(dropTxRingFull, n)
	case errors.Is(err, memif.ErrDisconnected), errors.Is(err, memif.ErrDeleted):
		w.a.st.count(dropLinkDown, n)
	default:
		w.a.st.count(dropTxError, n)
		w.a.report(err)
	}
}
