// Command capture is a tcpdump for memif: it attaches to a memif socket
// (as slave by default, -master to listen) and writes every frame it
// receives, chains reassembled, to a pcap file (Ethernet link type, one
// timestamp per frame).
//
//	capture -socket /run/vpp/memif.sock -id 0 -w out.pcap -c 1000
//
// With -echo it also sends every frame back out of the same interface, so
// it can sit inline. As slave, single-buffer frames go back zero-copy
// (Queue.Echo moves the rx buffer onto the tx ring); chained frames, and
// all frames as master, are copied. A full tx ring holds reception back for
// up to -tx-wait, then echoes are dropped.
//
// It exits on SIGINT, SIGTERM or after -c frames, flushes the file and
// prints "captured N frames" (on stderr when writing the pcap to stdout).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/memif-go/memif"
	"github.com/memif-go/memif/internal/exflag"
)

const (
	name    = "capture"
	snaplen = 262144 // tcpdump's default: frames beyond are truncated in the file
)

type config struct {
	link   exflag.Link
	file   string
	count  uint64
	echo   bool
	txWait time.Duration
}

func main() {
	var cfg config
	cfg.link.Register(flag.CommandLine, "", exflag.Defaults{Socket: memif.DefaultSocketPath,
		QueuesHelp: "queue pairs to ask for as slave (a master takes the slave's count)",
		Burst:      256, MaxBurst: 4096, BurstHelp: "rx batch size (1..4096)",
		Retry: 100 * time.Millisecond, RetryHelp: "as slave, connection request period while no master listens"})
	flag.StringVar(&cfg.file, "w", "", "pcap file to write ('-': stdout)")
	flag.Uint64Var(&cfg.count, "c", 0, "exit after this many frames (0: until SIGINT/SIGTERM)")
	flag.BoolVar(&cfg.echo, "echo", false, "send every frame back out of the interface")
	flag.DurationVar(&cfg.txWait, "tx-wait", 100*time.Millisecond, "with -echo, how long a full tx ring may hold reception back before echoes are dropped")
	exflag.Parse(name, "usage: capture -w FILE [flags]\n\nWrites the frames a memif interface receives to a pcap file.\n\n", func() error {
		switch {
		case cfg.file == "":
			return errors.New("-w is required")
		case cfg.txWait < 0:
			return errors.New("-tx-wait must not be negative")
		}
		return cfg.link.Validate()
	})
	c := &capturer{cfg: cfg, full: make(chan struct{})}
	err := c.run()
	summary := os.Stdout
	if cfg.file == "-" {
		summary = os.Stderr
	}
	fmt.Fprintf(summary, "captured %d frames", c.captured.Load())
	if cfg.echo {
		fmt.Fprintf(summary, ", echoed %d (zero-copy %d), echo drops %d",
			c.echoed.Load(), c.zeroCopy.Load(), c.echoDrops.Load())
	}
	fmt.Fprintln(summary)
	exflag.Exit(name, 1, err)
}

// src is one received frame: rx buffers [i, end), or the queue's gathered
// chain (whole) when it began in an earlier burst.
type src struct {
	i, end, size int
	whole        bool
}

type capturer struct {
	cfg  config
	ep   *memif.Endpoint
	mu   sync.Mutex // the pcap writer: one burst at a time
	pw   *pcapgo.Writer
	full chan struct{} // closed when -c frames are in
	once sync.Once
	stop atomic.Bool // -c reached: nothing more is written or echoed

	captured, echoed, zeroCopy, echoDrops atomic.Uint64
}

func (c *capturer) run() error {
	var out io.Writer = os.Stdout
	if c.cfg.file != "-" {
		f, err := os.Create(c.cfg.file)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	c.pw = pcapgo.NewWriter(bw)
	if err := c.pw.WriteFileHeader(snaplen, layers.LinkTypeEthernet); err != nil {
		return err
	}
	var err error
	c.ep, err = memif.NewEndpoint(memif.EndpointConfig{
		Socket: c.cfg.link.SocketArgs("memif-go-capture"),
		Conn:   c.cfg.link.ConnArgs("capture"),
		Mode:   memif.WaitAdaptive, Batch: c.cfg.link.Burst, Reconnect: c.cfg.link.Retry,
		OnError: func(err error) { fmt.Fprintf(os.Stderr, "%s: %v\n", name, err) },
		OnLinkUp: func(l memif.Link) {
			fmt.Fprintf(os.Stderr, "%s: link up: %d rx queue(s), %d-byte buffers\n", name, l.RxQueues, l.BufferSize)
		},
		OnLinkDown: func(memif.Link) {
			fmt.Fprintf(os.Stderr, "%s: link down (%d frames so far)\n", name, c.captured.Load())
		},
	}, c.serve)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s: %s %s, writing %s\n", name, c.cfg.link.RoleText(), c.cfg.link.Socket, c.cfg.file)
	sig, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-c.full:
		case <-sig.Done():
			fmt.Fprintf(os.Stderr, "%s: stopping\n", name)
		}
		c.stop.Store(true)
		if c.cfg.echo { // let the peer take the last echoes off the rings
			drain, stopDrain := context.WithTimeout(context.Background(), time.Second)
			c.ep.Drain(drain)
			stopDrain()
		}
		cancel()
	}()
	err = c.ep.Run(ctx)
	c.mu.Lock() // a handler may still write until Run returned
	defer c.mu.Unlock()
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return err
}

// serve is the handler of each queue: it writes the frames received to the
// file and, with -echo, sends them back out of the same queue.
func (c *capturer) serve(ctx context.Context, q *memif.Queue) error {
	var st rxState
	for {
		n, err := q.Receive(ctx)
		if err != nil {
			return err // the link went down (not counted as a failure) or worse
		}
		if c.stop.Load() {
			continue
		}
		if err := c.frames(q.Rx(), n, &st); err != nil {
			return err
		}
		if c.cfg.echo {
			c.echo(ctx, q, &st)
		}
	}
}

// rxState is one queue's receive state.
type rxState struct {
	srcs  []src  // the frames of the burst at hand
	part  []byte // the head of a chain the last burst cut off
	whole []byte // that chain, once complete
	chain []byte // scratch for a chain within the burst
}

// frames writes the n buffers just received to the file and lists the
// frames in st.srcs.
func (c *capturer) frames(rx *memif.Buffers, n int, st *rxState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st.srcs = st.srcs[:0]
	if rx.ChainCut() { // the guard dropped the rest of the chain cut off last time
		st.part = st.part[:0]
	}
	for i := 0; i < n && !c.stop.Load(); {
		end, size := rx.PacketEnd(i, n)
		if rx.HasNext(end - 1) { // the chain goes on in the next burst
			st.part, _ = rx.AppendPacket(st.part, i, n)
			break
		}
		frame := rx.Data(i) // written straight from shared memory
		switch {
		case len(st.part) > 0: // the end of a chain cut off last time
			st.part, _ = rx.AppendPacket(st.part, i, n)
			st.whole, st.part = st.part, st.whole[:0]
			frame = st.whole
			st.srcs = append(st.srcs, src{size: len(frame), whole: true})
		case end-i > 1:
			st.chain, _ = rx.AppendPacket(st.chain[:0], i, n)
			frame = st.chain
			st.srcs = append(st.srcs, src{i: i, end: end, size: size})
		default:
			st.srcs = append(st.srcs, src{i: i, end: end, size: size})
		}
		ci := gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: min(len(frame), snaplen), Length: len(frame)}
		if err := c.pw.WritePacket(ci, frame[:ci.CaptureLength]); err != nil {
			return err
		}
		if total := c.captured.Add(1); c.cfg.count > 0 && total >= c.cfg.count {
			c.stop.Store(true) // nothing more is written; this burst's echoes still go
			c.once.Do(func() { close(c.full) })
		}
		i = end
	}
	return nil
}

// echo sends srcs back out of q: runs of single-buffer frames zero-copy on
// a slave, the rest copied, in order. A full ring holds reception back up
// to -tx-wait, then the echoes are dropped.
func (c *capturer) echo(ctx context.Context, q *memif.Queue, st *rxState) {
	rx, srcs := q.Rx(), st.srcs
	single := func(sr src) bool { return !sr.whole && sr.end-sr.i == 1 && sr.size > 0 }
	for j := 0; j < len(srcs); {
		if sr := srcs[j]; c.cfg.link.Master || !single(sr) {
			b := q.Stage(sr.size)
			switch {
			case b == nil:
				c.echoDrops.Add(1) // 0 bytes: nothing to allocate
			case sr.whole:
				copy(b, st.whole)
			default:
				for i, off := sr.i, 0; i < sr.end; i++ {
					off += copy(b[off:], rx.Data(i))
				}
			}
			j++
			continue
		}
		k := j + 1
		for k < len(srcs) && single(srcs[k]) {
			k++
		}
		c.flush(ctx, q) // ring order: earlier copies first
		c.zeroCopyRun(ctx, q, srcs[j].i, k-j)
		j = k
	}
	c.flush(ctx, q)
}

// zeroCopyRun moves n single-buffer frames from rx buffer i onto the tx
// ring, waiting for ring space up to -tx-wait.
func (c *capturer) zeroCopyRun(ctx context.Context, q *memif.Queue, i, n int) {
	done := 0
	var deadline time.Time
	for done < n && ctx.Err() == nil {
		m, err := q.Echo(i+done, n-done)
		if err != nil {
			break
		}
		if done += m; m > 0 {
			deadline = time.Time{}
			continue
		}
		if now := time.Now(); deadline.IsZero() {
			deadline = now.Add(c.cfg.txWait)
		} else if now.After(deadline) {
			break
		}
		runtime.Gosched()
	}
	c.echoed.Add(uint64(done))
	c.zeroCopy.Add(uint64(done))
	c.echoDrops.Add(uint64(n - done))
}

func (c *capturer) flush(ctx context.Context, q *memif.Queue) {
	staged := q.Staged()
	sent, _ := q.FlushWait(ctx, c.cfg.txWait)
	c.echoed.Add(uint64(sent))
	c.echoDrops.Add(uint64(staged - sent))
}
