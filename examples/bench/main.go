// Command bench measures memif-go's packet rate and latency, the same
// algorithm as its C twin bench/c/memif_bench.c (same flags, same JSON), so
// the two can be compared run for run (./build.sh bench).
//
//	bench -size 64 -burst 64 -threads 1            loopback in this process
//	bench -threads 2 -workload copy -size 1500     tx and rx on their own threads
//	bench -workload forward -size 1500             tx -> Conn.Forward (pair 1 to pair 2) -> rx
//	bench -pingpong                                round-trip latency, one packet in flight
//	bench -socket /run/vpp/memif.sock              traffic through a peer (slave)
//	bench -socket /tmp/b.sock -master -echo        reflect a peer's traffic
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/memif-go/memif"
	"golang.org/x/sys/unix"
)

type config struct {
	socket     string
	master     bool
	echo       bool
	threads    int
	size       int
	burst      int
	queues     int
	duration   time.Duration
	workload   string
	pingpong   bool
	jsonOut    bool
	cpuprofile string
	bufSize    int
	log2Ring   int
	cpus       []int
	rxWait     time.Duration // > 0: zero-copy rx waits in C (RefillRxBurstWait) instead of polling
}

// Result is the one JSON object both twins print.
type Result struct {
	Impl      string  `json:"impl"`
	Mode      string  `json:"mode"` // loopback, peer, echo
	Workload  string  `json:"workload"`
	Threads   int     `json:"threads"`
	Size      int     `json:"size"`
	Burst     int     `json:"burst"`
	Queues    int     `json:"queues"`
	Pingpong  bool    `json:"pingpong"`
	DurationS float64 `json:"duration_s"`
	TxPackets uint64  `json:"tx_packets"`
	Packets   uint64  `json:"packets"` // received
	Mpps      float64 `json:"mpps"`
	Gbps      float64 `json:"gbps"`
	// CPUS is the worker threads' CPU time; MppsPerCPU the rate per
	// second of a worker's CPU time, which other load on the box barely
	// moves (time not scheduled does not count).
	CPUS       float64  `json:"cpu_s"`
	MppsPerCPU float64  `json:"mpps_per_cpu"`
	Lost       uint64   `json:"lost"`
	Latency    *Latency `json:"latency_ns,omitempty"`
	Version    string   `json:"version"`
	Libmemif   string   `json:"libmemif"`
}

// Latency is the round-trip distribution in nanoseconds.
type Latency struct {
	Samples uint64  `json:"samples"`
	Min     int64   `json:"min"`
	Mean    float64 `json:"mean"`
	P50     int64   `json:"p50"`
	P99     int64   `json:"p99"`
	P999    int64   `json:"p999"`
	Max     int64   `json:"max"`
}

func main() {
	var cfg config
	flag.StringVar(&cfg.socket, "socket", "", "peer mode: memif socket path ('@' = abstract); empty runs master and slave in this process")
	flag.BoolVar(&cfg.master, "master", false, "peer mode: be the master (default slave)")
	flag.BoolVar(&cfg.echo, "echo", false, "peer mode: send every received packet back (the far end of another bench)")
	flag.IntVar(&cfg.threads, "threads", 1, "1: one goroutine alternates tx and rx; 2: tx and rx on their own locked threads")
	flag.IntVar(&cfg.size, "size", 64, "frame size in bytes (64..9000; chained above -bufsize)")
	flag.IntVar(&cfg.burst, "burst", 64, "packets per burst (1..256)")
	flag.IntVar(&cfg.queues, "queues", 1, "queue pairs (1..16)")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "how long to measure")
	flag.StringVar(&cfg.workload, "workload", "zerocopy", "zerocopy: write and read a header in place; copy: copy whole frames in and out of Go memory; forward: zerocopy tx on pair 1, Conn.Forward to pair 2, zerocopy rx (loopback, one thread)")
	flag.BoolVar(&cfg.pingpong, "pingpong", false, "round-trip latency with one packet in flight (needs -threads 2 in loopback)")
	flag.BoolVar(&cfg.jsonOut, "json", false, "print one JSON object instead of text")
	flag.StringVar(&cfg.cpuprofile, "cpuprofile", "", "write a CPU profile of the measured run to this file")
	flag.IntVar(&cfg.bufSize, "bufsize", 2048, "memif buffer size")
	flag.IntVar(&cfg.log2Ring, "ring", 11, "log2 of the ring size")
	flag.DurationVar(&cfg.rxWait, "rxwait", 0, "zerocopy rx waits up to this long inside C for a burst (RefillRxBurstWait, no syscall per empty poll; the C twin cannot); 0: poll with RefillRxBurst like the C twin")
	cpus := flag.String("cpus", "", "pin worker threads, in start order, to these CPUs (comma list; default: no pinning)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: bench [flags]\n\nMeasures memif packet rate (Mpps, Gbit/s) or round-trip latency.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	for _, f := range strings.FieldsFunc(*cpus, func(r rune) bool { return r == ',' }) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			fmt.Fprintf(os.Stderr, "bench: -cpus %q: want CPU numbers\n", *cpus)
			os.Exit(2)
		}
		cfg.cpus = append(cfg.cpus, n)
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	res, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if cfg.jsonOut {
		out, _ := json.Marshal(res)
		fmt.Println(string(out))
		return
	}
	if res.Latency != nil {
		l := res.Latency
		fmt.Printf("pingpong %dB: %d round trips in %.2fs: p50 %d ns, p99 %d ns, p99.9 %d ns (min %d, mean %.0f, max %d)\n",
			res.Size, l.Samples, res.DurationS, l.P50, l.P99, l.P999, l.Min, l.Mean, l.Max)
		return
	}
	fmt.Printf("%s %s %dB burst %d, %d thread(s), %d queue(s): %d packets in %.2fs: %.2f Mpps, %.2f Gbit/s, lost %d\n",
		res.Mode, res.Workload, res.Size, res.Burst, res.Threads, res.Queues, res.Packets, res.DurationS,
		res.Mpps, res.Gbps, res.Lost)
}

func (cfg *config) validate() error {
	switch {
	case cfg.size < 64 || cfg.size > 9000:
		return fmt.Errorf("-size %d is outside 64..9000", cfg.size)
	case cfg.burst < 1 || cfg.burst > 256:
		return fmt.Errorf("-burst %d is outside 1..256", cfg.burst)
	case cfg.queues < 1 || cfg.queues > 16:
		return fmt.Errorf("-queues %d is outside 1..16", cfg.queues)
	case cfg.threads != 1 && cfg.threads != 2:
		return fmt.Errorf("-threads %d: 1 or 2", cfg.threads)
	case cfg.rxWait < 0 || cfg.rxWait > memif.MaxSpin:
		return fmt.Errorf("-rxwait %v is outside 0..%v", cfg.rxWait, memif.MaxSpin)
	case cfg.workload != "zerocopy" && cfg.workload != "copy" && cfg.workload != "forward":
		return fmt.Errorf("-workload %q: zerocopy, copy or forward", cfg.workload)
	case cfg.workload == "forward" && (cfg.socket != "" || cfg.pingpong || cfg.threads != 1 || cfg.queues != 1):
		return errors.New("-workload forward runs in loopback, one thread, one queue")
	case cfg.duration <= 0:
		return errors.New("-duration must be positive")
	case cfg.bufSize < 128 || cfg.bufSize > 65535:
		return fmt.Errorf("-bufsize %d is outside 128..65535", cfg.bufSize)
	case cfg.log2Ring < 4 || cfg.log2Ring > memif.MaxLog2RingSize:
		return fmt.Errorf("-ring %d is outside 4..%d", cfg.log2Ring, memif.MaxLog2RingSize)
	case cfg.echo && cfg.socket == "":
		return errors.New("-echo needs -socket (a peer to reflect)")
	case cfg.pingpong && cfg.socket == "" && cfg.threads != 2:
		cfg.threads = 2 // the pinger and the reflector each need a thread
	}
	return nil
}

// counter sits on its own cache line: tx and rx threads update theirs.
type counter struct {
	n atomic.Uint64
	_ [56]byte
}

type stats struct {
	tx, rx, rtts counter
}

func run(cfg config) (*Result, error) {
	res := &Result{Impl: "go", Mode: "loopback", Workload: cfg.workload, Threads: cfg.threads, Size: cfg.size,
		Burst: cfg.burst, Queues: cfg.queues, Pingpong: cfg.pingpong, Version: runtime.Version(),
		Libmemif: memif.LibraryVersion}
	path := cfg.socket
	if path == "" {
		path = fmt.Sprintf("@memif-go-bench-%d", os.Getpid())
	} else if cfg.echo {
		res.Mode = "echo"
	} else {
		res.Mode = "peer"
	}
	ml, err := memif.NewLoop(&memif.LoopArgs{Socket: memif.SocketArgs{Path: path, AppName: "memif-go-bench"}})
	if err != nil {
		return nil, err
	}
	sock := ml.Socket()
	ctx, cancel := context.WithCancel(context.Background())
	go ml.Run(ctx)
	defer func() {
		cancel() // Run deletes the connections and the socket
		<-ml.Done()
	}()
	up := make(chan struct{}, 2)
	args := memif.ConnArgs{Socket: sock, NumS2MRings: uint8(cfg.queues), NumM2SRings: uint8(cfg.queues),
		BufferSize: uint16(cfg.bufSize), Log2RingSize: uint8(cfg.log2Ring), InterfaceName: "bench",
		// Busy polling: peers skip the eventfd write per tx burst.
		OnConnect: func(c *memif.Conn) error {
			for q := 0; q < cfg.queues; q++ {
				err := c.SetRxMode(memif.RxModePolling, uint16(q))
				if err != nil && !errors.Is(err, memif.ErrQID) { // the peer may grant fewer queues
					return err
				}
			}
			up <- struct{}{}
			return nil
		}}
	var conns []*memif.Conn
	mk := func(master bool) (*memif.Conn, error) {
		a := args
		a.IsMaster = master
		a.InterfaceID = uint32(len(conns) / 2) // forward's second pair: its own id
		c, err := memif.Create(&a)
		if err == nil {
			conns = append(conns, c)
		}
		return c, err
	}
	var txc, rxc *memif.Conn // loopback: master sends, slave receives
	var fw *fwd              // forward: between the two pairs
	if cfg.socket == "" {
		if txc, err = mk(true); err != nil {
			return nil, err
		}
		if rxc, err = mk(false); err != nil {
			return nil, err
		}
		if cfg.workload == "forward" { // pair 1's slave forwards to pair 2's master
			fwa := rxc
			fwb, err := mk(true)
			if err != nil {
				return nil, err
			}
			if rxc, err = mk(false); err != nil {
				return nil, err
			}
			fw = newFwd(fwa, fwb, cfg)
		}
	} else {
		if txc, err = mk(cfg.master); err != nil {
			return nil, err
		}
		rxc = txc
		if !cfg.master {
			sock.SetConnectionRequestTimer(time.Second)
		}
	}
	wait := 5 * time.Second
	if cfg.socket != "" {
		wait = 60 * time.Second
	}
	for range conns {
		select {
		case <-up:
		case <-time.After(wait):
			return nil, fmt.Errorf("no connection within %v", wait)
		}
	}

	if cfg.cpuprofile != "" {
		f, err := os.Create(cfg.cpuprofile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	var st stats
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 4*cfg.queues)
	workers := 0
	var cpuNs atomic.Int64 // CPU time of the worker threads
	spawn := func(fn func() error) {
		wg.Add(1)
		cpu := -1
		if len(cfg.cpus) > 0 {
			cpu = cfg.cpus[workers%len(cfg.cpus)]
		}
		workers++
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			if cpu >= 0 {
				var set unix.CPUSet
				set.Set(cpu)
				if err := unix.SchedSetaffinity(0, &set); err != nil {
					errs <- fmt.Errorf("pinning to CPU %d: %w", cpu, err)
					stop.Store(true)
					return
				}
			}
			t0 := threadCPU()
			err := fn()
			cpuNs.Add(int64(threadCPU() - t0))
			if cfg.socket != "" && errors.Is(err, memif.ErrDisconnected) {
				err = nil // the peer went away: that ends the run
				stop.Store(true)
			}
			if err != nil {
				errs <- err
				stop.Store(true)
			}
		}()
	}
	var lat *histogram
	var rxs []*rxq
	start := time.Now()
	switch {
	case cfg.echo:
		for q := 0; q < cfg.queues; q++ {
			e := newEcho(txc, uint16(q), cfg)
			spawn(func() error { return loop(&stop, e.step, &st.rx) })
		}
	case cfg.pingpong:
		lat = newHistogram()
		p := newPinger(txc, 0, cfg, start, lat, &st)
		spawn(func() error { return p.run(&stop) })
		if cfg.socket == "" {
			e := newEcho(rxc, 0, cfg)
			spawn(func() error { return loop(&stop, e.step, nil) })
		}
	case fw != nil:
		t, r := newTxq(txc, 0, cfg), newRxq(rxc, 0, cfg)
		rxs = []*rxq{r}
		spawn(func() error { return fw.run(&stop, t, r, &st) })
	default:
		txs := make([]*txq, cfg.queues)
		rxs = make([]*rxq, cfg.queues)
		for q := range txs {
			txs[q] = newTxq(txc, uint16(q), cfg)
			rxs[q] = newRxq(rxc, uint16(q), cfg)
		}
		if cfg.threads == 1 {
			spawn(func() error {
				for !stop.Load() {
					for q := range txs {
						n, err := txs[q].step()
						if err != nil {
							return err
						}
						st.tx.n.Add(uint64(n))
						if n, err = rxs[q].step(); err != nil {
							return err
						}
						st.rx.n.Add(uint64(n))
					}
				}
				return nil
			})
		} else {
			for q := range txs {
				spawn(func() error { return loop(&stop, txs[q].step, &st.tx) })
				spawn(func() error { return loop(&stop, rxs[q].step, &st.rx) })
			}
		}
	}
	progress(cfg, &stop, start, &st)
	elapsed := time.Since(start)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	res.DurationS = elapsed.Seconds()
	res.TxPackets, res.Packets = st.tx.n.Load(), st.rx.n.Load()
	res.Mpps = float64(res.Packets) / elapsed.Seconds() / 1e6
	res.Gbps = float64(res.Packets) * float64(cfg.size) * 8 / elapsed.Seconds() / 1e9
	res.CPUS = time.Duration(cpuNs.Load()).Seconds()
	if res.CPUS > 0 {
		res.MppsPerCPU = float64(res.Packets) / (res.CPUS / float64(workers)) / 1e6
	}
	if lat != nil {
		res.Latency = lat.summary()
	}
	for _, r := range rxs {
		res.Lost += r.lost
	}
	return res, nil
}

// threadCPU is the calling thread's CPU time (user and system).
func threadCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs step until stop, counting what it moved.
func loop(stop *atomic.Bool, step func() (int, error), c *counter) error {
	for !stop.Load() {
		n, err := step()
		if err != nil {
			return err
		}
		if c != nil && n > 0 {
			c.n.Add(uint64(n))
		}
	}
	return nil
}

// progress shows a live line on a terminal and returns when the run ends.
func progress(cfg config, stop *atomic.Bool, start time.Time, st *stats) {
	_, err := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS)
	tty := err == nil && !cfg.jsonOut
	end := start.Add(cfg.duration)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var last uint64
	lastT := start
	timer := time.NewTimer(cfg.duration)
	defer timer.Stop()
	for !stop.Load() {
		select {
		case <-timer.C:
			stop.Store(true)
		case now := <-tick.C:
			if !tty {
				continue
			}
			if cfg.pingpong {
				fmt.Fprintf(os.Stderr, "\r\033[K%d round trips, %.0fs left", st.rtts.n.Load(), time.Until(end).Seconds())
				continue
			}
			r := st.rx.n.Load()
			fmt.Fprintf(os.Stderr, "\r\033[K%.2f Mpps  packets %d  %.0fs left",
				float64(r-last)/now.Sub(lastT).Seconds()/1e6, r, time.Until(end).Seconds())
			last, lastT = r, now
		}
	}
	if tty {
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
}

// Frame header: seq (8) | queue (2) | unused (6) | send time ns (8, pingpong).
func putHeader(b []byte, seq uint64, q uint16) {
	_ = b[9] // one bounds check
	binary.LittleEndian.PutUint64(b, seq)
	binary.LittleEndian.PutUint16(b[8:], q)
}

func segments(cfg config) int { return (cfg.size + cfg.bufSize - 1) / cfg.bufSize }

// txBatch sizes a tx batch to the ring: on a master, a smaller batch makes
// allocation assume the slave's shortest segments (see BufferAlloc).
func txBatch(cfg config, packets int) int { return max(packets*segments(cfg), 1<<cfg.log2Ring) }

// txq sends one queue's frames: zerocopy writes headers into buffers
// TxBurstAlloc allocated on the previous call; copy writes headers into a
// flat Go slice of whole frames and CopyTx copies them out.
type txq struct {
	_      [128]byte // the tx and rx threads write their own queue state: never one cache line
	c      *memif.Conn
	q      uint16
	cfg    config
	bufs   *memif.Buffers
	n      int // buffers allocated, to fill and send
	seq    uint64
	data   []byte
	offs   []int32
	chains bool
	_      [128]byte
}

func newTxq(c *memif.Conn, q uint16, cfg config) *txq {
	t := &txq{c: c, q: q, cfg: cfg, chains: cfg.size > cfg.bufSize}
	t.bufs, _ = memif.NewBuffers(txBatch(cfg, cfg.burst))
	if cfg.workload == "copy" {
		t.data = make([]byte, cfg.burst*cfg.size)
		t.offs = make([]int32, cfg.burst+1)
		for i := range t.data {
			t.data[i] = byte(i)
		}
		for i := range t.offs {
			t.offs[i] = int32(i * cfg.size)
		}
	}
	return t
}

func (t *txq) step() (int, error) {
	seq, q := t.seq, t.q
	if t.data != nil {
		data, offs := t.data, t.offs
		for i := 0; i < t.cfg.burst; i++ {
			putHeader(data[offs[i]:], seq+uint64(i), q)
		}
		n, err := t.c.CopyTx(q, t.bufs, data, offs)
		if err != nil && !errors.Is(err, memif.ErrNoBufRing) {
			return 0, err
		}
		t.seq += uint64(n)
		return n, nil
	}
	bufs, n := t.bufs, t.n
	if t.chains {
		for i := 0; i < n; i++ {
			if i == 0 || !bufs.HasNext(i-1) { // header only in a packet's first buffer
				putHeader(bufs.Data(i), seq, q)
				seq++
			}
		}
	} else {
		v := bufs.Batch(n)
		for i := range v.Len() {
			putHeader(v.Data(i), seq, q)
			seq++
		}
	}
	pkts := int(seq - t.seq)
	t.seq = seq
	_, n, err := t.c.TxBurstAlloc(q, bufs, n, t.cfg.burst, uint16(t.cfg.size))
	if err != nil && !errors.Is(err, memif.ErrNoBufRing) {
		return 0, err
	}
	t.n = n
	return pkts, nil
}

// rxq receives one queue's frames and checks the sequence in each header.
type rxq struct {
	_      [128]byte
	c      *memif.Conn
	q      uint16
	burst  int
	bufs   *memif.Buffers
	refill int
	next   uint64
	lost   uint64
	cont   bool // the next buffer or packet continues a chain
	chains bool // chains may arrive: follow NEXT flags
	dst    []byte
	offs   []int32
	wait   time.Duration
	_      [128]byte
}

func newRxq(c *memif.Conn, q uint16, cfg config) *rxq {
	// A peer may chain whatever its buffer size: follow flags in peer mode.
	r := &rxq{c: c, q: q, burst: cfg.burst, chains: cfg.size > cfg.bufSize || cfg.socket != "", wait: cfg.rxWait}
	r.bufs, _ = memif.NewBuffers(cfg.burst)
	if cfg.workload == "copy" {
		r.dst = make([]byte, cfg.burst*cfg.bufSize+cfg.size)
		r.offs = make([]int32, cfg.burst+1)
	}
	return r
}

// see checks one header's sequence number against the expected one.
func see(hdr []byte, next, lost uint64) (uint64, uint64) {
	seq := binary.LittleEndian.Uint64(hdr)
	if seq > next {
		lost += seq - next
	}
	return seq + 1, lost
}

func (r *rxq) step() (n int, err error) {
	if r.dst != nil {
		return r.stepCopy()
	}
	if r.wait > 0 {
		n, _, err = r.c.RefillRxBurstWait(r.q, r.refill, 0, r.bufs, r.burst, r.wait)
	} else {
		n, _, err = r.c.RefillRxBurst(r.q, r.refill, 0, r.bufs, r.burst)
	}
	if err != nil {
		return 0, err
	}
	r.refill = n
	bufs, next, lost, pkts := r.bufs, r.next, r.lost, n
	if r.chains {
		pkts = 0
		if bufs.ChainCut() { // the guard dropped the rest of the chain begun
			r.cont = false
		}
		for i := 0; i < n; i++ {
			if !r.cont {
				next, lost = see(bufs.Data(i), next, lost)
				pkts++
			}
			r.cont = bufs.HasNext(i)
		}
	} else {
		v := bufs.Batch(n)
		for i := range v.Len() {
			next, lost = see(v.Data(i), next, lost)
		}
	}
	r.next, r.lost = next, lost
	return pkts, nil
}

func (r *rxq) stepCopy() (int, error) {
	next, lost := r.next, r.lost
	n, _, err := r.c.CopyRx(r.q, r.bufs, r.dst, r.offs)
	partial := errors.Is(err, memif.ErrPartialChain)
	if err != nil && !partial {
		return 0, err
	}
	dst, offs, first := r.dst, r.offs, 0
	if r.cont && n > 0 && !errors.Is(err, memif.ErrChainCut) {
		first = 1 // continues the previous call's partial packet
	}
	for i := first; i < n; i++ {
		next, lost = see(dst[offs[i]:], next, lost)
	}
	if n > 0 {
		r.cont = partial
	}
	r.next, r.lost = next, lost
	return n - first, nil
}

// echo sends back every frame it receives (CopyRx then CopyTx).
type echo struct {
	c    *memif.Conn
	q    uint16
	rx   *memif.Buffers
	tx   *memif.Buffers
	dst  []byte
	offs []int32
	spin time.Duration // pingpong: wait for the frame inside C
}

// pingSpin is how long a pingpong receive waits inside C per call: the
// ring's index is watched with no cgo crossing or syscall per empty poll.
// The C twin cannot do the same: a program using libmemif cannot see the
// ring, so it polls memif_rx_burst (a read() of the eventfd per empty poll).
const pingSpin = memif.MaxSpin

func newEcho(c *memif.Conn, q uint16, cfg config) *echo {
	e := &echo{c: c, q: q, dst: make([]byte, cfg.burst*cfg.bufSize+cfg.size), offs: make([]int32, cfg.burst+1)}
	e.rx, _ = memif.NewBuffers(cfg.burst)
	e.tx, _ = memif.NewBuffers(txBatch(cfg, cfg.burst))
	if cfg.pingpong {
		e.spin = pingSpin
	}
	return e
}

func (e *echo) step() (int, error) {
	var n int
	var err error
	if e.spin > 0 {
		n, _, err = e.c.CopyRxWait(e.q, e.rx, e.dst, e.offs, e.spin)
	} else {
		n, _, err = e.c.CopyRx(e.q, e.rx, e.dst, e.offs)
	}
	if err != nil && !errors.Is(err, memif.ErrPartialChain) {
		return 0, err
	}
	for done := 0; done < n; {
		k, err := e.c.CopyTx(e.q, e.tx, e.dst, e.offs[done:n+1])
		if err != nil && !errors.Is(err, memif.ErrNoBufRing) {
			return 0, err
		}
		done += k
	}
	return n, nil
}

// pinger keeps one frame in flight and records each round trip.
type pinger struct {
	c      *memif.Conn
	cfg    config
	start  time.Time
	h      *histogram
	st     *stats
	tx, rx *memif.Buffers
	dst    []byte // the echoed frame, copied out
	offs   []int32
}

func newPinger(c *memif.Conn, q uint16, cfg config, start time.Time, h *histogram, st *stats) *pinger {
	p := &pinger{c: c, cfg: cfg, start: start, h: h, st: st}
	p.tx, _ = memif.NewBuffers(txBatch(cfg, 1))
	p.rx, _ = memif.NewBuffers(segments(cfg))
	p.dst, p.offs = make([]byte, (segments(cfg)+1)*cfg.bufSize), make([]int32, 2)
	return p
}

// warmup round trips are left out of the distribution (both twins).
const warmup = 1000

func (p *pinger) run(stop *atomic.Bool) error {
	segs := segments(p.cfg)
	// Pipelined: the buffer for the next ping is allocated as this one leaves.
	_, n, err := p.c.TxBurstAlloc(0, p.tx, 0, 1, uint16(p.cfg.size))
	if err != nil {
		return err
	}
	for seq := uint64(0); !stop.Load(); seq++ {
		if n != segs {
			return fmt.Errorf("allocated %d buffers for one %d-byte frame", n, p.cfg.size)
		}
		d := p.tx.Data(0)
		putHeader(d, seq, 0)
		binary.LittleEndian.PutUint64(d[16:], uint64(time.Since(p.start)))
		if _, n, err = p.c.TxBurstAlloc(0, p.tx, n, 1, uint16(p.cfg.size)); err != nil {
			return err
		}
		for !stop.Load() {
			k, _, err := p.c.CopyRxWait(0, p.rx, p.dst, p.offs, pingSpin)
			if err != nil {
				return err // a partial chain too: the peer echoes whole frames
			}
			if k == 0 {
				continue
			}
			r := p.dst
			if binary.LittleEndian.Uint64(r) != seq || k != 1 {
				return fmt.Errorf("pingpong: got %d frame(s), seq %d, want seq %d", k, binary.LittleEndian.Uint64(r), seq)
			}
			if seq >= warmup {
				p.h.add(int64(time.Since(p.start)) - int64(binary.LittleEndian.Uint64(r[16:])))
			}
			break
		}
		p.st.tx.n.Add(1)
		p.st.rx.n.Add(1)
		p.st.rtts.n.Add(1)
	}
	return nil
}

// histogram has 1 ns buckets up to about 1 ms and one bucket beyond.
type histogram struct {
	b        []uint32
	over     uint64
	n        uint64
	sum      float64
	min, max int64
}

const histLen = 1 << 20

func newHistogram() *histogram {
	return &histogram{b: make([]uint32, histLen), min: 1<<63 - 1}
}

func (h *histogram) add(ns int64) {
	if ns < 0 {
		ns = 0
	}
	if ns < histLen {
		h.b[ns]++
	} else {
		h.over++
	}
	h.n++
	h.sum += float64(ns)
	h.min = min(h.min, ns)
	h.max = max(h.max, ns)
}

func (h *histogram) quantile(q float64) int64 {
	want := uint64(q * float64(h.n))
	if want >= h.n {
		want = h.n - 1
	}
	var c uint64
	for i, v := range h.b {
		c += uint64(v)
		if c > want {
			return int64(i)
		}
	}
	return h.max
}

func (h *histogram) summary() *Latency {
	if h.n == 0 {
		return &Latency{}
	}
	return &Latency{Samples: h.n, Min: h.min, Mean: h.sum / float64(h.n), P50: h.quantile(0.5),
		P99: h.quantile(0.99), P999: h.quantile(0.999), Max: h.max}
}

// fwd moves pair 1's received packets to pair 2 with Conn.Forward: the
// rx batch is a burst, the tx batch B's whole ring (every packet fits).
type fwd struct {
	a, b   *memif.Conn
	rx, tx *memif.Buffers
}

func newFwd(a, b *memif.Conn, cfg config) *fwd {
	f := &fwd{a: a, b: b}
	f.rx, _ = memif.NewBuffers(cfg.burst)
	f.tx, _ = memif.NewBuffers(1 << cfg.log2Ring)
	return f
}

// run is the forward workload's one thread: send on pair 1, forward,
// receive (and check sequence numbers) on pair 2.
func (f *fwd) run(stop *atomic.Bool, t *txq, r *rxq, st *stats) error {
	for !stop.Load() {
		n, err := t.step()
		if err != nil {
			return err
		}
		st.tx.n.Add(uint64(n))
		if _, dropped, _, err := f.a.Forward(0, f.b, 0, f.rx, f.tx); err != nil {
			return err
		} else if dropped != 0 {
			return fmt.Errorf("forward dropped %d buffers", dropped)
		}
		if n, err = r.step(); err != nil {
			return err
		}
		st.rx.n.Add(uint64(n))
	}
	return nil
}
