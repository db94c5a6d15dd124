// Command bridge forwards frames between two memif interfaces, A and B, each
// an Endpoint on its own socket: what arrives on a queue of A leaves on the
// queue of that number on B, and the other way round, one handler
// goroutine per queue.
//
//	bridge -a-socket /run/vpp/memif.sock -b-socket @app -b-role master -stats 1s
//
// Frames are copied once, ring to ring, by Queue.Forward (Conn.Forward:
// receive, allocate, copy, send and refill in one cgo crossing per burst).
// memif_buffer_enq_tx (BufferEnqTx) only moves rx buffers of a connection
// onto a tx ring of the same connection: A and B have separate
// shared-memory regions, so zero-copy between them is not possible
// whatever the roles. Chains are reassembled and cut again to the other
// side's buffer size.
//
// A full tx ring holds the rx side back (backpressure) for up to -tx-wait,
// then the frames are dropped; frames for a side whose link is down are
// dropped at once. Counters go to stdout every -stats and at exit:
//
//	total: a->b forwarded N ring-full R down D | b->a forwarded N ring-full R down D
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/memif-go/memif"
	"github.com/memif-go/memif/internal/exflag"
)

const name = "bridge"

type config struct {
	a, b   exflag.Link
	stats  time.Duration
	txWait time.Duration
	burst  int
	retry  time.Duration
}

func main() {
	var cfg config
	side := exflag.Defaults{Role: exflag.RoleFlag, QueuesHelp: "queue pairs to ask for as slave (a master takes the slave's count)"}
	cfg.a.Register(flag.CommandLine, "a-", side)
	cfg.b.Register(flag.CommandLine, "b-", side)
	flag.DurationVar(&cfg.stats, "stats", time.Second, "print counters at this interval (0: only at exit)")
	flag.DurationVar(&cfg.txWait, "tx-wait", 100*time.Millisecond, "how long a full tx ring may hold the rx side back before frames are dropped")
	flag.IntVar(&cfg.burst, "burst", 256, "rx batch size (1..4096)")
	flag.DurationVar(&cfg.retry, "retry", 100*time.Millisecond, "connection request period of a slave while its master is away")
	exflag.Parse(name, "usage: bridge -a-socket PATH -b-socket PATH [flags]\n\nForwards frames between two memif interfaces.\n\n", func() error {
		if err := exflag.First(cfg.a.Validate(), cfg.b.Validate()); err != nil {
			return err
		}
		switch {
		case cfg.burst < 1 || cfg.burst > 4096:
			return fmt.Errorf("-burst %d is outside 1..4096", cfg.burst)
		case cfg.stats < 0 || cfg.txWait < 0 || cfg.retry <= 0:
			return errors.New("-stats and -tx-wait must not be negative, -retry must be positive")
		}
		return nil
	})
	exflag.Exit(name, 1, run(cfg))
}

// counters are one direction's totals, in frames. Drops: ring-full (the
// peer did not free tx buffers within -tx-wait), down (a link was down),
// oversize (buffers of frames Forward could not carry: beyond the 65535
// bytes one packet can hold, or refused by the descriptor guard).
type counters struct {
	forwarded, ringFull, down, oversize atomic.Uint64
}

func (c *counters) String() string {
	return fmt.Sprintf("forwarded %d ring-full %d down %d oversize %d",
		c.forwarded.Load(), c.ringFull.Load(), c.down.Load(), c.oversize.Load())
}

// side is one interface; to is the other, where its frames go.
type side struct {
	name string
	ep   *memif.Endpoint
	to   *side
	ctr  counters // frames from this side to the other
}

func run(cfg config) error {
	a, b := &side{name: "a"}, &side{name: "b"}
	a.to, b.to = b, a
	for _, s := range []*side{a, b} {
		if err := s.open(cfg); err != nil {
			return err
		}
		defer s.ep.Close()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ran := make(chan error, 2)
	for _, s := range []*side{a, b} {
		go func() { ran <- s.ep.Run(ctx) }()
	}
	line := func() string { return fmt.Sprintf("a->b %v | b->a %v", &a.ctr, &b.ctr) }
	var tick <-chan time.Time
	if cfg.stats > 0 {
		t := time.NewTicker(cfg.stats)
		defer t.Stop()
		tick = t.C
	}
	var err error
	for done := 0; done < 2; {
		select {
		case <-ctx.Done():
			fmt.Fprintf(os.Stderr, "%s: stopping\n", name)
			for ; done < 2; done++ {
				if e := <-ran; err == nil {
					err = e
				}
			}
		case err = <-ran:
			done++
			stop() // one side failed: end the other
		case <-tick:
			fmt.Println(line())
		}
	}
	fmt.Println("total: " + line())
	return err
}

// open creates the side's Endpoint on its own socket.
func (s *side) open(cfg config) error {
	c := cfg.a
	if s.name == "b" {
		c = cfg.b
	}
	var err error
	s.ep, err = memif.NewEndpoint(memif.EndpointConfig{
		Socket: c.SocketArgs("memif-go-bridge"),
		Conn:   c.ConnArgs("bridge-" + s.name),
		Mode:   memif.WaitAdaptive, Batch: cfg.burst, Reconnect: cfg.retry,
		OnError: func(err error) { fmt.Fprintf(os.Stderr, "%s: %s: %v\n", name, s.name, err) },
		OnLinkUp: func(l memif.Link) {
			fmt.Fprintf(os.Stderr, "%s: %s up: %d rx / %d tx queue(s), %d-byte buffers\n",
				name, s.name, l.RxQueues, l.TxQueues, l.BufferSize)
		},
		OnLinkDown: func(memif.Link) { fmt.Fprintf(os.Stderr, "%s: %s down\n", name, s.name) },
	}, func(ctx context.Context, q *memif.Queue) error { return s.forward(ctx, q, cfg.txWait) })
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	fmt.Fprintf(os.Stderr, "%s: %s: %s on %s\n", name, s.name, map[bool]string{false: "slave", true: "master"}[c.Master], c.Socket)
	return nil
}

// forward is the handler of each of the side's queues: Queue.Forward moves
// every frame received to the other side's tx queue of the same number
// (modulo its queue count), one cgo crossing per burst, each frame copied
// once from ring to ring. A full tx ring holds this queue back up to
// txWait, then those frames are dropped; frames for a side that is down
// are dropped at once.
func (s *side) forward(ctx context.Context, q *memif.Queue, txWait time.Duration) error {
	for {
		txq := q.ID()
		if l, up := s.to.ep.Link(); up {
			txq %= l.TxQueues
		}
		sent, drops, err := q.Forward(ctx, s.to.ep, txq, txWait)
		s.ctr.forwarded.Add(uint64(sent))
		s.ctr.ringFull.Add(drops.RingFull)
		s.ctr.down.Add(drops.LinkDown)
		s.ctr.oversize.Add(drops.Oversize)
		if err != nil {
			return err // the link went down (not counted as a failure) or worse
		}
	}
}
