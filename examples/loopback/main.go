// Command loopback is memif-go's first demo: one process, a master and a
// slave on one abstract socket, packets sent master->slave on every queue and
// verified one by one (sequence number and CRC-32C). No peer needed.
//
//	./build.sh demo -count 5000000 -size 64 -burst 64 -queues 2   (or, in examples/, go run ./loopback ...)
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/memif-go/memif"
	"github.com/memif-go/memif/internal/pkt"
	"golang.org/x/sys/unix"
)

type config struct {
	count    uint64
	duration time.Duration
	size     int
	burst    int
	queues   int
	copyMode bool
	socket   string
}

type counters struct {
	sent, received, corrupt, lost, reordered atomic.Uint64
}

func main() {
	var cfg config
	flag.Uint64Var(&cfg.count, "count", 2_000_000, "packets to send per queue (0: run for -duration)")
	flag.DurationVar(&cfg.duration, "duration", 0, "run this long instead of a packet count")
	flag.IntVar(&cfg.size, "size", 64, "frame size in bytes (16..65535)")
	flag.IntVar(&cfg.burst, "burst", 64, "packets per burst (1..256)")
	flag.IntVar(&cfg.queues, "queues", 1, "queue pairs, one sender and one receiver goroutine each (1..16)")
	flag.BoolVar(&cfg.copyMode, "copy", false, "copy packets in and out of Go memory instead of zero-copy")
	flag.StringVar(&cfg.socket, "socket", fmt.Sprintf("@memif-go-loopback-%d", os.Getpid()), "socket path ('@' = abstract)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: loopback [flags]\n\nMoves verified packets between a memif master and slave in this process.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "loopback:", err)
		os.Exit(2)
	}
	var c counters
	elapsed, err := run(cfg, &c)
	sent, recv := c.sent.Load(), c.received.Load()
	bits := float64(recv) * float64(cfg.size) * 8
	fmt.Printf("packets sent %d received %d in %.2fs: %.2f Mpps, %.2f Gbit/s; drops %d, reordered %d, corrupt %d\n",
		sent, recv, elapsed.Seconds(), float64(recv)/elapsed.Seconds()/1e6, bits/elapsed.Seconds()/1e9,
		sent-recv, c.reordered.Load(), c.corrupt.Load())
	if err != nil {
		fmt.Fprintln(os.Stderr, "loopback:", err)
		os.Exit(1)
	}
	if c.corrupt.Load() != 0 || sent != recv || c.lost.Load() != 0 {
		os.Exit(1)
	}
}

func (cfg *config) validate() error {
	switch {
	case cfg.size < pkt.HeaderLen || cfg.size > 65535:
		return fmt.Errorf("-size %d is outside %d..65535", cfg.size, pkt.HeaderLen)
	case cfg.burst < 1 || cfg.burst > 256:
		return fmt.Errorf("-burst %d is outside 1..256", cfg.burst)
	case cfg.queues < 1 || cfg.queues > 16:
		return fmt.Errorf("-queues %d is outside 1..16", cfg.queues)
	case cfg.count == 0 && cfg.duration <= 0:
		return errors.New("give -count or -duration")
	}
	return nil
}

func run(cfg config, c *counters) (time.Duration, error) {
	sock, err := memif.CreateSocket(&memif.SocketArgs{Path: cfg.socket, AppName: "memif-go-loopback"})
	if err != nil {
		return 0, err
	}
	defer sock.Delete()
	// Buffers hold a whole frame: no chains in this demo.
	bufSize := uint16(max(2048, (cfg.size+127)&^127))
	up := make(chan *memif.Conn, 2)
	args := memif.ConnArgs{Socket: sock, NumS2MRings: uint8(cfg.queues), NumM2SRings: uint8(cfg.queues),
		BufferSize: bufSize, Log2RingSize: 11, InterfaceName: "loopback",
		OnConnect: func(c *memif.Conn) error { up <- c; return nil }}
	margs := args
	margs.IsMaster = true
	master, err := memif.Create(&margs)
	if err != nil {
		return 0, err
	}
	defer master.Delete()
	slave, err := memif.Create(&args)
	if err != nil {
		return 0, err
	}
	defer slave.Delete()

	// This goroutine drives the control path until both ends are up, then
	// polls lightly in the background for link events.
	deadline := time.Now().Add(5 * time.Second)
	for n := 0; n < 2; {
		if err := sock.PollEvent(100 * time.Millisecond); err != nil {
			return 0, err
		}
		select {
		case <-up:
			n++
		default:
		}
		if time.Now().After(deadline) {
			return 0, errors.New("master and slave did not connect within 5s")
		}
	}
	stopCtl := make(chan struct{})
	ctlDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stopCtl:
				ctlDone <- nil
				return
			default:
			}
			if err := sock.PollEvent(50 * time.Millisecond); err != nil {
				ctlDone <- err
				return
			}
		}
	}()

	var stop atomic.Bool
	if cfg.duration > 0 {
		time.AfterFunc(cfg.duration, func() { stop.Store(true) })
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 2*cfg.queues)
	var sendersLeft atomic.Int32
	sendersLeft.Store(int32(cfg.queues))
	for q := 0; q < cfg.queues; q++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer sendersLeft.Add(-1)
			runtime.LockOSThread()
			errs <- send(master, uint16(q), cfg, &stop, c)
		}()
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			errs <- receive(slave, uint16(q), cfg, func() bool { return sendersLeft.Load() == 0 }, c)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	progress(done, start, c)
	elapsed := time.Since(start)
	close(stopCtl)
	close(errs)
	var firstErr error
	for err := range errs {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if err := <-ctlDone; err != nil && firstErr == nil {
		firstErr = err
	}
	return elapsed, firstErr
}

// send transmits frames on queue q until the count is reached or stop.
func send(conn *memif.Conn, q uint16, cfg config, stop *atomic.Bool, c *counters) error {
	bufs, err := memif.NewBuffers(cfg.burst)
	if err != nil {
		return err
	}
	defer bufs.Free()
	scratch := make([]byte, cfg.size)
	var seq uint64
	for (cfg.count == 0 || seq < cfg.count) && !stop.Load() {
		want := cfg.burst
		if cfg.count > 0 {
			want = int(min(uint64(want), cfg.count-seq))
		}
		n, err := conn.BufferAlloc(q, bufs, want, uint16(cfg.size))
		if err != nil && !errors.Is(err, memif.ErrNoBufRing) {
			return err
		}
		if n == 0 {
			runtime.Gosched() // ring full: the receiver is behind
			continue
		}
		for i := 0; i < n; i++ {
			if cfg.copyMode {
				pkt.Fill(scratch, q, seq+uint64(i))
				copy(bufs.Data(i), scratch)
			} else {
				pkt.Fill(bufs.Data(i), q, seq+uint64(i)) // written in shared memory
			}
		}
		if _, err := conn.TxBurst(q, bufs, n); err != nil {
			return err
		}
		seq += uint64(n)
		c.sent.Add(uint64(n))
	}
	return nil
}

// receive verifies frames on queue q until the senders are done and the
// ring is drained.
func receive(conn *memif.Conn, q uint16, cfg config, sendersDone func() bool, c *counters) error {
	bufs, err := memif.NewBuffers(256)
	if err != nil {
		return err
	}
	defer bufs.Free()
	scratch := make([]byte, 0, 65536)
	var tr pkt.Tracker
	refill, idle := 0, 0
	for {
		n, _, err := conn.RefillRxBurst(q, refill, 0, bufs, bufs.Cap())
		if err != nil {
			return err
		}
		refill = n
		if n == 0 {
			// Drained: finish once the senders stopped and a few more polls
			// found nothing (the last burst may still be landing).
			if sendersDone() {
				if idle++; idle > 1000 {
					break
				}
			}
			runtime.Gosched()
			continue
		}
		idle = 0
		var corrupt, lost, reordered uint64
		for i := 0; i < n; i++ {
			frame := bufs.Data(i)
			if cfg.copyMode {
				frame = append(scratch[:0], frame...)
			}
			stream, seq, err := pkt.Check(frame)
			if err != nil || stream != q {
				corrupt++
				continue
			}
			l, r := tr.Lost, tr.Reordered
			tr.See(seq)
			lost += tr.Lost - l
			reordered += tr.Reordered - r
		}
		c.received.Add(uint64(n) - corrupt)
		c.corrupt.Add(corrupt)
		c.lost.Add(lost)
		c.reordered.Add(reordered)
	}
	return conn.RefillQueue(q, refill, 0)
}

// progress prints one live line on a terminal until done.
func progress(done <-chan struct{}, start time.Time, c *counters) {
	_, err := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS)
	tty := err == nil
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var last uint64
	lastT := start
	for {
		select {
		case <-done:
			if tty {
				fmt.Fprint(os.Stderr, "\r\033[K")
			}
			return
		case now := <-tick.C:
			if !tty {
				continue
			}
			r := c.received.Load()
			fmt.Fprintf(os.Stderr, "\r\033[K%.2f Mpps  packets %d  errors %d",
				float64(r-last)/now.Sub(lastT).Seconds()/1e6, r, c.corrupt.Load()+c.lost.Load())
			last, lastT = r, now
		}
	}
}
