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
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/memif-go/memif"
	"github.com/memif-go/memif/internal/exflag"
	"github.com/memif-go/memif/internal/pkt"
	"golang.org/x/sys/unix"
)

const name = "receiver"

type config struct {
	link  exflag.Link
	count uint64
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
	cfg.link.Register(flag.CommandLine, "", exflag.Defaults{Role: exflag.SlaveFlag, Socket: "@memif-go-traffic",
		Peer: "the sender's", QueuesHelp: "queues: as slave, how many to ask for; as master, the most to accept", Ring: true,
		Burst: 256, MaxBurst: 4096, BurstHelp: "rx batch size (1..4096)",
		Retry: 100 * time.Millisecond, RetryHelp: "as slave, connection request period while no master listens"})
	flag.Uint64Var(&cfg.count, "c", 0, "exit once this many packets arrived (0: run until SIGINT/SIGTERM)")
	exflag.Parse(name, "usage: receiver [flags]\n\nReceives and verifies the traffic of examples/sender.\n\n", cfg.link.Validate)
	var st stats
	err := run(cfg, &st)
	fmt.Println(st.summary())
	exflag.Exit(name, 1, err)
	if st.bad() {
		os.Exit(1)
	}
}

// receiver counts what every queue handler verified.
type receiver struct {
	cfg         config
	st          *stats
	done        chan struct{} // closed once -c packets arrived
	once        sync.Once
	first, last atomic.Int64 // unix ns of the link's first and latest burst: rates ignore idle links
}

func run(cfg config, st *stats) error {
	r := &receiver{cfg: cfg, st: st, done: make(chan struct{})}
	var ep *memif.Endpoint
	ep, err := memif.NewEndpoint(memif.EndpointConfig{
		Socket: cfg.link.SocketArgs("memif-go-receiver"),
		Conn:   cfg.link.ConnArgs("receiver"),
		Mode:   memif.WaitAdaptive, Batch: cfg.link.Burst, Reconnect: cfg.link.Retry,
		OnError: func(err error) { fmt.Fprintf(os.Stderr, "%s: %v\n", name, err) },
		OnLinkUp: func(l memif.Link) {
			d, _ := ep.Details()
			fmt.Fprintf(os.Stderr, "%s: link up: peer %q (%s), %d rx queue(s), %d-byte buffers\n",
				name, d.RemoteIfName, d.RemoteInstName, l.RxQueues, l.BufferSize)
		},
		OnLinkDown: func(memif.Link) { // every handler has returned
			if f := r.first.Swap(0); f != 0 {
				st.active.Add(r.last.Load() - f)
			}
			fmt.Fprintf(os.Stderr, "%s: link down (received %d so far)\n", name, st.received.Load())
		},
	}, r.receive)
	if err != nil {
		return err
	}
	role := "master, listening"
	if !cfg.link.Master {
		role = "slave, connecting"
	}
	fmt.Fprintf(os.Stderr, "%s: %s on %s\n", name, role, cfg.link.Socket)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-r.done:
			cancel()
		case <-ctx.Done():
			fmt.Fprintf(os.Stderr, "%s: stopping\n", name)
		}
	}()
	go progress(ctx, st)
	return ep.Run(ctx)
}

// progress shows a live line on a terminal.
func progress(ctx context.Context, st *stats) {
	if _, err := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS); err != nil {
		return
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	last, lastT := uint64(0), time.Now()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprint(os.Stderr, "\r\033[K")
			return
		case now := <-tick.C:
			n := st.received.Load()
			fmt.Fprintf(os.Stderr, "\r\033[K%.3f Mpps  received %d  lost %d  reordered %d  corrupt %d",
				float64(n-last)/now.Sub(lastT).Seconds()/1e6, n, st.lost.Load(), st.reordered.Load(), st.corrupt.Load())
			last, lastT = n, now
		}
	}
}

// receive is the Endpoint's handler: it verifies packets on queue q until
// the link goes down. A sender starts every stream at 0 on each connect,
// so the tracker lives as long as the link.
func (r *receiver) receive(ctx context.Context, q *memif.Queue) error {
	var tr pkt.Tracker
	chain := make([]byte, 0, 1<<16) // a chain may span bursts: gathered here
	st, id := r.st, uint16(q.ID())
	for {
		n, err := q.Receive(ctx)
		if err != nil {
			return err // the link went down (not counted as a failure) or worse
		}
		now := time.Now().UnixNano()
		r.first.CompareAndSwap(0, now)
		r.last.Store(now)
		if q.Rx().ChainCut() { // the guard dropped the rest of the chain gathered
			chain = chain[:0]
		}
		rx := q.Rx().Batch(n) // checked once for the whole burst
		var pkts, bytes, corrupt uint64
		lost, reordered := tr.Lost, tr.Reordered
		for i := range rx.Len() {
			frame := rx.Data(i) // verified in place, in shared memory
			if rx.HasNext(i) || len(chain) > 0 {
				if chain = append(chain, frame...); rx.HasNext(i) && len(chain) <= 0xffff {
					continue
				}
				frame = chain
			}
			pkts++
			bytes += uint64(len(frame))
			stream, seq, err := pkt.Check(frame)
			chain = chain[:0]
			if err != nil || stream != id {
				corrupt++
				continue
			}
			tr.See(seq)
		}
		st.bytes.Add(bytes)
		st.corrupt.Add(corrupt)
		st.lost.Add(tr.Lost - lost) // wraps to a decrement when a late packet fills a gap
		st.reordered.Add(tr.Reordered - reordered)
		if total := st.received.Add(pkts); r.cfg.count > 0 && total >= r.cfg.count {
			// Give the last burst back while the link is up: the sender
			// waits for its rings to drain.
			q.Release()
			r.once.Do(func() { close(r.done) })
		}
	}
}
