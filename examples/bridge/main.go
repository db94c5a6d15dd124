// Command bridge forwards frames between two memif interfaces, A and B, each
// on its own socket and control goroutine: what arrives on A leaves on B and
// what arrives on B leaves on A, one goroutine per direction.
//
//	bridge -a-socket /run/vpp/memif.sock -b-socket @app -b-role master -stats 1s
//
// Frames are copied. memif_buffer_enq_tx (BufferEnqTx) only moves rx
// buffers of a connection onto a tx ring of the same connection: A and B
// have separate shared-memory regions, so zero-copy between them is not
// possible whatever the roles. Copies are batched: one BufferAlloc per run
// of frames that fit a tx buffer, one TxBurst per rx burst; longer or
// chained frames get a chain of their exact size.
//
// A full tx ring holds the rx side back (backpressure) for up to -tx-wait,
// then the frames are dropped; frames for a side whose link is down are
// dropped at once. Counters go to stdout every -stats and at exit:
//
//	total: a->b forwarded N ring-full R down D | b->a forwarded N ring-full R down D
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
	"golang.org/x/sys/unix"
)

const name = "bridge"

type sideConfig struct {
	socket string
	role   string
	id     uint
	secret string
	queues int
}

type config struct {
	a, b   sideConfig
	stats  time.Duration
	txWait time.Duration
	burst  int
	retry  time.Duration
}

func (c *sideConfig) register(p string) {
	flag.StringVar(&c.socket, p+"-socket", "", "interface "+p+": socket path ('@' = abstract)")
	flag.StringVar(&c.role, p+"-role", "slave", "interface "+p+": master or slave")
	flag.UintVar(&c.id, p+"-id", 0, "interface "+p+": memif interface id")
	flag.StringVar(&c.secret, p+"-secret", "", "interface "+p+": shared secret")
	flag.IntVar(&c.queues, p+"-queues", 1, "interface "+p+": queue pairs to ask for as slave (a master takes the slave's count)")
}

func (c *sideConfig) validate(p string) error {
	switch {
	case c.socket == "":
		return fmt.Errorf("-%s-socket is required", p)
	case c.role != "master" && c.role != "slave":
		return fmt.Errorf("-%s-role %q is neither master nor slave", p, c.role)
	case c.id > 1<<32-1:
		return fmt.Errorf("-%s-id %d does not fit 32 bits", p, c.id)
	case c.queues < 1 || c.queues > 255:
		return fmt.Errorf("-%s-queues %d is outside 1..255", p, c.queues)
	}
	return nil
}

func main() {
	var cfg config
	cfg.a.register("a")
	cfg.b.register("b")
	flag.DurationVar(&cfg.stats, "stats", time.Second, "print counters at this interval (0: only at exit)")
	flag.DurationVar(&cfg.txWait, "tx-wait", 100*time.Millisecond, "how long a full tx ring may hold the rx side back before frames are dropped")
	flag.IntVar(&cfg.burst, "burst", 256, "rx batch size (1..4096)")
	flag.DurationVar(&cfg.retry, "retry", 100*time.Millisecond, "connection request period of a slave while its master is away")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: bridge -a-socket PATH -b-socket PATH [flags]\n\nForwards frames between two memif interfaces.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	err := cfg.a.validate("a")
	if err == nil {
		err = cfg.b.validate("b")
	}
	switch {
	case err != nil:
	case cfg.burst < 1 || cfg.burst > 4096:
		err = fmt.Errorf("-burst %d is outside 1..4096", cfg.burst)
	case cfg.stats < 0 || cfg.txWait < 0 || cfg.retry <= 0:
		err = errors.New("-stats and -tx-wait must not be negative, -retry must be positive")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		exutil.Fatal(name, err)
	}
}

// counters are one direction's totals, in frames. Drops: ring-full (the
// peer did not free tx buffers within -tx-wait), down (a link was down),
// oversize (a chain beyond the 65535 bytes one allocation can take).
type counters struct {
	forwarded, ringFull, down, oversize atomic.Uint64
}

func (c *counters) String() string {
	return fmt.Sprintf("forwarded %d ring-full %d down %d oversize %d",
		c.forwarded.Load(), c.ringFull.Load(), c.down.Load(), c.oversize.Load())
}

// bridge is the state both directions share.
type bridge struct {
	cfg config
	// views is held (read) by a forwarder while it touches shared memory of
	// either side, and (write) by OnDisconnect: libmemif unmaps the regions
	// right after on_disconnect returns, so a link going down waits for the
	// views in use instead of pulling memory from under them.
	views  sync.RWMutex
	stop   atomic.Bool
	done   chan struct{} // closed once stopping
	stopFD int           // eventfd, readable once stopping: wakes forwarders asleep on interrupts
	gen    atomic.Uint64
	errs   chan error
}

// side is one interface.
type side struct {
	name    string
	b       *bridge
	sock    *memif.Socket
	drv     *exutil.Driver
	conn    *memif.Conn
	sess    atomic.Pointer[session] // nil while the link is down
	closing atomic.Bool             // set while OnDisconnect waits for views
	wake    chan struct{}           // link up: wakes the forwarder receiving here
}

// session is what one link-up negotiated.
type session struct {
	gen      uint64
	rxQueues int
	txQueues int
	txRing   int   // descriptors per tx ring
	bufSize  int   // negotiated buffer size, 0 if the peer's layout hides it
	efds     []int // rx queue eventfds, watched when idle
}

func run(cfg config) error {
	stopFD, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return err
	}
	defer unix.Close(stopFD)
	b := &bridge{cfg: cfg, stopFD: stopFD, done: make(chan struct{}), errs: make(chan error, 4)}
	a, err := b.open("a", cfg.a)
	if err != nil {
		return err
	}
	defer a.close()
	bb, err := b.open("b", cfg.b)
	if err != nil {
		return err
	}
	defer bb.close()

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)

	var ab, ba counters
	var wg sync.WaitGroup
	for _, f := range []*forwarder{newForwarder(b, a, bb, &ab), newForwarder(b, bb, a, &ba)} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			if err := f.run(); err != nil {
				select {
				case b.errs <- fmt.Errorf("%s->%s: %w", f.from.name, f.to.name, err):
				default:
				}
			}
		}()
	}
	line := func() string { return fmt.Sprintf("a->b %v | b->a %v", &ab, &ba) }
	var tick <-chan time.Time
	if cfg.stats > 0 {
		t := time.NewTicker(cfg.stats)
		defer t.Stop()
		tick = t.C
	}
	var runErr error
loop:
	for {
		select {
		case s := <-sigc:
			fmt.Fprintf(os.Stderr, "%s: %v, stopping\n", name, s)
			break loop
		case runErr = <-b.errs:
			break loop
		case err := <-a.drv.Errs:
			fmt.Fprintf(os.Stderr, "%s: a: %v\n", name, err)
		case err := <-bb.drv.Errs:
			fmt.Fprintf(os.Stderr, "%s: b: %v\n", name, err)
		case <-tick:
			fmt.Println(line())
		}
	}
	b.stop.Store(true)
	close(b.done)
	one := [8]byte{1}
	unix.Write(stopFD, one[:])
	wg.Wait()
	fmt.Println("total: " + line())
	return runErr
}

// open creates one interface on its own socket and starts its driver.
func (b *bridge) open(p string, c sideConfig) (*side, error) {
	sock, err := memif.CreateSocket(&memif.SocketArgs{Path: c.socket, AppName: "memif-go-bridge",
		ConnectionRequestTimer: b.cfg.retry})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	s := &side{name: p, b: b, sock: sock, wake: make(chan struct{}, 1)}
	conn, err := memif.Create(&memif.ConnArgs{Socket: sock, Secret: c.secret, IsMaster: c.role == "master",
		InterfaceID: uint32(c.id), NumS2MRings: uint8(c.queues), NumM2SRings: uint8(c.queues),
		InterfaceName: "bridge-" + p, OnConnect: s.onConnect, OnDisconnect: s.onDisconnect})
	if err != nil {
		sock.Delete()
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	s.conn = conn
	s.drv = exutil.Drive(sock)
	fmt.Fprintf(os.Stderr, "%s: %s: %s on %s\n", name, p, c.role, c.socket)
	return s, nil
}

// close deletes the interface (the driver lets Delete in), then the socket.
func (s *side) close() {
	if err := s.conn.Delete(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %s: %v\n", name, s.name, err)
	}
	s.drv.Stop()
	s.sock.Delete()
}

func (s *side) onConnect(c *memif.Conn) error {
	d, err := c.Details()
	if err != nil {
		return err
	}
	ss := &session{gen: s.b.gen.Add(1), rxQueues: len(d.RxQueues), txQueues: len(d.TxQueues)}
	if len(d.TxQueues) > 0 {
		ss.txRing = int(d.TxQueues[0].RingSize)
		ss.bufSize = int(d.TxQueues[0].BufferSize)
	}
	if ss.rxQueues == 0 || ss.txQueues == 0 {
		return errors.New("link up without queues")
	}
	for q := range ss.rxQueues {
		fd, err := c.QueueEventFD(uint16(q))
		if err != nil {
			return err
		}
		ss.efds = append(ss.efds, fd)
	}
	s.closing.Store(false)
	s.sess.Store(ss)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	fmt.Fprintf(os.Stderr, "%s: %s up: peer %q (%s), %d rx / %d tx queue(s), %d-byte buffers\n",
		name, s.name, d.RemoteIfName, d.RemoteInstName, ss.rxQueues, ss.txQueues, ss.bufSize)
	return nil
}

func (s *side) onDisconnect(c *memif.Conn) error {
	s.closing.Store(true) // forwarders waiting on a full ring give up
	s.b.views.Lock()
	s.sess.Store(nil)
	s.b.views.Unlock()
	fmt.Fprintf(os.Stderr, "%s: %s down\n", name, s.name)
	return nil
}

// src is one received frame: rx buffers [i, end), or the chain gathered in
// forwarder.whole when it began in an earlier burst.
type src struct {
	i, end, size int
	whole        bool
}

// forwarder moves frames one way. It drives every rx queue of its from side
// and every tx queue of its to side, so each queue has one goroutine.
type forwarder struct {
	b        *bridge
	from, to *side
	ctr      *counters

	rxq     []rxQueue
	rx      *memif.Buffers // batch of the rx queue being forwarded
	tx      *memif.Buffers
	txAt    []*memif.Buffers // txAt[k] = tx[k:]: allocations after k buffers in use
	used    int              // tx buffers allocated and not sent yet
	usedN   int              // frames in them
	seg     int              // bytes one tx buffer holds, as far as known
	txGen   uint64           // tx session seg belongs to
	stalled bool             // a tx wait timed out: drop at once until the ring moves
	gen     uint64           // rx session rxq belongs to
	whole   []byte           // a chain cut off by a burst, once complete
	srcs    []src
}

// rxQueue is the receive state of one rx queue.
type rxQueue struct {
	bufs   *memif.Buffers
	refill int    // buffers of the last burst, given back by the next
	part   []byte // head of a chain the last burst cut off
}

func newForwarder(b *bridge, from, to *side, ctr *counters) *forwarder {
	return &forwarder{b: b, from: from, to: to, ctr: ctr}
}

// errRingFull ends a wait for tx ring space that lasted -tx-wait.
var errRingFull = errors.New("tx ring full")

func isDown(err error) bool {
	return errors.Is(err, memif.ErrDisconnected) || errors.Is(err, memif.ErrDeleted)
}

func (f *forwarder) run() error {
	defer func() {
		for _, r := range f.rxq {
			r.bufs.Free()
		}
		if f.tx != nil {
			f.tx.Free()
		}
	}()
	idle := 0
	var pfd []unix.PollFd
	for !f.b.stop.Load() {
		f.b.views.RLock()
		rs := f.from.sess.Load()
		if rs == nil {
			f.b.views.RUnlock()
			f.waitUp()
			continue
		}
		if rs.gen != f.gen {
			if err := f.newSession(rs); err != nil {
				f.b.views.RUnlock()
				return err
			}
		}
		got, err := f.burst(rs, f.to.sess.Load())
		f.b.views.RUnlock()
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
		pfd = append(pfd[:0], unix.PollFd{Fd: int32(f.b.stopFD), Events: unix.POLLIN})
		for _, fd := range rs.efds {
			pfd = append(pfd, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
		}
		unix.Poll(pfd, 10)
	}
	return nil
}

func (f *forwarder) waitUp() {
	select {
	case <-f.from.wake:
	case <-f.b.done:
	}
}

// newSession drops the state of the previous link (its buffers are gone)
// and makes a batch for every rx queue.
func (f *forwarder) newSession(rs *session) error {
	f.gen = rs.gen
	for i := range f.rxq {
		f.rxq[i].refill, f.rxq[i].part = 0, f.rxq[i].part[:0]
	}
	for len(f.rxq) < rs.rxQueues {
		b, err := memif.NewBuffers(f.b.cfg.burst)
		if err != nil {
			return err
		}
		f.rxq = append(f.rxq, rxQueue{bufs: b})
	}
	return nil
}

// burst receives once on every rx queue and forwards what came.
func (f *forwarder) burst(rs, ts *session) (int, error) {
	got := 0
	for q := range rs.rxQueues {
		r := &f.rxq[q]
		f.rx = r.bufs
		n, _, err := f.from.conn.RefillRxBurst(uint16(q), r.refill, 0, f.rx, f.rx.Cap())
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
		if err := f.forward(q, n, ts); err != nil {
			return got, err
		}
	}
	return got, nil
}

// forward sends the n frames just received on rx queue q to the other side.
func (f *forwarder) forward(q, n int, ts *session) error {
	f.srcs = f.srcs[:0]
	part := f.rxq[q].part
	for i := 0; i < n; {
		end, size := f.rx.PacketEnd(i, n)
		if f.rx.HasNext(end - 1) { // the chain goes on in the next burst
			for j := i; j < end; j++ {
				part = append(part, f.rx.Data(j)...)
			}
			break
		}
		if len(part) > 0 { // the end of a chain cut off last time
			for j := i; j < end; j++ {
				part = append(part, f.rx.Data(j)...)
			}
			f.whole, part = part, f.whole[:0]
			f.srcs = append(f.srcs, src{size: len(f.whole), whole: true})
		} else {
			f.srcs = append(f.srcs, src{i: i, end: end, size: size})
		}
		i = end
	}
	f.rxq[q].part = part
	if len(f.srcs) == 0 {
		return nil
	}
	if ts == nil {
		f.ctr.down.Add(uint64(len(f.srcs)))
		return nil
	}
	return f.send(uint16(q%ts.txQueues), ts)
}

// send copies f.srcs into tx buffers and sends them.
func (f *forwarder) send(q uint16, ts *session) error {
	if n := max(ts.txRing, f.rx.Cap()); f.tx == nil || f.tx.Cap() < n {
		f.newTx(n)
	}
	if ts.gen != f.txGen {
		f.txGen, f.seg = ts.gen, ts.bufSize
		if f.seg == 0 {
			f.seg = 2048 // a master whose peer's layout hides it: corrected by the first chain
		}
	}
	for j := 0; j < len(f.srcs); {
		// A run of frames that each fit one buffer takes one allocation;
		// any other frame gets a chain of its own size.
		k, size := j+1, f.srcs[j].size
		if size <= f.seg {
			for k < len(f.srcs) && f.srcs[k].size <= f.seg {
				size = max(size, f.srcs[k].size)
				k++
			}
		} else if size > 0xffff {
			f.ctr.oversize.Add(1)
			j++
			continue
		}
		got, err := f.alloc(q, k-j, max(size, 1), ts)
		if err != nil {
			f.drop(len(f.srcs)-j, err)
			if errors.Is(err, errRingFull) || isDown(err) {
				return nil
			}
			return err
		}
		for x := f.used; x < f.used+got; j++ {
			end, _ := f.tx.PacketEnd(x, f.used+got)
			if end-x > 1 && f.tx.Len(x) < f.seg {
				f.seg = f.tx.Len(x) // the peer's buffers are shorter (headroom)
			}
			f.copyFrame(f.srcs[j], x, end)
			x = end
			f.usedN++
		}
		f.used += got
	}
	return f.flush(q)
}

// newTx makes a tx batch of at least a ring's size, so an allocation at
// offset 0 always fits.
func (f *forwarder) newTx(n int) {
	if f.tx != nil {
		f.tx.Free()
	}
	f.tx, _ = memif.NewBuffers(n) // n <= 1<<14: cannot fail but for memory
	f.txAt = make([]*memif.Buffers, n)
	for k := range n {
		f.txAt[k] = f.tx.Slice(k, n)
	}
}

// alloc takes tx buffers for up to count frames of size bytes after the
// ones in use and returns how many buffers it got. A full ring sends what
// is pending and waits, holding the rx side back, up to -tx-wait.
func (f *forwarder) alloc(q uint16, count, size int, ts *session) (int, error) {
	// The binding bounds an allocation by the batch left after the
	// buffers in use, for the worst case: count packets of buffer-size
	// segments on a slave, one packet of 64-byte segments on a master (the
	// slave chose the lengths; it then stops early). At offset 0 the batch
	// holds a ring and anything fits.
	need := (size + 63) / 64
	if !f.to.conn.IsMaster() {
		need = count * ((size + ts.bufSize - 1) / max(ts.bufSize, 1))
	}
	if f.used > 0 && need > f.tx.Cap()-f.used {
		if err := f.flush(q); err != nil {
			return 0, err
		}
	}
	var deadline time.Time
	for spins := 0; ; spins++ {
		got, err := f.to.conn.BufferAlloc(q, f.txAt[f.used], count, uint16(size))
		if got > 0 {
			f.stalled = false
			return got, nil
		}
		if err != nil && !errors.Is(err, memif.ErrNoBufRing) {
			return 0, err
		}
		if f.used > 0 { // batch or ring full: let the peer have what is ready
			if err := f.flush(q); err != nil {
				return 0, err
			}
			continue
		}
		switch now := time.Now(); {
		case f.from.closing.Load() || f.to.closing.Load():
			return 0, memif.ErrDisconnected
		case f.stalled || f.b.stop.Load():
			return 0, errRingFull
		case deadline.IsZero():
			deadline = now.Add(f.b.cfg.txWait)
		case now.After(deadline):
			f.stalled = true
			return 0, errRingFull
		}
		if spins < 64 {
			runtime.Gosched()
		} else {
			time.Sleep(20 * time.Microsecond)
		}
	}
}

// copyFrame writes frame s into tx buffers [x, end), which hold at least
// s.size bytes. Buffers past the data (only if a run's buffers came out
// shorter than expected) keep zero length inside the chain.
func (f *forwarder) copyFrame(s src, x, end int) {
	dst, off := x, 0
	put := func(p []byte) {
		for len(p) > 0 {
			if off == f.tx.Len(dst) {
				dst, off = dst+1, 0
			}
			c := copy(f.tx.Data(dst)[off:], p)
			p, off = p[c:], off+c
		}
	}
	if s.whole {
		put(f.whole)
	} else {
		for i := s.i; i < s.end; i++ {
			put(f.rx.Data(i))
		}
	}
	f.tx.SetLen(dst, off)
	for dst++; dst < end; dst++ {
		f.tx.SetLen(dst, 0)
	}
}

// flush sends the allocated buffers.
func (f *forwarder) flush(q uint16) error {
	if f.used == 0 {
		return nil
	}
	frames := uint64(f.usedN)
	_, err := f.to.conn.TxBurst(q, f.tx, f.used)
	f.used, f.usedN = 0, 0
	if err == nil || errors.Is(err, memif.ErrIntWrite) { // sent; only the peer's wake-up failed
		f.ctr.forwarded.Add(frames)
		return nil
	}
	f.ctr.down.Add(frames)
	return err
}

// drop counts frames that will not be sent, and those allocated but unsent.
func (f *forwarder) drop(n int, err error) {
	if errors.Is(err, errRingFull) {
		f.ctr.ringFull.Add(uint64(n))
	} else {
		f.ctr.down.Add(uint64(n))
	}
	if f.used > 0 {
		f.ctr.down.Add(uint64(f.usedN))
		f.used, f.usedN = 0, 0
	}
}
