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
	"slices"
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
	FDEventRead  FDEventType = C.MEMIF_FD_EVENT_READ
	FDEventWrite FDEventType = C.MEMIF_FD_EVENT_WRITE
	FDEventError FDEventType = C.MEMIF_FD_EVENT_ERROR
	FDEventDel   FDEventType = C.MEMIF_FD_EVENT_DEL // fd is about to close: stop watching it
	FDEventMod   FDEventType = C.MEMIF_FD_EVENT_MOD // change the watched events
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
}

// Socket is a memif socket (memif_socket_handle_t) and its connections.
type Socket struct {
	mu       sync.Mutex   // one goroutine on the control path at a time
	cbTID    atomic.Int64 // OS thread running a callback (holding mu), or 0
	cancelMu sync.RWMutex
	cbErr    error // first callback failure during the current control call

	h       C.memif_socket_handle_t
	handle  cgo.Handle
	path    string
	onFD    func(FDEvent) error
	ext     ExternalRegion
	conns   map[*Conn]struct{}
	userLFD bool // listener fd came from SetListenerFD: not ours to close
	epfd    int  // libmemif's internal epoll fd, -1 if unknown (see fdleak.go)
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
	s := &Socket{path: a.Path, onFD: a.OnControlFDUpdate, conns: map[*Conn]struct{}{}, epfd: -1}
	s.handle = cgo.NewHandle(s)

	var ca C.memif_socket_args_t
	copyCString(ca.path[:], a.Path)
	copyCString(ca.app_name[:], a.AppName)
	withFD := C.int(0)
	if s.onFD != nil {
		withFD = 1
	}
	var before map[int]bool
	if s.onFD == nil {
		before = openFDSet()
	}
	s.mu.Lock()
	code := C.memifgo_create_socket(&s.h, &ca, C.uintptr_t(s.handle), withFD)
	err := s.finish(op, code)
	if err == nil && s.onFD == nil {
		s.epfd = findSocketEpoll(before)
	}
	if err == nil && a.ConnectionRequestTimer > 0 {
		err = s.finish("memif_set_connection_request_timer",
			C.memifgo_set_timer(s.h, C.int64_t(a.ConnectionRequestTimer)))
	}
	s.mu.Unlock()
	if err != nil {
		if s.h != nil {
			C.memif_delete_socket(&s.h)
		}
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
// Beyond libmemif, it closes the fds libmemif leaves open (listener, poll
// cancel eventfd, request timer; see fdleak.go) and removes the socket file
// it bound, so the path can be reused.
func (s *Socket) Delete() error {
	const op = "memif_delete_socket"
	locked, err := s.begin()
	if err != nil {
		return &Error{Op: op, Err: err}
	}
	defer s.end(locked)
	if n := len(s.conns); n > 0 {
		return argErr(op, "socket", "%d connection(s) still use it; delete them first", n)
	}
	lfd := int(C.memif_get_listener_fd(s.h))
	var leaked []int
	if s.epfd >= 0 {
		leaked = epollTargets(s.epfd)
	}
	if lfd > 0 && !slices.Contains(leaked, lfd) {
		leaked = append(leaked, lfd)
	}
	s.cancelMu.Lock()
	code := C.memif_delete_socket(&s.h)
	if code == 0 {
		s.h = nil
	}
	s.cancelMu.Unlock()
	if err := s.finish(op, code); err != nil {
		return err
	}
	for _, fd := range leaked {
		if fd != lfd || !s.userLFD {
			unix.Close(fd)
		}
	}
	if lfd > 0 && !s.userLFD && !strings.HasPrefix(s.path, "@") {
		if fi, err := os.Lstat(s.path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(s.path)
		}
	}
	s.handle.Delete()
	return nil
}

// Path wraps memif_get_socket_path: the path as libmemif holds it
// (abstract paths start with '@').
func (s *Socket) Path() string {
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
	locked, err := s.begin()
	if err != nil {
		return -1
	}
	defer s.end(locked)
	return int(C.memif_get_listener_fd(s.h))
}

// SetListenerFD wraps memif_set_listener_fd: listen on an fd the caller
// opened (for example one inherited from systemd). The caller keeps
// ownership: Delete neither closes it nor removes its file.
func (s *Socket) SetListenerFD(fd int) error {
	const op = "memif_set_listener_fd"
	if fd < 0 {
		return argErr(op, "fd", "%d is negative", fd)
	}
	err := s.control(op, func() C.int { return C.memif_set_listener_fd(s.h, C.int(fd)) })
	if err == nil {
		s.userLFD = true
	}
	return err
}

// SetConnectionRequestTimer wraps memif_set_connection_request_timer: every
// disconnected slave on this socket requests a connection at this period.
// Zero stops the timer.
func (s *Socket) SetConnectionRequestTimer(d time.Duration) error {
	const op = "memif_set_connection_request_timer"
	if d < 0 {
		return argErr(op, "period", "%v is negative", d)
	}
	return s.control(op, func() C.int { return C.memifgo_set_timer(s.h, C.int64_t(d)) })
}

// PollEvent wraps memif_poll_event: wait up to timeout for one event on the
// socket's internal epoll and handle it, running callbacks on this goroutine.
// A negative timeout blocks; zero returns at once. Interrupted waits (EINTR,
// which Go's runtime signals cause) are retried with the time left. After
// CancelPollEvent it returns ErrPollCancel. Needs a socket created without
// OnControlFDUpdate.
func (s *Socket) PollEvent(timeout time.Duration) error {
	const op = "memif_poll_event"
	if s.onFD != nil {
		return argErr(op, "socket", "it was created with OnControlFDUpdate: use ControlFDHandler")
	}
	locked, err := s.begin()
	if err != nil {
		return &Error{Op: op, Err: err}
	}
	defer s.end(locked)
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		ms := C.int(-1)
		if timeout >= 0 {
			// Round up so a short positive timeout does not busy-poll.
			ms = C.int((timeout + time.Millisecond - 1) / time.Millisecond)
		}
		code, errno := C.memif_poll_event(s.h, ms)
		if Errno(code) == ErrSyscall && errors.Is(errno, unix.EINTR) && s.cbErr == nil {
			if timeout > 0 {
				if timeout = time.Until(deadline); timeout <= 0 {
					return nil
				}
			}
			continue
		}
		return s.finish(op, code)
	}
}

// CancelPollEvent wraps memif_cancel_poll_event: make a concurrent (or the
// next) PollEvent return ErrPollCancel. Safe from any goroutine.
func (s *Socket) CancelPollEvent() error {
	const op = "memif_cancel_poll_event"
	s.cancelMu.RLock()
	defer s.cancelMu.RUnlock()
	if s.onFD != nil {
		return argErr(op, "socket", "it was created with OnControlFDUpdate and has no poll to cancel")
	}
	if s.h == nil { // s.h changes only under cancelMu's write lock

		return &Error{Op: op, Err: ErrDeleted}
	}
	return codeErr(op, C.memif_cancel_poll_event(s.h))
}

// ControlFDHandler wraps memif_control_fd_handler: tell libmemif that the fd
// of ev (as reported to OnControlFDUpdate) is ready with events. Callbacks
// run on this goroutine.
func (s *Socket) ControlFDHandler(ev FDEvent, events FDEventType) error {
	const op = "memif_control_fd_handler"
	if ev.data == nil {
		return argErr(op, "event", "fd %d carries no libmemif context (was it reported by OnControlFDUpdate?)", ev.FD)
	}
	return s.control(op, func() C.int {
		return C.memif_control_fd_handler(ev.data, C.memif_fd_event_type_t(events))
	})
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
