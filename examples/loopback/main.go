// Command loopback is memif-go's first demo: one process, a master and a
// slave on one abstract socket, packets sent master->slave on every queue and
// verified one by one (sequence number and CRC-32C). No peer needed.
//
//	./build.sh demo -count 5000000 -size 64 -burst 64 -queues 2   (or, in examples/, go run ./loopback ...)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/memif-go/memif"
	"github.com/memif-go/memif/internal/exflag"
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
	exflag.Parse("loopback", "usage: loopback [flags]\n\nMoves verified packets between a memif master and slave in this process.\n\n", cfg.validate)
	var c counters
	elapsed, err := run(cfg, &c)
	sent, recv := c.sent.Load(), c.received.Load()
	bits := float64(recv) * float64(cfg.size) * 8
	fmt.Printf("packets sent %d received %d in %.2fs: %.2f Mpps, %.2f Gbit/s; drops %d, reordered %d, corrupt %d\n",
		sent, recv, elapsed.Seconds(), float64(recv)/elapsed.Seconds()/1e6, bits/elapsed.Seconds()/1e9,
		sent-recv, c.reordered.Load(), c.corrupt.Load())
	exflag.Exit("loopback", 1, err)
	if c.corrupt.Load() != 0 || sent != recv || c.lost.Load() != 0 {
		os.Exit(1)
	}
}

func (cfg *config) validate() error {
	if cfg.count == 0 && cfg.duration <= 0 {
		return errors.New("give -count or -duration")
	}
	return exflag.First(exflag.InRange("size", cfg.size, pkt.HeaderLen, 65535),
		exflag.InRange("burst", cfg.burst, 1, 256), exflag.InRange("queues", cfg.queues, 1, 16))
}

func run(cfg config, c *counters) (time.Duration, error) {
	loop, err := memif.NewLoop(&memif.LoopArgs{Socket: memif.SocketArgs{Path: cfg.socket, AppName: "memif-go-loopback"}})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loopDone := make(chan error, 1)
	go func() { loopDone <- loop.Run(ctx) }()

	// Buffers hold a whole frame: no chains in this demo.
	args := memif.ConnArgs{NumS2MRings: uint8(cfg.queues), NumM2SRings: uint8(cfg.queues),
		BufferSize: uint16(max(2048, (cfg.size+127)&^127)), Log2RingSize: 11, InterfaceName: "loopback"}
	margs := args
	margs.IsMaster = true
	var stop atomic.Bool
	if cfg.duration > 0 {
		time.AfterFunc(cfg.duration, func() { stop.Store(true) })
	}
	// sent[q] ends when queue q's sender is done: its receiver then drains.
	sent := make([]context.Context, cfg.queues)
	sentDone := make([]context.CancelFunc, cfg.queues)
	for q := range sent {
		sent[q], sentDone[q] = context.WithCancel(ctx)
	}
	errs := make(chan error, 2*cfg.queues)
	var received sync.WaitGroup
	received.Add(cfg.queues)
	// Handlers report errors here instead of returning them: the Endpoint
	// would restart them, and the counts would start over.
	master, err := memif.NewEndpoint(memif.EndpointConfig{Loop: loop, Conn: margs, Mode: memif.WaitPoll},
		func(ctx context.Context, q *memif.Queue) error {
			errs <- send(ctx, q, cfg, &stop, c)
			sentDone[q.ID()]()
			return nil
		})
	if err != nil {
		return 0, err
	}
	slave, err := memif.NewEndpoint(memif.EndpointConfig{Loop: loop, Conn: args, Mode: memif.WaitPoll, Batch: 256},
		func(ctx context.Context, q *memif.Queue) error {
			errs <- receive(sent[q.ID()], q, cfg, c)
			received.Done()
			return nil
		})
	if err != nil {
		return 0, err
	}
	for _, ep := range []*memif.Endpoint{master, slave} {
		go ep.Run(ctx)
		defer ep.Close()
	}
	up, upCancel := context.WithTimeout(ctx, 5*time.Second)
	defer upCancel()
	if _, err := slave.WaitUp(up); err != nil {
		return 0, errors.New("master and slave did not connect within 5s")
	}
	start := time.Now()
	done := make(chan struct{})
	go func() { received.Wait(); close(done) }()
	progress(done, start, c)
	elapsed := time.Since(start)
	cancel()
	err = <-loopDone
	for range 2 * cfg.queues {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	return elapsed, err
}

// send transmits frames on queue q until the count is reached or stop.
func send(ctx context.Context, q *memif.Queue, cfg config, stop *atomic.Bool, c *counters) error {
	var seq uint64
	for (cfg.count == 0 || seq < cfg.count) && !stop.Load() {
		want := cfg.burst
		if cfg.count > 0 {
			want = int(min(uint64(want), cfg.count-seq))
		}
		var n int
		var err error
		if cfg.copyMode {
			for i := range want {
				pkt.Fill(q.Stage(cfg.size), uint16(q.ID()), seq+uint64(i)) // Go memory, copied by Flush
			}
			n, err = q.Flush(ctx)
		} else {
			n, err = q.Alloc(want, cfg.size)
			tx := q.Tx().Batch(n) // checked once for the whole burst
			for i := range tx.Len() {
				pkt.Fill(tx.Data(i), uint16(q.ID()), seq+uint64(i)) // written in shared memory
			}
			if err == nil {
				n, err = q.Send(n)
			}
		}
		if err != nil {
			return err
		}
		if n == 0 {
			runtime.Gosched() // ring full: the receiver is behind
		}
		seq += uint64(n)
		c.sent.Add(uint64(n))
	}
	return nil
}

// receive verifies frames on queue q until its sender is done (sent ends)
// and the ring is drained.
func receive(sent context.Context, q *memif.Queue, cfg config, c *counters) error {
	scratch := make([]byte, 0, 65536)
	var tr pkt.Tracker
	drained := false
	for {
		n, err := q.Receive(sent)
		if err != nil {
			if sent.Err() == nil {
				return err
			}
			// Done when a Receive begun after the sender finished found the
			// ring empty.
			if drained {
				return nil
			}
			drained = true
			continue
		}
		drained = false
		var corrupt, lost, reordered uint64
		rx := q.Rx().Batch(n)
		for i := range rx.Len() {
			frame := rx.Data(i)
			if cfg.copyMode {
				frame = append(scratch[:0], frame...)
			}
			stream, seq, err := pkt.Check(frame)
			if err != nil || stream != uint16(q.ID()) {
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
