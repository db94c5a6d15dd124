//go:build linux && cgo

package memif

/*
#include "cgo_helpers.h"
*/
import "C"

import (
	"errors"
	"os"
	"runtime/cgo"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DefaultSocketPath is where VPP listens by default.
const DefaultSocketPath = "/run/vpp/memif.sock"

// DefaultAppName is libmemif's default application name.
const DefaultAppName = C.MEMIF_DEFAULT_APP_NAME

// Length limits of memif_socket_args_t and memif_conn_args_t (C arrays,
// one byte kept for the terminating NUL).
const (
	MaxSocketPathLen = 107
	MaxNameLen       = 31
	MaxSecretLen     = 23
	MaxLog2RingSize  = 14
)

// FDEventType is memif_fd_event_type_t: what happened on a file descriptor,
// or what libmemif wants watched.
type FDEventType uint32

const (
	FDEventRead  FDEventType = C.MEMIF_FD_EVENT_READ  // readable
	FDEventWrite FDEventType = C.MEMIF_FD_EVENT_WRITE // writable
	FDEventError FDEventType = C.MEMIF_FD_EVENT_ERROR // error or hang-up
	FDEventDel   FDEventType = C.MEMIF_FD_EVENT_DEL   // fd is about to close: stop watching it
	FDEventMod   FDEventType = C.MEMIF_FD_EVENT_MOD   // change the watched events
)

// FDEvent is memif_fd_event_t, given to SocketArgs.OnControlFDUpdate. Hand
// it back to Socket.ControlFDHandler when the fd becomes ready.
type FDEvent struct {
	FD   int
	Type FDEventType
	data unsafe.Pointer // libmemif's per-fd context (C memory)
}

// SocketArgs are memif_socket_args_t.
type SocketArgs struct {
	// Path of the UNIX socket; a leading '@' (or NUL) makes it abstract.
	// Empty means DefaultSocketPath.
	Path string
	// AppName is sent to the peer; empty means DefaultAppName.
	AppName string
	// ConnectionRequestTimer, if non-zero, makes every disconnected slave
	// on this socket request a connection at this period.
	ConnectionRequestTimer time.Duration
	// OnControlFDUpdate, if set, hands fd polling to the caller: libmemif
	// reports every fd to watch here and the caller passes readiness back
	// with ControlFDHandler. If nil, libmemif polls internally and the caller
	// drives it with PollEvent.
	OnControlFDUpdate func(FDEvent) error
	// FileMode is the permission of the socket file a master listens on
	// (filesystem paths only: abstract sockets have no access control).
	// Zero means DefaultFileMode. The binding binds the listener itself, so
	// the mode is set before anyone can connect.
	FileMode os.FileMode
	// Guard tunes the checks made on every control message before libmemif
	// reads it (guard.go); the zero value is safe.
	Guard GuardConfig
}

// DefaultFileMode lets only the socket's owner (and root) connect.
const DefaultFileMode os.FileMode = 0o600

// MinRequestTimer is the shortest connection request period: shorter ones
// would keep a core busy retrying.
const MinRequestTimer = time.Millisecond

// Socket is a memif socket (memif_socket_handle_t) and its connections.
type Socket struct {
	mu       sync.Mutex   // one goroutine on the control path at a time
	cbTID    atomic.Int64 // OS thread running a callback (holding mu), or 0
	cancelMu sync.RWMutex // write-held while the fd table closes (PollEvent waits under read)
	cbErr    error        // first callback failure during the current control call

	h       C.memif_socket_handle_t
	handle  cgo.Handle
	path    string
	onFD    func(FDEvent) error
	ext     ExternalRegion
	conns   map[*Conn]struct{}
	userLFD bool     // listener fd came from SetListenerFD: not ours to close
	fdt     *fdTable // every fd libmemif reported (fds.go)
	guard   GuardConfig
	gstats  guardCounters
	pending int          // guarded channels still handshaking
	loop    *Loop        // the Loop that polls this socket, if any
	wakeAt  atomic.Int64 // earliest handshake deadline (UnixNano), 0 if none
	mode    os.FileMode
}

func checkName(op, arg, s string, max int) error {
	if len(s) > max {
		return argErr(op, arg, "%q is %d bytes, the limit is %d", s, len(s), max)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return argErr(op, arg, "%q contains a NUL byte", s)
	}
	return nil
}

// CreateSocket wraps memif_create_socket.
func CreateSocket(args *SocketArgs) (*Socket, error) {
	const op = "memif_create_socket"
	var a SocketArgs
	if args != nil {
		a = *args
	}
	if a.Path == "" {
		a.Path = DefaultSocketPath
	}
	if a.Path[0] == 0 {
		a.Path = "@" + a.Path[1:] // libmemif's spelling of abstract
	}
	if a.AppName == "" {
		a.AppName = DefaultAppName
	}
	if err := checkName(op, "socket path", a.Path, MaxSocketPathLen); err != nil {
		return nil, err
	}
	if err := checkName(op, "app name", a.AppName, MaxNameLen); err != nil {
		return nil, err
	}
	if a.ConnectionRequestTimer < 0 {
		return nil, argErr(op, "connection request timer", "%v is negative", a.ConnectionRequestTimer)
	}
	if a.ConnectionRequestTimer > 0 && a.ConnectionRequestTimer < MinRequestTimer {
		return nil, argErr(op, "connection request timer", "%v is below the minimum %v", a.ConnectionRequestTimer, MinRequestTimer)
	}
	if a.FileMode&^os.ModePerm != 0 {
		return nil, argErr(op, "file mode", "%v has bits beyond the permissions", a.FileMode)
	}
	fdt, err := newFDTable(a.OnControlFDUpdate == nil)
	if err != nil {
		return nil, err
	}
	s := &Socket{path: a.Path, onFD: a.OnControlFDUpdate, conns: map[*Conn]struct{}{}, fdt: fdt,
		guard: a.Guard.withDefaults(), mode: a.FileMode}
	if s.mode == 0 {
		s.mode = DefaultFileMode
	}
	s.handle = cgo.NewHandle(s)

	var ca C.memif_socket_args_t
	copyCString(ca.path[:], a.Path)
	copyCString(ca.app_name[:], a.AppName)
	useRegionTableAllocator(&ca)
	s.mu.Lock()
	code := C.memifgo_create_socket(&s.h, &ca, C.uintptr_t(s.handle))
	err = s.finish(op, code)
	if err == nil && a.ConnectionRequestTimer > 0 {
		err = s.finish("memif_set_connection_request_timer",
			C.memifgo_set_timer(s.h, C.int64_t(a.ConnectionRequestTimer)))
	}
	s.mu.Unlock()
	if err != nil {
		if s.h != nil {
			C.memif_delete_socket(&s.h)
		}
		for _, fd := range fdt.leaked() {
			unix.Close(fd)
		}
		fdt.close()
		s.handle.Delete()
		return nil, err
	}
	return s, nil
}

func copyCString(dst []C.char, s string) {
	for i := 0; i < len(s) && i < len(dst)-1; i++ {
		dst[i] = C.char(s[i])
	}
}

// begin enters the control path; end leaves it. A call made from inside a
// callback already holds mu: it is recognised by its OS thread, to which
// the goroutine is locked for the length of the cgo callback (a flag alone
// would let every other goroutine in too).
func (s *Socket) begin() (locked bool, err error) {
	if tid := s.cbTID.Load(); tid != 0 && tid == int64(unix.Gettid()) {
		if s.h == nil {
			return false, ErrDeleted
		}
		return false, nil
	}
	s.mu.Lock()
	if s.h == nil {
		s.mu.Unlock()
		return false, ErrDeleted
	}
	return true, nil
}

func (s *Socket) end(locked bool) {
	if locked {
		s.mu.Unlock()
	}
}

// finish turns a C return code into an error; a callback failure during the
// call takes precedence, as it is what the caller needs to see.
func (s *Socket) finish(op string, code C.int) error {
	if cb := s.cbErr; cb != nil {
		s.cbErr = nil
		return &Error{Op: op, Err: cb}
	}
	return codeErr(op, code)
}

// finishErrno is finish keeping the errno of a syscall failure.
func (s *Socket) finishErrno(op string, code C.int, errno error) error {
	if s.cbErr != nil {
		return s.finish(op, code)
	}
	return codeErrno(op, code, errno)
}

// control runs one control-path C call under the socket lock.
func (s *Socket) control(op string, call func() C.int) error {
	locked, err := s.begin()
	if err != nil {
		return &Error{Op: op, Err: err}
	}
	defer s.end(locked)
	return s.finish(op, call())
}

// Delete wraps memif_delete_socket. All connections must be deleted first.
// Beyond libmemif, it closes exactly the fds libmemif leaves open (the
// listener, the request timer, channels that never authenticated: libmemif
// reported each one, see fds.go) and removes the socket file the binding
// bound, so the path can be reused.
func (s *Socket) Delete() error {
	const op = "memif_delete_socket"
	if s == nil {
		return nilErr(op, "socket")
	}
	locked, err := s.begin()
	if err != nil {
		return &Error{Op: op, Err: err}
	}
	defer s.end(locked)
	if s.cbTID.Load() != 0 {
		return argErr(op, "socket", "deleted from inside one of its callbacks; delete it after the control call returns")
	}
	if n := len(s.conns); n > 0 {
		return argErr(op, "socket", "%d connection(s) still use it; delete them first", n)
	}
	lfd := int(C.memif_get_listener_fd(s.h))
	code := C.memif_delete_socket(&s.h)
	if err := s.finish(op, code); err != nil {
		return err
	}
	for _, fd := range s.fdt.leaked() {
		if fd != lfd || !s.userLFD {
			unix.Close(fd)
		}
	}
	if s.fdt.cancel >= 0 {
		unix.Write(s.fdt.cancel, []byte{1, 0, 0, 0, 0, 0, 0, 0}) // wake PollEvent waiters
	}
	s.cancelMu.Lock()
	s.h = nil
	s.fdt.close()
	s.cancelMu.Unlock()
	if lfd > 0 && !s.userLFD && !strings.HasPrefix(s.path, "@") {
		if fi, err := os.Lstat(s.path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(s.path)
		}
	}
	s.handle.Delete()
	return nil
}

// connList is a snapshot of the socket's connections.
func (s *Socket) connList() []*Conn {
	locked, err := s.begin()
	if err != nil {
		return nil
	}
	defer s.end(locked)
	out := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// Path wraps memif_get_socket_path: the path as libmemif holds it
// (abstract paths start with '@').
func (s *Socket) Path() string {
	if s == nil {
		return ""
	}
	locked, err := s.begin()
	if err != nil {
		return ""
	}
	defer s.end(locked)
	return C.GoString(C.memif_get_socket_path(s.h))
}

// ListenerFD wraps memif_get_listener_fd: the listening socket's fd, or -1
// before a master connection made this socket listen.
func (s *Socket) ListenerFD() int {
	if s == nil {
		return -1
	}
	locked, err := s.begin()
	if err != nil {
		return -1
	}
	defer s.end(locked)
	return int(C.memif_get_listener_fd(s.h))
}

// SetListenerFD wraps memif_set_listener_fd: listen on an fd the caller
// opened (for example one inherited from systemd): a listening AF_UNIX
// SOCK_SEQPACKET socket. The caller keeps ownership: Delete neither closes
// it nor removes its file.
func (s *Socket) SetListenerFD(fd int) error {
	const op = "memif_set_listener_fd"
	if s == nil {
		return nilErr(op, "socket")
	}
	if err := checkListener(fd); err != nil {
		return &Error{Op: op, Err: err}
	}
	err := s.control(op, func() C.int { return C.memif_set_listener_fd(s.h, C.int(fd)) })
	if err == nil {
		s.userLFD = true
	}
	return err
}

// SetConnectionRequestTimer wraps memif_set_connection_request_timer: every
// disconnected slave on this socket requests a connection at this period
// (at least MinRequestTimer). Zero stops the timer.
func (s *Socket) SetConnectionRequestTimer(d time.Duration) error {
	const op = "memif_set_connection_request_timer"
	if s == nil {
		return nilErr(op, "socket")
	}
	if d < 0 || (d > 0 && d < MinRequestTimer) {
		return argErr(op, "period", "%v is outside 0 or %v and above", d, MinRequestTimer)
	}
	return s.control(op, func() C.int { return C.memifgo_set_timer(s.h, C.int64_t(d)) })
}

// PollEvent is memif_poll_event: wait up to timeout for one event on the
// socket's fds and handle it, running callbacks on this goroutine. A
// negative timeout blocks; zero returns at once. Interrupted waits (EINTR,
// which Go's runtime signals cause) are retried with the time left. After
// CancelPollEvent it returns ErrPollCancel. Needs a socket created without
// OnControlFDUpdate.
//
// The binding runs libmemif in control-fd mode and waits on its own epoll
// (fds.go), as memif_poll_event does internally, so that it knows every fd
// and can check each control message before libmemif reads it (guard.go).
// The socket lock is not held while waiting: other goroutines' control
// calls go ahead. Loop is the context-driven way to run a socket.
func (s *Socket) PollEvent(timeout time.Duration) error {
	const op = "memif_poll_event"
	if s == nil {
		return nilErr(op, "socket")
	}
	if s.onFD != nil {
		return argErr(op, "socket", "it was created with OnControlFDUpdate: use ControlFDHandler")
	}
	if s.loop != nil {
		return argErr(op, "socket", "a Loop polls it")
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	var evs [8]unix.EpollEvent
	for {
		n, err := s.waitFDs(evs[:], timeout)
		if errors.Is(err, unix.EINTR) {
			if timeout > 0 {
				if timeout = time.Until(deadline); timeout <= 0 {
					return nil
				}
			}
			continue
		}
		if err != nil {
			return &Error{Op: op, Err: err}
		}
		if n == 0 && timeout > 0 {
			if timeout = time.Until(deadline); timeout > 0 {
				continue // clamped wait (see waitFDs) ended early
			}
		}
		return s.dispatch(op, evs[:n])
	}
}

// maxWaitMS is the longest single epoll wait (its timeout is a C int).
const maxWaitMS = 1 << 30

// waitFDs waits on the socket's epoll without holding the control lock.
func (s *Socket) waitFDs(evs []unix.EpollEvent, timeout time.Duration) (int, error) {
	s.cancelMu.RLock()
	defer s.cancelMu.RUnlock()
	if s.h == nil {
		return 0, ErrDeleted
	}
	ms := waitMillis(timeout)
	if at := s.wakeAt.Load(); at != 0 { // wake for the guard's next handshake deadline
		d := max(time.Until(time.Unix(0, at)), 0)
		if dm := int((d + time.Millisecond - 1) / time.Millisecond); ms < 0 || dm < ms {
			ms = dm
		}
	}
	n, err := unix.EpollWait(s.fdt.epfd, evs, ms)
	if err != nil && !errors.Is(err, unix.EINTR) {
		err = syscallErr(err)
	}
	return n, err
}

// waitMillis converts a PollEvent timeout for epoll_wait: -1 blocks, a
// positive one rounds up (no busy-poll on short ones) and is clamped to
// what the C int holds (PollEvent waits again for the rest).
func waitMillis(timeout time.Duration) int {
	if timeout < 0 {
		return -1
	}
	if timeout >= maxWaitMS*time.Millisecond {
		return maxWaitMS
	}
	return int((timeout + time.Millisecond - 1) / time.Millisecond)
}

// dispatch hands ready fds to libmemif under the control lock.
func (s *Socket) dispatch(op string, evs []unix.EpollEvent) error {
	if len(evs) == 0 && !s.guardDue() {
		return nil
	}
	locked, err := s.begin()
	if err != nil {
		return &Error{Op: op, Err: err}
	}
	defer s.end(locked)
	defer s.guardTick()
	var first error
	for _, e := range evs {
		err := s.handleFD(op, int(e.Fd), fdEvents(e.Events))
		if first == nil {
			first = err
		}
		if s.h == nil {
			break
		}
	}
	return first
}

// handleFD runs libmemif's handler for one ready fd, after the guard has
// checked what a control channel holds. Called on the control path.
func (s *Socket) handleFD(op string, fd int, events FDEventType) error {
	if fd == s.fdt.cancel {
		return &Error{Op: op, Err: ErrPollCancel} // sticky, as memif_cancel_poll_event
	}
	w := s.fdt.fds[fd]
	if w == nil || !stillReady(fd) {
		return nil // handled or removed since the wait
	}
	if w.guard != nil && !w.guard.admit() {
		return nil
	}
	err := s.finish(op, C.memif_control_fd_handler(w.ev.data, C.memif_fd_event_type_t(events)))
	if w.kind == fdListener {
		s.fdt.prune()
	}
	return err
}

// CancelPollEvent is memif_cancel_poll_event: make a concurrent (or the
// next) PollEvent return ErrPollCancel, and every later one too (a shutdown
// signal, as in libmemif). Safe from any goroutine.
func (s *Socket) CancelPollEvent() error {
	const op = "memif_cancel_poll_event"
	if s == nil {
		return nilErr(op, "socket")
	}
	s.cancelMu.RLock()
	defer s.cancelMu.RUnlock()
	if s.onFD != nil {
		return argErr(op, "socket", "it was created with OnControlFDUpdate and has no poll to cancel")
	}
	if s.h == nil {
		return &Error{Op: op, Err: ErrDeleted}
	}
	if _, err := unix.Write(s.fdt.cancel, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		return &Error{Op: op, Err: syscallErr(err)}
	}
	return nil
}

// ControlFDHandler wraps memif_control_fd_handler: tell libmemif that the fd
// of ev (as reported to OnControlFDUpdate) is ready with events. Callbacks
// run on this goroutine. Control messages are checked first (guard.go).
func (s *Socket) ControlFDHandler(ev FDEvent, events FDEventType) error {
	const op = "memif_control_fd_handler"
	if s == nil {
		return nilErr(op, "socket")
	}
	if ev.data == nil {
		return argErr(op, "event", "fd %d carries no libmemif context (was it reported by OnControlFDUpdate?)", ev.FD)
	}
	locked, err := s.begin()
	if err != nil {
		return &Error{Op: op, Err: err}
	}
	defer s.end(locked)
	if w := s.fdt.fds[ev.FD]; w == nil || w.ev.data != ev.data {
		return argErr(op, "event", "fd %d is not (or no longer) watched for libmemif", ev.FD)
	}
	defer s.guardTick()
	return s.handleFD(op, ev.FD, events)
}

// ExternalRegion lets the application provide the packet-buffer region
// (memif_register_external_region). Methods run on the control-path
// goroutine. Addresses must be memory outside the Go heap (an mmap of a
// memfd, for example) that stays mapped until DelRegion.
type ExternalRegion interface {
	// AddRegion (slave) creates a region of size bytes and returns its
	// address and an fd the peer can map (memif_add_external_region_t).
	AddRegion(c *Conn, size uint32) (addr unsafe.Pointer, fd int, err error)
	// RegionAddr (master) maps the peer's region fd
	// (memif_get_external_region_addr_t).
	RegionAddr(c *Conn, size uint32, fd int) (unsafe.Pointer, error)
	// DelRegion releases a region on disconnect (memif_del_external_region_t).
	DelRegion(c *Conn, addr unsafe.Pointer, size uint32, fd int) error
}

// ExternalBufferOffsetter is optionally implemented by an ExternalRegion to
// choose buffer offsets (memif_get_external_buffer_offset_t).
type ExternalBufferOffsetter interface {
	BufferOffset(c *Conn) uint32
}

// RegisterExternalRegion wraps memif_register_external_region. Register
// before creating connections.
func (s *Socket) RegisterExternalRegion(r ExternalRegion) error {
	const op = "memif_register_external_region"
	if r == nil {
		return argErr(op, "region", "nil")
	}
	_, withOff := r.(ExternalBufferOffsetter)
	return s.control(op, func() C.int {
		s.ext = r
		w := C.int(0)
		if withOff {
			w = 1
		}
		C.memifgo_register_external_region(s.h, w)
		return 0
	})
}
