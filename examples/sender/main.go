// Command sender is one half of a two-process traffic pair (see
// examples/receiver): it connects to a memif peer and sends verifiable
// packets (internal/pkt) on every queue, stream id = queue id, sequence
// numbers from 0 per queue. It is a slave by default.
//
//	sender -socket @memif-go-traffic -count 1000000 -size 1500 -rate 100000
//
// A full ring is retried, never dropped, and the sender waits for the
// receiver to consume its rings before it disconnects. The last line on
// stdout is the summary:
//
//	sent N bytes B seconds S mpps X gbps Y retries R
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/memif-go/memif"
	"github.com/memif-go/memif/internal/exutil"
	"github.com/memif-go/memif/internal/pkt"
)

const name = "sender"

type config struct {
	master     bool
	socket     string
	id         uint
	secret     string
	queues     int
	size       int
	rate       float64
	duration   time.Duration
	count      uint64
	burst      int
	wait       time.Duration
	drain      time.Duration
	bufferSize int
	log2Ring   int
	retry      time.Duration
}

type linkInfo struct {
	queues, bufSize int
	peer, peerApp   string
}

type stats struct {
	sent, bytes, retries atomic.Uint64
}

func main() {
	var cfg config
	flag.BoolVar(&cfg.master, "master", false, "be the memif master (default: slave)")
	flag.StringVar(&cfg.socket, "socket", "@memif-go-traffic", "socket path ('@' = abstract)")
	flag.UintVar(&cfg.id, "id", 0, "memif interface id (must match the receiver's)")
	flag.StringVar(&cfg.secret, "secret", "", "shared secret (must match the receiver's)")
	flag.IntVar(&cfg.queues, "queues", 1, "tx queues, one stream each (as master: the most to accept)")
	flag.IntVar(&cfg.size, "size", 64, fmt.Sprintf("frame size in bytes (%d..9000; chained when over the buffer size)", pkt.HeaderLen))
	flag.Float64Var(&cfg.rate, "rate", 0, "packets per second over all queues (0: as fast as possible)")
	flag.DurationVar(&cfg.duration, "duration", 0, "send for this long (0: until -count)")
	flag.Uint64Var(&cfg.count, "count", 1_000_000, "packets per queue (0: until -duration)")
	flag.IntVar(&cfg.burst, "burst", 32, "packets per burst (1..256)")
	flag.DurationVar(&cfg.wait, "wait", 10*time.Second, "how long to wait for the link")
	flag.DurationVar(&cfg.drain, "drain", 10*time.Second, "how long to wait for the receiver to consume the rings")
	flag.IntVar(&cfg.bufferSize, "buffer-size", 2048, "buffer size as slave (the slave's value wins)")
	flag.IntVar(&cfg.log2Ring, "ring", 10, "log2 of the ring size as slave")
	flag.DurationVar(&cfg.retry, "retry", 100*time.Millisecond, "as slave, connection request period while no master listens")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: sender [flags]\n\nSends verifiable traffic to examples/receiver.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	var st stats
	elapsed, err := run(cfg, &st)
	var mpps, gbps float64
	if sec := elapsed.Seconds(); sec > 0 {
		mpps = float64(st.sent.Load()) / sec / 1e6
		gbps = float64(st.bytes.Load()) * 8 / sec / 1e9
	}
	fmt.Printf("sent %d bytes %d seconds %.3f mpps %.3f gbps %.3f retries %d\n",
		st.sent.Load(), st.bytes.Load(), elapsed.Seconds(), mpps, gbps, st.retries.Load())
	if err != nil {
		exutil.Fatal(name, err)
	}
}

func (cfg *config) validate() error {
	switch {
	case cfg.size < pkt.HeaderLen || cfg.size > 9000:
		return fmt.Errorf("-size %d is outside %d..9000", cfg.size, pkt.HeaderLen)
	case cfg.burst < 1 || cfg.burst > 256:
		return fmt.Errorf("-burst %d is outside 1..256", cfg.burst)
	case cfg.queues < 1 || cfg.queues > 255:
		return fmt.Errorf("-queues %d is outside 1..255", cfg.queues)
	case cfg.rate < 0:
		return fmt.Errorf("-rate %v is negative", cfg.rate)
	case cfg.count == 0 && cfg.duration <= 0:
		return errors.New("give -count or -duration")
	case cfg.wait <= 0 || cfg.drain <= 0 || cfg.retry <= 0:
		return errors.New("-wait, -drain and -retry must be positive")
	case cfg.bufferSize < 128 || cfg.bufferSize > 65535:
		return fmt.Errorf("-buffer-size %d is outside 128..65535", cfg.bufferSize)
	case cfg.log2Ring < 1 || cfg.log2Ring > memif.MaxLog2RingSize:
		return fmt.Errorf("-ring %d is outside 1..%d", cfg.log2Ring, memif.MaxLog2RingSize)
	case cfg.id > 1<<32-1:
		return fmt.Errorf("-id %d does not fit 32 bits", cfg.id)
	}
	return nil
}

func run(cfg config, st *stats) (time.Duration, error) {
	sock, err := memif.CreateSocket(&memif.SocketArgs{Path: cfg.socket, AppName: "memif-go-sender",
		ConnectionRequestTimer: cfg.retry})
	if err != nil {
		return 0, err
	}
	defer sock.Delete()
	// The binding admits any goroutine to the control path while a callback
	// runs on the driver, so this goroutine makes no control call while the
	// driver runs: OnConnect reads the link, and the rings are checked for
	// draining once the driver stopped.
	var lk linkInfo
	pendingAtDown := -1 // tx ring buffers not consumed when the link went down
	ev := exutil.NewEvents()
	args := memif.ConnArgs{Socket: sock, Secret: cfg.secret, IsMaster: cfg.master, InterfaceID: uint32(cfg.id),
		NumS2MRings: uint8(cfg.queues), NumM2SRings: uint8(cfg.queues), BufferSize: uint16(cfg.bufferSize),
		Log2RingSize: uint8(cfg.log2Ring), InterfaceName: "sender",
		OnDisconnect: func(c *memif.Conn) error {
			// The rings are still mapped here: a receiver that consumed
			// everything and left is a success.
			if d, err := c.Details(); err == nil {
				if n, ok := pending(d); ok {
					pendingAtDown = n
				}
			}
			fmt.Fprintf(os.Stderr, "%s: link down\n", name)
			return nil
		}}
	ev.Wire(&args)
	// Read the link before Events signals it, so the waiter finds lk set.
	signalUp := args.OnConnect
	args.OnConnect = func(c *memif.Conn) error {
		d, err := c.Details()
		if err != nil {
			return err
		}
		if len(d.TxQueues) == 0 || d.TxQueues[0].BufferSize == 0 {
			return errors.New("link up without tx queues")
		}
		if !cfg.master {
			// One run, one link: no reconnect behind our back.
			if err := sock.SetConnectionRequestTimer(0); err != nil {
				return err
			}
		}
		lk = linkInfo{queues: len(d.TxQueues), bufSize: int(d.TxQueues[0].BufferSize),
			peer: d.RemoteIfName, peerApp: d.RemoteInstName}
		return signalUp(c)
	}
	conn, err := memif.Create(&args)
	if err != nil {
		return 0, err
	}
	drv := exutil.Drive(sock)
	driving := true
	stopDriver := func() {
		if driving {
			drv.Stop()
			driving = false
		}
	}
	defer func() {
		stopDriver()
		conn.Delete()
	}()

	fmt.Fprintf(os.Stderr, "%s: waiting for link on %s\n", name, cfg.socket)
	if _, err := ev.WaitUp(cfg.wait); err != nil {
		// A refused handshake (secret, id) is no link down: the reason is
		// only in the details.
		stopDriver()
		if d, derr := conn.Details(); derr == nil && d.Error != "" {
			err = fmt.Errorf("%w (last handshake failed: %s)", err, d.Error)
		}
		return 0, err
	}
	bufSize, nq := lk.bufSize, lk.queues
	fmt.Fprintf(os.Stderr, "%s: link up: peer %q (%s), %d tx queue(s), %d-byte buffers\n",
		name, lk.peer, lk.peerApp, nq, bufSize)

	var stop atomic.Bool
	if cfg.duration > 0 {
		t := time.AfterFunc(cfg.duration, func() { stop.Store(true) })
		defer t.Stop()
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	allDone := make(chan struct{})
	go func() {
		select {
		case <-sigc:
			stop.Store(true)
		case <-allDone:
		}
	}()

	start := time.Now()
	errs := make(chan error, nq)
	var wg sync.WaitGroup
	for q := range nq {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			if err := send(conn, uint16(q), nq, bufSize, cfg, &stop, st); err != nil {
				errs <- fmt.Errorf("queue %d: %w", q, err)
				stop.Store(true)
			}
		}()
	}
	wg.Wait()
	close(allDone)
	elapsed := time.Since(start)
	close(errs)
	// Stopping the driver freezes the link state: no callback can run
	// while this goroutine reads the rings.
	stopDriver()
	if err := <-errs; err != nil {
		return elapsed, err
	}
	if !conn.Connected() {
		switch {
		case pendingAtDown == 0:
			return elapsed, nil
		case pendingAtDown > 0:
			return elapsed, fmt.Errorf("link went down with %d buffers not consumed", pendingAtDown)
		}
		return elapsed, errors.New("link went down before the tx rings drained")
	}
	return elapsed, waitDrained(conn, cfg.drain)
}

// send transmits on queue q until the count, the duration or a stop.
func send(c *memif.Conn, q uint16, nq, bufSize int, cfg config, stop *atomic.Bool, st *stats) error {
	segs := (cfg.size + bufSize - 1) / bufSize // buffers per packet
	bufs, err := memif.NewBuffers(cfg.burst * segs)
	if err != nil {
		return err
	}
	defer bufs.Free()
	scratch := make([]byte, cfg.size) // chained frames are built here, then copied
	var p *pacer
	if cfg.rate > 0 {
		p = newPacer(cfg.rate/float64(nq), cfg.burst)
	}
	var seq, retries uint64
	for (cfg.count == 0 || seq < cfg.count) && !stop.Load() {
		want := cfg.burst
		if cfg.count > 0 {
			want = int(min(uint64(want), cfg.count-seq))
		}
		if p != nil {
			if want = p.take(want, stop); want == 0 {
				break
			}
		}
		n, err := c.BufferAlloc(q, bufs, want, uint16(cfg.size))
		if err != nil && !errors.Is(err, memif.ErrNoBufRing) {
			return err
		}
		k := n / segs // libmemif rolls back partial chains: whole packets only
		if p != nil {
			p.refund(want - k)
		}
		if k < want {
			// Ring full: the receiver is behind. Send what fitted and retry
			// the rest; nothing is dropped.
			retries++
			if k == 0 {
				runtime.Gosched()
				continue
			}
		}
		if segs == 1 {
			for i := 0; i < k; i++ {
				pkt.Fill(bufs.Data(i), q, seq+uint64(i)) // in place, in shared memory
			}
		} else {
			for i, j := 0, 0; i < k; i++ {
				pkt.Fill(scratch, q, seq+uint64(i))
				end, size := bufs.PacketEnd(j, n)
				if size != cfg.size {
					return fmt.Errorf("allocated a %d-byte chain for a %d-byte packet", size, cfg.size)
				}
				for off := 0; j < end; j++ {
					off += copy(bufs.Data(j), scratch[off:])
				}
			}
		}
		sent, err := c.TxBurst(q, bufs, n)
		if err != nil {
			return err
		}
		if sent != n {
			return fmt.Errorf("tx burst sent %d of %d buffers", sent, n)
		}
		seq += uint64(k)
		st.sent.Add(uint64(k))
		st.bytes.Add(uint64(k) * uint64(cfg.size))
	}
	st.retries.Add(retries)
	return nil
}

// pacer is a token bucket checked once per burst: it sleeps until a batch
// worth sending has accrued, never per packet.
type pacer struct {
	rate     float64 // tokens (packets) per second
	tokens   float64
	depth    float64 // cap, so a stall does not turn into a long burst
	minBatch int     // about 1ms of packets: keeps sleeps coarse
	last     time.Time
	// The clock, replaceable so a test need not depend on the host's timing.
	now   func() time.Time
	sleep func(time.Duration)
}

func newPacer(rate float64, burst int) *pacer {
	mb := max(1, min(burst, int(rate/1000)))
	// 20ms of credit absorbs late wake-ups on a busy host, so the average
	// holds; a longer stall is not made up.
	return &pacer{rate: rate, depth: max(float64(2*burst), rate/50), minBatch: mb, last: time.Now(),
		now: time.Now, sleep: time.Sleep}
}

// take waits until at least min(want, minBatch) tokens are there and takes
// up to want of them; 0 if stopped.
func (p *pacer) take(want int, stop *atomic.Bool) int {
	need := float64(min(want, p.minBatch))
	for {
		now := p.now()
		p.tokens = min(p.depth, p.tokens+now.Sub(p.last).Seconds()*p.rate)
		p.last = now
		if p.tokens >= need {
			n := min(want, int(p.tokens))
			p.tokens -= float64(n)
			return n
		}
		if stop.Load() {
			return 0
		}
		// Sleep in slices so -duration and signals stay prompt at low rates.
		p.sleep(min(time.Duration((need-p.tokens)/p.rate*float64(time.Second)), 50*time.Millisecond))
	}
}

func (p *pacer) refund(n int) { p.tokens += float64(n) }

// pending counts the buffers of d's tx rings the receiver has not given
// back yet; ok is false when the rings are gone. A slave produces at head
// and gets buffers back at tail; a master produces at tail and the slave
// returns buffers by moving head a whole ring ahead of it.
func pending(d *memif.Details) (n int, ok bool) {
	if len(d.TxQueues) == 0 {
		return 0, false
	}
	for _, q := range d.TxQueues {
		out := int(q.Head - q.Tail) // uint16 arithmetic: rings wrap
		if d.IsMaster {
			out = int(q.RingSize) - out
		}
		n += out
	}
	return n, true
}

// waitDrained waits until the receiver consumed everything on the tx rings,
// or the timeout.
func waitDrained(c *memif.Conn, timeout time.Duration) error {
	deadline := time.After(timeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		d, err := c.Details()
		if err != nil {
			return err
		}
		n, ok := pending(d)
		if !ok {
			return errors.New("tx rings gone while waiting for them to drain")
		}
		if n == 0 {
			return nil
		}
		select {
		case <-tick.C:
		case <-deadline:
			return fmt.Errorf("tx rings not drained after %v: %d buffers not consumed", timeout, n)
		}
	}
}
