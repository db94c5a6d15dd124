// Command receiver is one half of a two-process traffic pair (see
// examples/sender): it receives on every queue of a memif link, verifies
// each packet (CRC-32C, length, stream and sequence) and reports what it
// got. It is a master by default and stays up across sender reconnects.
//
//	receiver -socket @memif-go-traffic -c 1000000
//
// The last line on stdout is the summary, in a stable format:
//
//	received N lost L reordered R corrupt C mpps X gbps Y
//
// It exits 1 if any packet was lost, reordered or corrupt.
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
	"golang.org/x/sys/unix"
)

const name = "receiver"

type config struct {
	slave      bool
	socket     string
	id         uint
	secret     string
	queues     int
	count      uint64
	burst      int
	bufferSize int
	log2Ring   int
	retry      time.Duration
}

// stats are totals over all queues and link sessions.
type stats struct {
	received, bytes, lost, reordered, corrupt atomic.Uint64
	active                                    atomic.Int64 // ns between first and last burst, summed over sessions
}

func (s *stats) summary() string {
	var mpps, gbps float64
	if sec := time.Duration(s.active.Load()).Seconds(); sec > 0 {
		mpps = float64(s.received.Load()) / sec / 1e6
		gbps = float64(s.bytes.Load()) * 8 / sec / 1e9
	}
	return fmt.Sprintf("received %d lost %d reordered %d corrupt %d mpps %.3f gbps %.3f",
		s.received.Load(), s.lost.Load(), s.reordered.Load(), s.corrupt.Load(), mpps, gbps)
}

func (s *stats) bad() bool {
	return s.lost.Load()+s.reordered.Load()+s.corrupt.Load() > 0
}

func main() {
	var cfg config
	flag.BoolVar(&cfg.slave, "slave", false, "be the memif slave (default: master)")
	flag.StringVar(&cfg.socket, "socket", "@memif-go-traffic", "socket path ('@' = abstract)")
	flag.UintVar(&cfg.id, "id", 0, "memif interface id (must match the sender's)")
	flag.StringVar(&cfg.secret, "secret", "", "shared secret (must match the sender's)")
	flag.IntVar(&cfg.queues, "queues", 1, "queues: as slave, how many to ask for; as master, the most to accept")
	flag.Uint64Var(&cfg.count, "c", 0, "exit once this many packets arrived (0: run until SIGINT/SIGTERM)")
	flag.IntVar(&cfg.burst, "burst", 256, "rx batch size (1..4096)")
	flag.IntVar(&cfg.bufferSize, "buffer-size", 2048, "buffer size as slave (the slave's value wins)")
	flag.IntVar(&cfg.log2Ring, "ring", 10, "log2 of the ring size as slave")
	flag.DurationVar(&cfg.retry, "retry", 100*time.Millisecond, "as slave, connection request period while no master listens")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: receiver [flags]\n\nReceives and verifies the traffic of examples/sender.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	var st stats
	err := run(cfg, &st)
	fmt.Println(st.summary())
	if err != nil {
		exutil.Fatal(name, err)
	}
	if st.bad() {
		os.Exit(1)
	}
}

func (cfg *config) validate() error {
	switch {
	case cfg.queues < 1 || cfg.queues > 255:
		return fmt.Errorf("-queues %d is outside 1..255", cfg.queues)
	case cfg.burst < 1 || cfg.burst > 4096:
		return fmt.Errorf("-burst %d is outside 1..4096", cfg.burst)
	case cfg.bufferSize < 128 || cfg.bufferSize > 65535:
		return fmt.Errorf("-buffer-size %d is outside 128..65535", cfg.bufferSize)
	case cfg.log2Ring < 1 || cfg.log2Ring > memif.MaxLog2RingSize:
		return fmt.Errorf("-ring %d is outside 1..%d", cfg.log2Ring, memif.MaxLog2RingSize)
	case cfg.id > 1<<32-1:
		return fmt.Errorf("-id %d does not fit 32 bits", cfg.id)
	case cfg.retry <= 0:
		return errors.New("-retry must be positive")
	}
	return nil
}

// receiver owns the link sessions: one per connect, each with a goroutine
// per rx queue. Sessions start in OnConnect and end in OnDisconnect, both on
// the driver goroutine, so two sessions never share a queue.
type receiver struct {
	cfg   config
	st    *stats
	errs  chan error // failures of queue goroutines
	done  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	sess  *session
	final bool // no new sessions: we are shutting down
}

type session struct {
	stop        atomic.Bool
	wg          sync.WaitGroup
	first, last atomic.Int64 // unix ns of the first and latest burst: rates ignore idle links
}

func run(cfg config, st *stats) error {
	sock, err := memif.CreateSocket(&memif.SocketArgs{Path: cfg.socket, AppName: "memif-go-receiver",
		ConnectionRequestTimer: cfg.retry})
	if err != nil {
		return err
	}
	defer sock.Delete()
	r := &receiver{cfg: cfg, st: st, errs: make(chan error, 64), done: make(chan struct{})}
	args := memif.ConnArgs{Socket: sock, Secret: cfg.secret, IsMaster: !cfg.slave, InterfaceID: uint32(cfg.id),
		NumS2MRings: uint8(cfg.queues), NumM2SRings: uint8(cfg.queues), BufferSize: uint16(cfg.bufferSize),
		Log2RingSize: uint8(cfg.log2Ring), InterfaceName: "receiver",
		OnConnect: r.onConnect, OnDisconnect: r.onDisconnect}
	conn, err := memif.Create(&args)
	if err != nil {
		return err
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	drv := exutil.Drive(sock)
	role := "master, listening"
	if cfg.slave {
		role = "slave, connecting"
	}
	fmt.Fprintf(os.Stderr, "%s: %s on %s\n", name, role, cfg.socket)
	runErr := r.loop(sigc, drv)

	// Give the last bursts back while the link is still up, so a sender
	// waiting for its rings to drain sees them consumed.
	r.mu.Lock()
	r.final = true
	r.mu.Unlock()
	r.endSession()
	// Stop the driver before Delete: the binding lets any goroutine into
	// the control path while a callback runs on the driver, so Delete must
	// not overlap one.
	drv.Stop()
	if err := conn.Delete(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// loop waits for the count, a signal or a failure, showing progress on a
// terminal meanwhile.
func (r *receiver) loop(sigc <-chan os.Signal, drv *exutil.Driver) error {
	_, err := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS)
	tty := err == nil
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	last, lastT := uint64(0), time.Now()
	defer func() {
		if tty {
			fmt.Fprint(os.Stderr, "\r\033[K")
		}
	}()
	for {
		select {
		case <-r.done:
			return nil
		case s := <-sigc:
			fmt.Fprintf(os.Stderr, "%s: %v, stopping\n", name, s)
			return nil
		case err := <-r.errs:
			return err
		case err := <-drv.Errs:
			// Reported, not fatal: the driver keeps serving the link.
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		case now := <-tick.C:
			if !tty {
				continue
			}
			n := r.st.received.Load()
			fmt.Fprintf(os.Stderr, "\r\033[K%.3f Mpps  received %d  lost %d  reordered %d  corrupt %d",
				float64(n-last)/now.Sub(lastT).Seconds()/1e6, n,
				r.st.lost.Load(), r.st.reordered.Load(), r.st.corrupt.Load())
			last, lastT = n, now
		}
	}
}

func (r *receiver) onConnect(c *memif.Conn) error {
	d, err := c.Details()
	if err != nil {
		return err
	}
	bs := 0
	if len(d.RxQueues) > 0 {
		bs = int(d.RxQueues[0].BufferSize)
	}
	fmt.Fprintf(os.Stderr, "%s: link up: peer %q (%s), %d rx queue(s), %d-byte buffers\n",
		name, d.RemoteIfName, d.RemoteInstName, len(d.RxQueues), bs)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.final {
		return nil
	}
	s := &session{}
	for q := range d.RxQueues {
		efd, err := c.QueueEventFD(uint16(q))
		if err != nil {
			s.stop.Store(true)
			s.wg.Wait()
			return err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			runtime.LockOSThread()
			if err := r.receive(c, uint16(q), efd, s); err != nil {
				select {
				case r.errs <- fmt.Errorf("queue %d: %w", q, err):
				default:
				}
			}
		}()
	}
	r.sess = s
	return nil
}

func (r *receiver) onDisconnect(c *memif.Conn) error {
	msg := ""
	if d, err := c.Details(); err == nil && d.Error != "" {
		msg = ": " + d.Error
	}
	r.endSession()
	fmt.Fprintf(os.Stderr, "%s: link down%s (received %d so far)\n", name, msg, r.st.received.Load())
	return nil
}

// endSession stops the queue goroutines of the current session and waits.
func (r *receiver) endSession() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.sess; s != nil {
		s.stop.Store(true)
		s.wg.Wait()
		r.sess = nil
		if f := s.first.Load(); f != 0 {
			r.st.active.Add(s.last.Load() - f)
		}
	}
}

// receive verifies packets on queue q until the session stops or the link
// goes down. A sender starts every stream at 0 on each connect, so the
// tracker lives as long as the session.
func (r *receiver) receive(c *memif.Conn, q uint16, efd int, s *session) error {
	bufs, err := memif.NewBuffers(r.cfg.burst)
	if err != nil {
		return err
	}
	defer bufs.Free()
	var tr pkt.Tracker
	chain := make([]byte, 0, 1<<16) // a chain may span bursts: gathered here
	pfd := []unix.PollFd{{Fd: int32(efd), Events: unix.POLLIN}}
	st := r.st
	refill, idle := 0, 0
	for !s.stop.Load() {
		n, _, err := c.RefillRxBurst(q, refill, 0, bufs, bufs.Cap())
		if err != nil {
			if errors.Is(err, memif.ErrDisconnected) || errors.Is(err, memif.ErrDeleted) {
				return nil
			}
			return err
		}
		refill = n
		if n == 0 {
			// Spin briefly, then sleep on the queue's interrupt. Bounded:
			// rx_burst drains the eventfd after finding the ring empty, so
			// an interrupt for packets landing in between is lost.
			if idle++; idle < 64 {
				runtime.Gosched()
			} else {
				unix.Poll(pfd, 10)
			}
			continue
		}
		idle = 0
		now := time.Now().UnixNano()
		s.first.CompareAndSwap(0, now)
		s.last.Store(now)
		var pkts, bytes, corrupt uint64
		lost, reordered := tr.Lost, tr.Reordered
		for i := 0; i < n; i++ {
			var frame []byte
			if bufs.HasNext(i) || len(chain) > 0 {
				if chain = append(chain, bufs.Data(i)...); bufs.HasNext(i) && len(chain) <= 0xffff {
					continue
				}
				frame = chain
			} else {
				frame = bufs.Data(i) // verified in place, in shared memory
			}
			pkts++
			bytes += uint64(len(frame))
			stream, seq, err := pkt.Check(frame)
			chain = chain[:0]
			if err != nil || stream != q {
				corrupt++
				continue
			}
			tr.See(seq)
		}
		st.bytes.Add(bytes)
		st.corrupt.Add(corrupt)
		st.lost.Add(tr.Lost - lost) // wraps to a decrement when a late packet fills a gap
		st.reordered.Add(tr.Reordered - reordered)
		total := st.received.Add(pkts)
		if r.cfg.count > 0 && total >= r.cfg.count {
			r.once.Do(func() { close(r.done) })
		}
	}
	// Give the last burst back: the sender counts its ring drained by it.
	if err := c.RefillQueue(q, refill, 0); err != nil && !errors.Is(err, memif.ErrDisconnected) &&
		!errors.Is(err, memif.ErrDeleted) {
		return err
	}
	return nil
}
