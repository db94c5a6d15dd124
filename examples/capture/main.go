// Command capture is a tcpdump for memif: it attaches to a memif socket
// (as slave by default, -master to listen) and writes every frame it
// receives, chains reassembled, to a pcap file (Ethernet link type, one
// timestamp per frame).
//
//	capture -socket /run/vpp/memif.sock -id 0 -w out.pcap -c 1000
//
// With -echo it also sends every frame back out of the same interface, so
// it can sit inline. As slave, single-buffer frames go back zero-copy
// (BufferEnqTx moves the rx buffer onto the tx ring); chained frames, and
// all frames as master, are copied. A full tx ring holds reception back for
// up to -tx-wait, then echoes are dropped.
//
// It exits on SIGINT, SIGTERM or after -c frames, flushes the file and
// prints "captured N frames" (on stderr when writing the pcap to stdout).
package main

import (
	"bufio"
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
	"github.com/memif-go/memif/internal/exutil"
	"golang.org/x/sys/unix"
)

const (
	name    = "capture"
	snaplen = 262144 // tcpdump's default: frames beyond are truncated in the file
)

type config struct {
	master bool
	socket string
	id     uint
	secret string
	queues int
	file   string
	count  uint64
	echo   bool
	burst  int
	txWait time.Duration
	retry  time.Duration
}

func main() {
	var cfg config
	flag.BoolVar(&cfg.master, "master", false, "be the memif master (default: slave)")
	flag.StringVar(&cfg.socket, "socket", memif.DefaultSocketPath, "socket path ('@' = abstract)")
	flag.UintVar(&cfg.id, "id", 0, "memif interface id")
	flag.StringVar(&cfg.secret, "secret", "", "shared secret")
	flag.IntVar(&cfg.queues, "queues", 1, "queue pairs to ask for as slave (a master takes the slave's count)")
	flag.StringVar(&cfg.file, "w", "", "pcap file to write ('-': stdout)")
	flag.Uint64Var(&cfg.count, "c", 0, "exit after this many frames (0: until SIGINT/SIGTERM)")
	flag.BoolVar(&cfg.echo, "echo", false, "send every frame back out of the interface")
	flag.IntVar(&cfg.burst, "burst", 256, "rx batch size (1..4096)")
	flag.DurationVar(&cfg.txWait, "tx-wait", 100*time.Millisecond, "with -echo, how long a full tx ring may hold reception back before echoes are dropped")
	flag.DurationVar(&cfg.retry, "retry", 100*time.Millisecond, "as slave, connection request period while no master listens")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: capture -w FILE [flags]\n\nWrites the frames a memif interface receives to a pcap file.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	var err error
	switch {
	case cfg.file == "":
		err = errors.New("-w is required")
	case cfg.queues < 1 || cfg.queues > 255:
		err = fmt.Errorf("-queues %d is outside 1..255", cfg.queues)
	case cfg.burst < 1 || cfg.burst > 4096:
		err = fmt.Errorf("-burst %d is outside 1..4096", cfg.burst)
	case cfg.id > 1<<32-1:
		err = fmt.Errorf("-id %d does not fit 32 bits", cfg.id)
	case cfg.txWait < 0 || cfg.retry <= 0:
		err = errors.New("-tx-wait must not be negative, -retry must be positive")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	c := &capturer{cfg: cfg, wake: make(chan struct{}, 1), done: make(chan struct{}), full: make(chan struct{})}
	err = c.run()
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
	if err != nil {
		exutil.Fatal(name, err)
	}
}

// session is what one link-up negotiated.
type session struct {
	gen      uint64
	rxQueues int
	txQueues int
	txRing   int
	bufSize  int
	efds     []int
}

// src is one received frame: rx buffers [i, end), or c.whole when its
// chain began in an earlier burst.
type src struct {
	i, end, size int
	whole        bool
}

type capturer struct {
	cfg  config
	conn *memif.Conn
	// views is held (read) while the capture goroutine touches shared
	// memory and (write) by OnDisconnect, after which libmemif unmaps it.
	views   sync.RWMutex
	sess    atomic.Pointer[session]
	closing atomic.Bool
	gen     uint64
	wake    chan struct{} // link up
	stop    atomic.Bool
	done    chan struct{} // closed when stopping
	full    chan struct{} // closed when -c frames are in
	stopFD  int

	pw *pcapgo.Writer

	captured, echoed, zeroCopy, echoDrops atomic.Uint64

	// capture goroutine state
	rxq        []rxQueue
	rx, tx     *memif.Buffers   // rx: the batch of the queue at hand
	rxAt, txAt []*memif.Buffers // batch views from offset k
	used       int              // tx buffers allocated, not sent
	usedN      int              // frames in them
	curGen     uint64           // session rxq belongs to
	whole      []byte           // a chain cut off by a burst, once complete
	chain      []byte
	srcs       []src
	stalled    bool
}

// rxQueue is the receive state of one rx queue.
type rxQueue struct {
	bufs   *memif.Buffers
	at     []*memif.Buffers
	refill int    // buffers of the last burst, given back by the next
	part   []byte // head of a chain the last burst cut off
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
	stopFD, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return err
	}
	defer unix.Close(stopFD)
	c.stopFD = stopFD

	sock, err := memif.CreateSocket(&memif.SocketArgs{Path: c.cfg.socket, AppName: "memif-go-capture",
		ConnectionRequestTimer: c.cfg.retry})
	if err != nil {
		return err
	}
	defer sock.Delete()
	c.conn, err = memif.Create(&memif.ConnArgs{Socket: sock, Secret: c.cfg.secret, IsMaster: c.cfg.master,
		InterfaceID: uint32(c.cfg.id), NumS2MRings: uint8(c.cfg.queues), NumM2SRings: uint8(c.cfg.queues),
		InterfaceName: "capture", OnConnect: c.onConnect, OnDisconnect: c.onDisconnect})
	if err != nil {
		return err
	}
	drv := exutil.Drive(sock)
	defer drv.Stop()
	defer c.conn.Delete() // before drv.Stop: the driver lets it in
	role := "slave, connecting to"
	if c.cfg.master {
		role = "master, listening on"
	}
	fmt.Fprintf(os.Stderr, "%s: %s %s, writing %s\n", name, role, c.cfg.socket, c.cfg.file)

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		if err := c.capture(); err != nil {
			errs <- err
		}
	}()
	var runErr error
loop:
	for {
		select {
		case s := <-sigc:
			fmt.Fprintf(os.Stderr, "%s: %v, stopping\n", name, s)
			break loop
		case <-c.full:
			break loop
		case runErr = <-errs:
			break loop
		case err := <-drv.Errs:
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		}
	}
	c.stop.Store(true)
	close(c.done)
	one := [8]byte{1}
	unix.Write(stopFD, one[:])
	wg.Wait()
	if c.cfg.echo {
		c.drain(time.Second)
	}
	if err := bw.Flush(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

func (c *capturer) onConnect(conn *memif.Conn) error {
	d, err := conn.Details()
	if err != nil {
		return err
	}
	c.gen++
	s := &session{gen: c.gen, rxQueues: len(d.RxQueues), txQueues: len(d.TxQueues)}
	if s.rxQueues == 0 || s.txQueues == 0 {
		return errors.New("link up without queues")
	}
	s.txRing, s.bufSize = int(d.TxQueues[0].RingSize), int(d.TxQueues[0].BufferSize)
	for q := range s.rxQueues {
		fd, err := conn.QueueEventFD(uint16(q))
		if err != nil {
			return err
		}
		s.efds = append(s.efds, fd)
	}
	c.closing.Store(false)
	c.sess.Store(s)
	select {
	case c.wake <- struct{}{}:
	default:
	}
	fmt.Fprintf(os.Stderr, "%s: link up: peer %q (%s), %d rx queue(s), %d-byte buffers\n",
		name, d.RemoteIfName, d.RemoteInstName, s.rxQueues, s.bufSize)
	return nil
}

func (c *capturer) onDisconnect(*memif.Conn) error {
	c.closing.Store(true) // an echo waiting for ring space gives up
	c.views.Lock()
	c.sess.Store(nil)
	c.views.Unlock()
	fmt.Fprintf(os.Stderr, "%s: link down (%d frames so far)\n", name, c.captured.Load())
	return nil
}

// capture receives on every rx queue until stopped.
func (c *capturer) capture() error {
	defer func() {
		for _, r := range c.rxq {
			r.bufs.Free()
		}
		if c.tx != nil {
			c.tx.Free()
		}
	}()
	idle := 0
	var pfd []unix.PollFd
	for !c.stop.Load() {
		c.views.RLock()
		s := c.sess.Load()
		if s == nil {
			c.views.RUnlock()
			select {
			case <-c.wake:
			case <-c.done:
			}
			continue
		}
		if s.gen != c.curGen {
			if err := c.newSession(s); err != nil {
				c.views.RUnlock()
				return err
			}
		}
		got, err := c.burst(s)
		c.views.RUnlock()
		if err != nil {
			return err
		}
		if got > 0 {
			idle = 0
			continue
		}
		// Spin briefly, then sleep on the rx interrupts. Bounded: rx_burst
		// may consume an interrupt that raced with its empty-ring check.
		if idle++; idle < 64 {
			runtime.Gosched()
			continue
		}
		pfd = append(pfd[:0], unix.PollFd{Fd: int32(c.stopFD), Events: unix.POLLIN})
		for _, fd := range s.efds {
			pfd = append(pfd, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
		}
		unix.Poll(pfd, 10)
	}
	return nil
}

// newSession drops the state of the previous link (its buffers are gone)
// and makes a batch for every rx queue.
func (c *capturer) newSession(s *session) error {
	c.curGen = s.gen
	for i := range c.rxq {
		c.rxq[i].refill, c.rxq[i].part = 0, c.rxq[i].part[:0]
	}
	for len(c.rxq) < s.rxQueues {
		b, err := memif.NewBuffers(c.cfg.burst)
		if err != nil {
			return err
		}
		r := rxQueue{bufs: b, at: make([]*memif.Buffers, b.Cap())}
		for k := range r.at {
			r.at[k] = b.Slice(k, b.Cap())
		}
		c.rxq = append(c.rxq, r)
	}
	return nil
}

func isDown(err error) bool {
	return errors.Is(err, memif.ErrDisconnected) || errors.Is(err, memif.ErrDeleted)
}

func (c *capturer) burst(s *session) (int, error) {
	got := 0
	for q := range s.rxQueues {
		if c.stop.Load() {
			break
		}
		r := &c.rxq[q]
		c.rx, c.rxAt = r.bufs, r.at
		n, _, err := c.conn.RefillRxBurst(uint16(q), r.refill, 0, c.rx, c.rx.Cap())
		r.refill = n
		if err != nil {
			if isDown(err) {
				return got, nil
			}
			return got, err
		}
		if n == 0 {
			continue
		}
		got += n
		if err := c.frames(q, n); err != nil {
			return got, err
		}
		if c.cfg.echo && len(c.srcs) > 0 {
			if err := c.echo(uint16(q%s.txQueues), s); err != nil {
				return got, err
			}
		}
	}
	return got, nil
}

// frames writes the n buffers just received on queue q to the file and
// lists the frames in c.srcs.
func (c *capturer) frames(q, n int) error {
	c.srcs = c.srcs[:0]
	part := c.rxq[q].part
	for i := 0; i < n && !c.stop.Load(); {
		end, size := c.rx.PacketEnd(i, n)
		if c.rx.HasNext(end - 1) { // the chain goes on in the next burst
			for j := i; j < end; j++ {
				part = append(part, c.rx.Data(j)...)
			}
			break
		}
		var frame []byte
		switch {
		case len(part) > 0: // the end of a chain cut off last time
			for j := i; j < end; j++ {
				part = append(part, c.rx.Data(j)...)
			}
			c.whole, part = part, c.whole[:0]
			frame = c.whole
			c.srcs = append(c.srcs, src{size: len(frame), whole: true})
		case end-i > 1:
			c.chain, _ = c.rx.AppendPacket(c.chain[:0], i, n)
			frame = c.chain
			c.srcs = append(c.srcs, src{i: i, end: end, size: size})
		default:
			frame = c.rx.Data(i) // written straight from shared memory
			c.srcs = append(c.srcs, src{i: i, end: end, size: size})
		}
		ci := gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: min(len(frame), snaplen), Length: len(frame)}
		if err := c.pw.WritePacket(ci, frame[:ci.CaptureLength]); err != nil {
			return err
		}
		if total := c.captured.Add(1); c.cfg.count > 0 && total >= c.cfg.count {
			c.stop.Store(true) // nothing more is written; this burst's echoes still go
			close(c.full)
		}
		i = end
	}
	c.rxq[q].part = part
	return nil
}

// echo sends c.srcs back out of tx queue q: runs of single-buffer frames
// zero-copy on a slave, the rest copied.
func (c *capturer) echo(q uint16, s *session) error {
	if n := max(s.txRing, c.rx.Cap()); c.tx == nil || c.tx.Cap() < n {
		if c.tx != nil {
			c.tx.Free()
		}
		var err error
		if c.tx, err = memif.NewBuffers(n); err != nil {
			return err
		}
		c.txAt = make([]*memif.Buffers, n)
		for k := range c.txAt {
			c.txAt[k] = c.tx.Slice(k, n)
		}
	}
	j := 0
	var err error
	for j < len(c.srcs) && err == nil {
		sr := c.srcs[j]
		if !c.cfg.master && !sr.whole && sr.end-sr.i == 1 {
			k := j + 1
			for k < len(c.srcs) && !c.srcs[k].whole && c.srcs[k].end-c.srcs[k].i == 1 {
				k++
			}
			var m int
			m, err = c.enqueue(q, sr.i, k-j)
			j += m
			continue
		}
		if err = c.copyOut(q, sr, s); err == nil {
			j++
		}
	}
	if err == nil {
		err = c.flush(q)
	}
	if err == nil {
		return nil
	}
	// What was not sent is dropped; only surprises end the capture.
	c.echoDrops.Add(uint64(len(c.srcs) - j + c.usedN))
	c.used, c.usedN = 0, 0
	if errors.Is(err, errRingFull) || isDown(err) {
		return nil
	}
	return err
}

var errRingFull = errors.New("tx ring full")

// enqueue moves up to n rx buffers from index i onto the tx ring and sends
// them, zero-copy. It returns how many went, or why none could.
func (c *capturer) enqueue(q uint16, i, n int) (int, error) {
	if err := c.flush(q); err != nil { // ring order: earlier copies first
		return 0, err
	}
	var m int
	err := c.waitRing(q, func() (bool, error) {
		var err error
		m, err = c.conn.BufferEnqTx(q, c.rxAt[i], n)
		return m > 0, err
	})
	if err != nil {
		return 0, err
	}
	if _, err := c.conn.TxBurst(q, c.rxAt[i], m); err != nil && !errors.Is(err, memif.ErrIntWrite) {
		return 0, err
	}
	c.echoed.Add(uint64(m))
	c.zeroCopy.Add(uint64(m))
	return m, nil
}

// copyOut copies frame sr into a chain of its size after the tx buffers in
// use.
func (c *capturer) copyOut(q uint16, sr src, s *session) error {
	size := max(sr.size, 1) // memif_buffer_alloc gives nothing for 0 bytes
	if size > 0xffff {
		c.echoDrops.Add(1) // beyond one allocation
		return nil
	}
	// The binding bounds an allocation by the batch left, for the worst
	// case (64-byte segments on a master); at offset 0 the batch holds a
	// ring and anything fits.
	seg := s.bufSize
	if c.cfg.master || seg == 0 {
		seg = 64
	}
	if c.used > 0 && (size+seg-1)/seg > c.tx.Cap()-c.used {
		if err := c.flush(q); err != nil {
			return err
		}
	}
	var got int
	err := c.waitRing(q, func() (bool, error) {
		var err error
		got, err = c.conn.BufferAlloc(q, c.txAt[c.used], 1, uint16(size))
		if got == 0 && err == nil && c.used > 0 { // the batch bound stopped it
			err = memif.ErrNoBufRing
		}
		return got > 0, err
	})
	if err != nil {
		return err
	}
	x, end, off := c.used, c.used+got, 0
	put := func(p []byte) {
		for len(p) > 0 {
			if off == c.tx.Len(x) {
				x, off = x+1, 0
			}
			n := copy(c.tx.Data(x)[off:], p)
			p, off = p[n:], off+n
		}
	}
	if sr.whole {
		put(c.whole)
	} else {
		for i := sr.i; i < sr.end; i++ {
			put(c.rx.Data(i))
		}
	}
	for c.tx.SetLen(x, off); x+1 < end; x++ {
		c.tx.SetLen(x+1, 0) // only if the peer's buffers were shorter than needed
	}
	c.used, c.usedN = end, c.usedN+1
	return nil
}

// waitRing retries try while the tx ring is full, sending what is pending
// and holding reception back, for up to -tx-wait.
func (c *capturer) waitRing(q uint16, try func() (bool, error)) error {
	var deadline time.Time
	for spins := 0; ; spins++ {
		ok, err := try()
		if ok {
			c.stalled = false
			return nil
		}
		if err != nil && !errors.Is(err, memif.ErrNoBufRing) {
			return err
		}
		if c.used > 0 {
			if err := c.flush(q); err != nil {
				return err
			}
			continue
		}
		switch now := time.Now(); {
		case c.closing.Load():
			return memif.ErrDisconnected
		case c.stalled:
			return errRingFull
		case deadline.IsZero():
			deadline = now.Add(c.cfg.txWait)
		case now.After(deadline):
			c.stalled = true // drop at once until the ring moves again
			return errRingFull
		}
		if spins < 64 {
			runtime.Gosched()
		} else {
			time.Sleep(20 * time.Microsecond)
		}
	}
}

func (c *capturer) flush(q uint16) error {
	if c.used == 0 {
		return nil
	}
	_, err := c.conn.TxBurst(q, c.tx, c.used)
	if err != nil && !errors.Is(err, memif.ErrIntWrite) {
		return err
	}
	c.echoed.Add(uint64(c.usedN))
	c.used, c.usedN = 0, 0
	return nil
}

// drain waits until the peer took the echoed frames off the tx rings, so
// they are not lost with the link when we leave.
func (c *capturer) drain(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		d, err := c.conn.Details()
		if err != nil || len(d.TxQueues) == 0 {
			return
		}
		pending := 0
		for _, q := range d.TxQueues {
			out := int(q.Head - q.Tail) // uint16 arithmetic: rings wrap
			if d.IsMaster {
				out = int(q.RingSize) - out // the slave returns buffers by moving head a ring ahead
			}
			pending += out
		}
		if pending == 0 {
			return
		}
		<-tick.C
	}
}
