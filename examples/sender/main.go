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
	"context"
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
	"github.com/memif-go/memif/internal/exflag"
	"github.com/memif-go/memif/internal/pkt"
)

const name = "sender"

type config struct {
	link     exflag.Link
	size     int
	rate     float64
	duration time.Duration
	count    uint64
	wait     time.Duration
	drain    time.Duration
}

type stats struct {
	sent, bytes, retries atomic.Uint64
	// The clock starts when the first queue starts sending, not when run
	// sees the link: a slow WaitUp must not shorten the measured time.
	startOnce sync.Once
	start     time.Time
}

func main() {
	var cfg config
	cfg.link.Register(flag.CommandLine, "", exflag.Defaults{Socket: "@memif-go-traffic", Peer: "the receiver's",
		QueuesHelp: "tx queues, one stream each (as master: the most to accept)", Ring: true,
		Burst: 32, MaxBurst: 256, BurstHelp: "packets per burst (1..256)",
		Retry: 100 * time.Millisecond, RetryHelp: "as slave, connection request period while no master listens"})
	flag.IntVar(&cfg.size, "size", 64, fmt.Sprintf("frame size in bytes (%d..9000; chained when over the buffer size)", pkt.HeaderLen))
	flag.Float64Var(&cfg.rate, "rate", 0, "packets per second over all queues (0: as fast as possible)")
	flag.DurationVar(&cfg.duration, "duration", 0, "send for this long (0: until -count)")
	flag.Uint64Var(&cfg.count, "count", 1_000_000, "packets per queue (0: until -duration)")
	flag.DurationVar(&cfg.wait, "wait", 10*time.Second, "how long to wait for the link")
	flag.DurationVar(&cfg.drain, "drain", 10*time.Second, "how long to wait for the receiver to consume the rings")
	exflag.Parse(name, "usage: sender [flags]\n\nSends verifiable traffic to examples/receiver.\n\n", cfg.validate)
	var st stats
	elapsed, err := run(cfg, &st)
	var mpps, gbps float64
	if sec := elapsed.Seconds(); sec > 0 {
		mpps = float64(st.sent.Load()) / sec / 1e6
		gbps = float64(st.bytes.Load()) * 8 / sec / 1e9
	}
	fmt.Printf("sent %d bytes %d seconds %.3f mpps %.3f gbps %.3f retries %d\n",
		st.sent.Load(), st.bytes.Load(), elapsed.Seconds(), mpps, gbps, st.retries.Load())
	exflag.Exit(name, 1, err)
}

func (cfg *config) validate() error {
	switch {
	case cfg.rate < 0:
		return fmt.Errorf("-rate %v is negative", cfg.rate)
	case cfg.count == 0 && cfg.duration <= 0:
		return errors.New("give -count or -duration")
	}
	return exflag.First(exflag.InRange("size", cfg.size, pkt.HeaderLen, 9000),
		exflag.Positive("-wait and -drain", cfg.wait, cfg.drain), cfg.link.Validate())
}

func run(cfg config, st *stats) (time.Duration, error) {
	// The link's end: a receiver that consumed everything and left is a
	// success; the rings are still mapped while OnLinkDown runs.
	var pendingAtDown atomic.Int64
	pendingAtDown.Store(-1)
	var stop atomic.Bool
	finished := make(chan struct{}, 256) // a handler stopped sending
	var ep *memif.Endpoint
	errs := make(chan error, 256)
	ep, err := memif.NewEndpoint(memif.EndpointConfig{
		Socket:    cfg.link.SocketArgs("memif-go-sender"),
		Conn:      cfg.link.ConnArgs("sender"),
		Reconnect: cfg.link.Retry,
		OnLinkUp: func(l memif.Link) {
			if !cfg.link.Master { // one run, one link: no reconnect behind our back
				ep.Loop().Socket().SetConnectionRequestTimer(0)
			}
		},
		OnLinkDown: func(memif.Link) {
			if n, err := ep.TxPending(); err == nil { // still mapped here
				pendingAtDown.Store(int64(n))
			}
			fmt.Fprintf(os.Stderr, "%s: link down\n", name)
		},
	}, func(ctx context.Context, q *memif.Queue) error {
		defer func() { finished <- struct{}{} }()
		if err := send(ctx, q, cfg, &stop, st); err != nil {
			errs <- fmt.Errorf("queue %d: %w", q.ID(), err)
			stop.Store(true)
		}
		return nil // sent: no restart
	})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- ep.Run(ctx) }()
	defer func() { cancel(); <-ran }()

	fmt.Fprintf(os.Stderr, "%s: waiting for link on %s\n", name, cfg.link.Socket)
	up, upCancel := context.WithTimeout(ctx, cfg.wait)
	l, err := ep.WaitUp(up)
	upCancel()
	if err != nil {
		err = fmt.Errorf("no connection within %v", cfg.wait)
		// A refused handshake (secret, id) is no link down: the reason is
		// only in the details.
		if d, derr := ep.Details(); derr == nil && d.Error != "" {
			err = fmt.Errorf("%w (last handshake failed: %s)", err, d.Error)
		}
		return 0, err
	}
	d, _ := ep.Details()
	fmt.Fprintf(os.Stderr, "%s: link up: peer %q (%s), %d tx queue(s), %d-byte buffers\n",
		name, d.RemoteIfName, d.RemoteInstName, l.TxQueues, l.BufferSize)

	if cfg.duration > 0 {
		t := time.AfterFunc(cfg.duration, func() { stop.Store(true) })
		defer t.Stop()
	}
	sig, stopSig := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stopSig()
	context.AfterFunc(sig, func() { stop.Store(true) })
	for range l.TxQueues {
		<-finished
	}
	elapsed := time.Since(st.start) // set before each handler's finished send
	select {
	case err := <-errs:
		return elapsed, err
	default:
	}
	drain, cancelDrain := context.WithTimeout(ctx, cfg.drain)
	defer cancelDrain()
	if err := ep.Drain(drain); !errors.Is(err, memif.ErrDisconnected) {
		return elapsed, err
	}
	// Details run on the loop goroutine, after OnLinkDown recorded this.
	switch n := pendingAtDown.Load(); {
	case n == 0:
		return elapsed, nil
	case n > 0:
		return elapsed, fmt.Errorf("link went down with %d buffers not consumed", n)
	}
	return elapsed, errors.New("link went down before the tx rings drained")
}

// send transmits on queue q until the count, the duration or a stop:
// zero-copy, built in place in shared memory.
func send(ctx context.Context, q *memif.Queue, cfg config, stop *atomic.Bool, st *stats) error {
	st.startOnce.Do(func() { st.start = time.Now() })
	l := q.Link()
	segs := (cfg.size + l.BufferSize - 1) / l.BufferSize // buffers per packet
	scratch := make([]byte, cfg.size)                    // chained frames are built here, then copied
	var p *pacer
	if cfg.rate > 0 {
		p = newPacer(cfg.rate/float64(l.TxQueues), cfg.link.Burst)
	}
	id := uint16(q.ID())
	var seq, retries uint64
	for (cfg.count == 0 || seq < cfg.count) && !stop.Load() && ctx.Err() == nil {
		want := cfg.link.Burst
		if cfg.count > 0 {
			want = int(min(uint64(want), cfg.count-seq))
		}
		if p != nil {
			if want = p.take(want, stop); want == 0 {
				break
			}
		}
		n, err := q.Alloc(want, cfg.size)
		if err != nil {
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
		tx := q.Tx()
		for i, j := 0, 0; i < k; i++ {
			if segs == 1 {
				pkt.Fill(tx.Data(i), id, seq+uint64(i)) // in place, in shared memory
				continue
			}
			pkt.Fill(scratch, id, seq+uint64(i))
			end, _ := tx.PacketEnd(j, n)
			for off := 0; j < end; j++ {
				off += copy(tx.Data(j), scratch[off:])
			}
		}
		if sent, err := q.Send(n); err != nil || sent != k {
			return fmt.Errorf("sent %d of %d packets: %v", sent, k, err)
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
