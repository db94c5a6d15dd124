//go:build linux && cgo

package memif

/*
#include "cgo_helpers.h"
*/
import "C"

import (
	"runtime/cgo"

	"golang.org/x/sys/unix"
	"strconv"
	"sync"
	"sync/atomic"
)

// InterfaceMode is memif_interface_mode_t.
type InterfaceMode uint8

// What the link carries; both ends must use the same mode.
const (
	ModeEthernet    InterfaceMode = C.MEMIF_INTERFACE_MODE_ETHERNET    // Ethernet frames (the default)
	ModeIP          InterfaceMode = C.MEMIF_INTERFACE_MODE_IP          // IPv4 or IPv6 packets, no link header
	ModePuntInject  InterfaceMode = C.MEMIF_INTERFACE_MODE_PUNT_INJECT // VPP's punt/inject
	maxModeValue                  = ModePuntInject
	refillWholeRing               = 0xffff
)

// RxMode is memif_rx_mode_t.
type RxMode int

// How the peer announces packets on an rx queue.
const (
	RxModeInterrupt RxMode = C.MEMIF_RX_MODE_INTERRUPT // the peer signals the queue eventfd (the default)
	RxModePolling   RxMode = C.MEMIF_RX_MODE_POLLING   // no signal: the application polls
)

// ConnArgs are memif_conn_args_t plus the connection's callbacks.
type ConnArgs struct {
	Socket *Socket // required
	// Secret, if set, must match the peer's (at most MaxSecretLen bytes).
	Secret string
	// Ring counts and sizes; zero means libmemif's default (1 ring each
	// way, 2048-byte buffers, 2^10 descriptors). The slave decides them: a
	// master's ring counts are ignored and it accepts up to 255 each way,
	// because libmemif's HELLO always offers its maximum (it is sent before
	// the interface is known), so a smaller master count could only refuse
	// slaves, never cap them. Ring and region indexes are checked by the
	// guard (guard.go) and libmemif's clean-up of a refused handshake is
	// made harmless (munmap.c).
	NumS2MRings  uint8
	NumM2SRings  uint8
	BufferSize   uint16
	Log2RingSize uint8
	IsMaster     bool
	InterfaceID  uint32
	// InterfaceName is sent to the peer (at most MaxNameLen bytes).
	InterfaceName string
	Mode          InterfaceMode

	// OnConnect runs when the link comes up, after the binding refilled
	// every rx queue with RxHeadroom (what libmemif's examples all do).
	OnConnect func(c *Conn) error
	// OnDisconnect runs once for every OnConnect, when the link goes down
	// (also from Delete). Buffers views die when it returns.
	OnDisconnect func(c *Conn) error
	// OnInterrupt, if set, runs when an rx queue in interrupt mode has
	// packets; libmemif then watches the queue fds itself. If nil, the
	// application may poll QueueEventFD. A signal on a queue in polling
	// mode (a peer that has not seen the change yet, or ignores it) is
	// consumed by the binding before OnInterrupt runs for it, once per
	// signal: RxBurst no longer reads the eventfd then (SetRxMode). In
	// interrupt mode, when it received on the queue itself and returns nil
	// with packets still in the ring, the binding signals the queue again
	// and OnInterrupt runs again: libmemif's RxBurst reads the eventfd after
	// it looked at the ring, which swallows the signal of a packet
	// published in between.
	OnInterrupt func(c *Conn, qid uint16) error
	// RxHeadroom is the headroom of the automatic refill on connect.
	RxHeadroom uint16
}

// Conn is a memif interface (memif_conn_handle_t).
type Conn struct {
	sock   *Socket
	h      C.memif_conn_handle_t
	handle cgo.Handle
	args   ConnArgs

	link    atomic.Pointer[link] // non-nil while connected
	deleted atomic.Bool
	// To 192 bytes, a size class of whole cache lines: every burst reads h
	// and args, and a 144-byte Conn shared a line with whatever the
	// allocator put before it (a cache miss per burst in a 2-thread run).
	_ [192 - 136]byte
}

// link is the state of one connection session: the negotiated queues and
// their locks. Bursts take no lock (own.go); a disconnect (libmemif unmaps
// the rings once OnDisconnect returns) bars the guard and waits for the
// bursts in C, and later bursts stay out of C.
type link struct {
	h          C.uintptr_t // the connection handle: c.h, which Delete clears
	rx, tx     []queue
	bufferSize uint32   // 0 if the peer's layout hides it (see negotiatedBufferSize)
	txRingSize []uint32 // descriptors per tx ring
	master     bool
	// down is set with every queue lock held (slow paths read it under
	// their lock; C reads the guard's own flag) before OnDisconnect runs;
	// unmapped once OnDisconnect returned, when libmemif unmaps the regions
	// (Buffers.Data reads it, no lock).
	down     atomic.Bool
	unmapped atomic.Bool
	// guard (descriptors.h): what the hot path checks descriptors against,
	// and the queues' owners. Freed when the link is unreachable, not at
	// disconnect: a burst that loaded the link before still reads it.
	guard C.uintptr_t
	_     [128 - 112]byte // whole cache lines (the 128-byte size class), as Conn
}

// queue is a queue's slow-path lock: claims (own.go), control calls and
// disconnects take it, bursts by the queue's owner thread do not.
type queue struct {
	mu      sync.Mutex
	polling atomic.Bool    // rx: SetRxMode set polling (no interrupts come)
	skipFD  int32          // rx: fd+1 of the eventfd flagged in readskip.c, 0 none; under mu
	pacer                  // yields a goroutine that bursts without blocking
	_       [128 - 32]byte // one queue per 128 bytes (adjacent-line prefetch)
}

func (l *link) lockAll() {
	for i := range l.rx {
		l.rx[i].mu.Lock()
	}
	for i := range l.tx {
		l.tx[i].mu.Lock()
	}
}

func (l *link) unlockAll() {
	for i := range l.rx {
		l.rx[i].mu.Unlock()
	}
	for i := range l.tx {
		l.tx[i].mu.Unlock()
	}
}

// Create wraps memif_create. A master starts listening on the socket path; a
// slave tries to connect once (and again with the socket's connection
// request timer or RequestConnection). Callbacks run later, on the goroutine
// driving the socket.
func Create(args *ConnArgs) (*Conn, error) {
	const op = "memif_create"
	if args == nil || args.Socket == nil {
		return nil, argErr(op, "socket", "nil")
	}
	a := *args
	if err := checkName(op, "interface name", a.InterfaceName, MaxNameLen); err != nil {
		return nil, err
	}
	if err := checkName(op, "secret", a.Secret, MaxSecretLen); err != nil {
		return nil, err
	}
	if a.Log2RingSize > MaxLog2RingSize {
		return nil, argErr(op, "log2 ring size", "%d is above the limit %d", a.Log2RingSize, MaxLog2RingSize)
	}
	if a.Mode > maxModeValue {
		return nil, argErr(op, "mode", "%d is not a memif interface mode", a.Mode)
	}
	var ca C.memif_conn_args_t
	copyUString(ca.secret[:], a.Secret)
	copyUString(ca.interface_name[:], a.InterfaceName)
	ca.num_s2m_rings = C.uint8_t(a.NumS2MRings)
	ca.num_m2s_rings = C.uint8_t(a.NumM2SRings)
	if a.IsMaster {
		ca.num_s2m_rings, ca.num_m2s_rings = 255, 255
	}
	ca.buffer_size = C.uint16_t(a.BufferSize)
	ca.log2_ring_size = C.uint8_t(a.Log2RingSize)
	if a.IsMaster {
		ca.is_master = 1 // libmemif.h's comment has it backwards: 1 is master
	}
	ca.interface_id = C.uint32_t(a.InterfaceID)
	C.memifgo_set_mode(&ca, C.uint8_t(a.Mode))

	s := a.Socket
	c := &Conn{sock: s, args: a}
	locked, err := s.begin()
	if err != nil {
		return nil, &Error{Op: op, Err: err}
	}
	defer s.end(locked)
	ca.socket = s.h
	if a.IsMaster && C.memif_get_listener_fd(s.h) < 0 {
		fd, err := s.listen()
		if err != nil {
			return nil, err
		}
		if err := codeErr(op, C.memif_set_listener_fd(s.h, C.int(fd))); err != nil {
			unix.Close(fd)
			return nil, err
		}
	}
	c.handle = cgo.NewHandle(c)
	withInt := C.int(0)
	if a.OnInterrupt != nil {
		withInt = 1
	}
	code, errno := C.memifgo_create(&c.h, &ca, C.uintptr_t(c.handle), withInt)
	if err := s.finishErrno(op, code, errno); err != nil {
		if c.h != nil {
			C.memif_delete(&c.h)
		}
		c.handle.Delete()
		return nil, err
	}
	s.conns[c] = struct{}{}
	return c, nil
}

func copyUString(dst []C.uint8_t, s string) {
	for i := 0; i < len(s) && i < len(dst)-1; i++ {
		dst[i] = C.uint8_t(s[i])
	}
}

// Delete wraps memif_delete: disconnect (OnDisconnect runs if connected),
// free queues and regions, close fds. Bursts on other goroutines finish
// first; later calls return ErrDeleted.
func (c *Conn) Delete() error {
	const op = "memif_delete"
	if c == nil {
		return nilConnErr(op)
	}
	s := c.sock
	locked, err := s.begin()
	if err != nil {
		return &Error{Op: op, Err: err}
	}
	defer s.end(locked)
	if c.deleted.Load() {
		return &Error{Op: op, Err: ErrDeleted}
	}
	if !locked { // on a callback's thread, inside libmemif
		return &Error{Op: op, Err: ErrDeleteInCallback}
	}
	code := C.memif_delete(&c.h)
	c.deleted.Store(true)
	if l := c.downLink(); l != nil { // libmemif skipped on_disconnect
		l.unmapped.Store(true)
	}
	delete(s.conns, c)
	c.handle.Delete()
	return s.finish(op, code)
}

// downLink ends the current session: bars new bursts and waits for those
// in C.
func (c *Conn) downLink() *link {
	l := c.link.Swap(nil)
	if l != nil {
		C.memifgo_guard_stop(l.guard) // a receive waiting in C lets go now
		l.lockAll()
		l.quiesce(true)
		l.down.Store(true)
		l.unpoll() // before libmemif closes the eventfds
		l.unlockAll()
	}
	return l
}

// controlCall runs a control-path C call on this connection.
func (c *Conn) controlCall(op string, call func() C.int) error {
	if c == nil {
		return nilConnErr(op)
	}
	if c.deleted.Load() {
		return &Error{Op: op, Err: ErrDeleted}
	}
	return c.sock.control(op, func() C.int {
		if c.deleted.Load() {
			return C.MEMIF_ERR_NOCONN
		}
		return call()
	})
}

// Socket wraps memif_get_socket_handle: the socket this connection uses.
func (c *Conn) Socket() *Socket {
	if c == nil {
		return nil
	}
	var h C.memif_socket_handle_t
	if c.controlCall("memif_get_socket_handle", func() C.int {
		h = C.memif_get_socket_handle(c.h)
		return 0
	}) != nil || h != c.sock.h {
		return nil
	}
	return c.sock
}

// IsMaster reports the role this connection was created with.
func (c *Conn) IsMaster() bool { return c != nil && c.args.IsMaster }

// Connected reports whether the link is up (between OnConnect and
// OnDisconnect).
func (c *Conn) Connected() bool { return c != nil && c.link.Load() != nil }

// RequestConnection wraps memif_request_connection: a slave connects now
// (ErrAlreadyConnected if connected or connecting, ErrConnRefused if nobody
// listens).
func (c *Conn) RequestConnection() error {
	return c.controlCall("memif_request_connection", func() C.int {
		return C.memif_request_connection(c.h)
	})
}

// QueueEventFD wraps memif_get_queue_efd: the eventfd that becomes readable
// when rx queue qid has packets in interrupt mode. Watch it for readability
// only: RxBurst consumes its count, and reading it yourself loses wake-ups.
// In polling mode RxBurst no longer reads it (see SetRxMode): a count a
// peer leaves there anyway stays until a waiting receive that ends empty
// (RefillRxBurstWait), OnInterrupt's dispatch or, back in interrupt mode,
// RxBurst consumes it. RxBurst reads it after looking at the ring, so a
// packet published in between may never signal: park on it only after a
// waiting receive ended empty (RefillRxBurstWait), or use OnInterrupt.
func (c *Conn) QueueEventFD(qid uint16) (int, error) {
	const op = "memif_get_queue_efd"
	l, err := c.session(op)
	if err != nil {
		return -1, err
	}
	if int(qid) >= len(l.rx) {
		return -1, qidErr(op, qid, len(l.rx))
	}
	var fd C.int = -1
	err = c.controlCall(op, func() C.int { return C.memif_get_queue_efd(c.h, C.uint16_t(qid), &fd) })
	return int(fd), err
}

// SetRxMode wraps memif_set_rx_mode: in polling mode the peer stops writing
// interrupts for rx queue qid. Built with -tags memif_readskip, libmemif's
// read of the queue eventfd, made in every burst that finds the ring empty
// or empties it and always EAGAIN in polling mode, then returns at once
// with no system call (readskip.h: the binding defines read() for the
// process). Back in interrupt mode the reads are real again before the
// peer is told to signal.
func (c *Conn) SetRxMode(mode RxMode, qid uint16) error {
	const op = "memif_set_rx_mode"
	if mode != RxModeInterrupt && mode != RxModePolling {
		return argErr(op, "mode", "%d is not an rx mode", mode)
	}
	l, err := c.session(op)
	if err != nil {
		return err
	}
	if int(qid) >= len(l.rx) {
		return qidErr(op, qid, len(l.rx))
	}
	// The queue's mutex keeps the ring mapped (a disconnect takes it) and
	// no claim is needed: libmemif only stores the ring's flags, which no
	// burst writes.
	q := &l.rx[qid]
	q.mu.Lock()
	defer q.mu.Unlock()
	if l.down.Load() {
		return &Error{Op: op, Err: ErrDisconnected}
	}
	err = codeErr(op, c.setRxMode(q, mode, qid))
	if err == nil {
		q.polling.Store(mode == RxModePolling)
	}
	return err
}

// session returns the live link or the error that says why there is none.
func (c *Conn) session(op string) (*link, error) {
	if c == nil {
		return nil, nilConnErr(op)
	}
	if l := c.link.Load(); l != nil {
		return l, nil
	}
	if c.deleted.Load() {
		return nil, &Error{Op: op, Err: ErrDeleted}
	}
	return nil, &Error{Op: op, Err: ErrDisconnected}
}

func qidErr(op string, qid uint16, n int) error {
	return &Error{Op: op, Err: &qidError{qid: qid, n: n}}
}

// qidError is a queue id beyond the negotiated queues; it matches ErrQID.
type qidError struct {
	qid uint16
	n   int
}

func (e *qidError) Error() string {
	return "queue id " + strconv.Itoa(int(e.qid)) + " is beyond the " + strconv.Itoa(e.n) + " negotiated queue(s)"
}
func (e *qidError) Is(target error) bool { return target == ErrQID || target == ErrInvalArg }
