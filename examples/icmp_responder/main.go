// Command icmp_responder answers ARP and ICMPv4 echo requests (ping) on a
// memif interface: the Go twin of libmemif's examples/icmp_responder. It is
// a slave by default, keeps reconnecting until SIGINT/SIGTERM, and then
// prints its counters. Run it with -h for how to ping it from VPP or DPDK.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/memif-go/memif"
	"github.com/memif-go/memif/internal/exflag"
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
	link    exflag.Link
	ip      netip.Addr
	mac     net.HardwareAddr
	polling bool
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
	exflag.Exit(name, 2, err)
	var st stats
	err = run(cfg, &st)
	st.print(os.Stdout)
	exflag.Exit(name, 1, err)
}

func parseFlags(args []string) (config, error) {
	var cfg config
	var ip, mac, mode string
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	cfg.link.Register(fs, "", exflag.Defaults{Socket: memif.DefaultSocketPath, Peer: "the peer's",
		QueuesHelp: "queue pairs to ask for as slave (as master, the slave's count is taken)",
		Burst:      256, MaxBurst: 4096, BurstHelp: "rx batch size in buffers (1..4096); a chain may span batches",
		Retry: time.Second, RetryHelp: "as slave, connection request period while the master is away"})
	fs.StringVar(&ip, "ip", "192.168.1.2", "IPv4 address to answer for")
	fs.StringVar(&mac, "mac", "02:fe:00:00:00:02", "MAC address of the interface")
	fs.StringVar(&mode, "mode", "interrupt", "rx mode: interrupt (each queue's goroutine parks until the peer signals) or polling (each queue's goroutine spins on a thread of its own)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.Parse(args)
	switch {
	case fs.NArg() > 0:
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case mode != "interrupt" && mode != "polling":
		return cfg, fmt.Errorf("-mode %q is neither interrupt nor polling", mode)
	}
	cfg.polling = mode == "polling"
	if err := cfg.link.Validate(); err != nil {
		return cfg, err
	}
	var err error
	if cfg.ip, err = netip.ParseAddr(ip); err != nil || !cfg.ip.Is4() {
		return cfg, fmt.Errorf("-ip %q is not an IPv4 address", ip)
	}
	if cfg.mac, err = net.ParseMAC(mac); err != nil || len(cfg.mac) != 6 {
		return cfg, fmt.Errorf("-mac %q is not an Ethernet MAC address", mac)
	}
	return cfg, nil
}

func run(cfg config, st *stats) error {
	mode := memif.WaitInterrupt
	if cfg.polling {
		mode = memif.WaitPoll
	}
	var ep *memif.Endpoint
	ep, err := memif.NewEndpoint(memif.EndpointConfig{
		Socket: cfg.link.SocketArgs("memif-go-icmp-responder"),
		Conn:   cfg.link.ConnArgs("icmp_responder"), // as master the slave decides the rings (see memif.ConnArgs)
		Mode:   mode, Batch: cfg.link.Burst, Reconnect: cfg.link.Retry,
		OnError: func(err error) { fmt.Fprintf(os.Stderr, "%s: %v\n", name, err) },
		OnLinkUp: func(l memif.Link) {
			peer := ""
			if d, err := ep.Details(); err == nil {
				peer = fmt.Sprintf(": peer %q (%s)", d.RemoteIfName, d.RemoteInstName)
			}
			fmt.Fprintf(os.Stderr, "%s: link up%s, %d rx / %d tx queue(s), %d-byte buffers\n",
				name, peer, l.RxQueues, l.TxQueues, l.BufferSize)
		},
		OnLinkDown: func(memif.Link) {
			fmt.Fprintf(os.Stderr, "%s: link down (icmp replies %d so far)\n", name, st.counts[icmpReply].Load())
		},
	}, func(ctx context.Context, q *memif.Queue) error { return serve(ctx, q, cfg, st) })
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s: %s %s (id %d), answering for %s at %s, %s mode\n",
		name, cfg.link.RoleText(), cfg.link.Socket, cfg.link.ID, cfg.ip, cfg.mac, map[bool]string{false: "interrupt", true: "polling"}[cfg.polling])
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, func() { fmt.Fprintf(os.Stderr, "%s: stopping\n", name) })
	return ep.Run(ctx)
}

// maxFrame is the largest frame handled: a memif packet is at most 65535 bytes.
const maxFrame = 0xffff

// worker answers the frames of one queue for one link.
type worker struct {
	q       *memif.Queue
	st      *stats
	resp    *responder
	chain   []byte    // a chained frame gathered across buffers (and bursts)
	inChain bool      // the last burst ended inside a chain
	tooLong bool      // the chain grew beyond maxFrame: dropped when it ends
	staged  []verdict // what each staged reply answers, in order
}

// serve is the Endpoint's handler: it answers until the link goes down.
func serve(ctx context.Context, q *memif.Queue, cfg config, st *stats) error {
	w := &worker{q: q, st: st, resp: newResponder(cfg.mac, cfg.ip), chain: make([]byte, 0, 9216)}
	for {
		n, err := q.Receive(ctx)
		if err != nil {
			if w.inChain { // a chain the link-down cut short
				st.rx.Add(1)
				st.count(dropLinkDown, 1)
			}
			return err // the link went down (not counted as a failure) or worse
		}
		w.handle(n)
		w.flush()
	}
}

// handle answers the frames in Rx()[0:n]; a chain the burst cuts is kept
// for the next one. Views are only read here, before the next Receive.
func (w *worker) handle(n int) {
	rx := w.q.Rx()
	if rx.ChainCut() { // the guard dropped the rest of the chain kept
		w.chain, w.inChain, w.tooLong = w.chain[:0], false, false
	}
	for i := 0; i < n; {
		end, size := rx.PacketEnd(i, n)
		frame := rx.Data(i) // one buffer: parsed in place, in shared memory
		if w.inChain || rx.HasNext(i) {
			if len(w.chain)+size <= maxFrame {
				w.chain, _ = rx.AppendPacket(w.chain, i, n)
			} else {
				w.tooLong = true
			}
			if w.inChain = rx.HasNext(end - 1); w.inChain {
				break // continues in the next burst
			}
			frame = w.chain
		}
		i = end
		w.answer(frame)
		w.chain, w.tooLong = w.chain[:0], false
	}
}

// answer stages the reply to frame.
func (w *worker) answer(frame []byte) {
	w.st.rx.Add(1)
	if w.tooLong {
		w.st.count(dropTooBig, 1)
		return
	}
	v, reply := w.resp.reply(frame)
	switch {
	case v != arpReply && v != icmpReply:
		w.st.count(v, 1)
	case len(reply) > maxFrame:
		w.st.count(dropTooBig, 1)
	default:
		w.q.Append(reply)
		w.staged = append(w.staged, v)
	}
}

// flush sends the staged replies without waiting: what a full ring cannot
// take is dropped, as a network interface does.
func (w *worker) flush() {
	sent, err := w.q.FlushNow()
	for _, v := range w.staged[:sent] {
		w.st.count(v, 1)
	}
	lost := uint64(len(w.staged) - sent)
	switch {
	case lost == 0:
	case err == nil:
		w.st.count(dropTxRingFull, lost)
	case errors.Is(err, memif.ErrDisconnected), errors.Is(err, memif.ErrDeleted):
		w.st.count(dropLinkDown, lost)
	default:
		w.st.count(dropTxError, lost)
		fmt.Fprintf(os.Stderr, "%s: queue %d: %v\n", name, w.q.ID(), err)
	}
	w.staged = w.staged[:0]
}
