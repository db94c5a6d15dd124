//go:build linux && cgo

package memif

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Loop runs a socket from Go's runtime: the socket's epoll (every fd
// libmemif opens, see fds.go) waits on Go's netpoller, so an idle loop is
// parked, not blocked in a system call, and control calls from other
// goroutines never wait behind a poll. Run keeps its goroutine on one OS
// thread (see Do). Callbacks run on the goroutine that
// calls Run. Every control message is checked by the guard (guard.go)
// before libmemif reads it.
//
//	loop, err := memif.NewLoop(&memif.LoopArgs{Socket: memif.SocketArgs{Path: "@app"}})
//	conn, err := memif.Create(&memif.ConnArgs{Socket: loop.Socket(), ...})
//	err = loop.Run(ctx) // until ctx ends; then every Conn and the socket are deleted
type Loop struct {
	s       *Socket
	file    *os.File // a duplicate of the socket's epoll fd, parked on the netpoller
	raw     syscall.RawConn
	wake    int // eventfd in the socket's epoll: Do and ctx end wake Run
	onError func(error)
	errs    atomic.Uint64

	mu     sync.Mutex
	queue  []doReq
	closed bool

	started atomic.Bool
	tid     atomic.Int64 // OS thread Run is locked to, 0 when not running
	done    chan struct{}
}

// LoopArgs configure a Loop.
type LoopArgs struct {
	// Socket is the socket to create and run. OnControlFDUpdate must be nil:
	// the loop watches the fds itself.
	Socket SocketArgs
	// OnError receives what a callback or a libmemif handler returned (the
	// loop keeps running), on the loop goroutine. Errors are counted either
	// way (Errors).
	OnError func(error)
}

// ErrLoopClosed is returned by Do once Run has returned.
var ErrLoopClosed = errors.New("memif: loop closed")

// NewLoop creates the socket a Loop runs. Create connections on
// Loop.Socket(), then call Run.
func NewLoop(args *LoopArgs) (*Loop, error) {
	const op = "NewLoop"
	if args == nil {
		return nil, nilErr(op, "args")
	}
	if args.Socket.OnControlFDUpdate != nil {
		return nil, argErr(op, "socket", "OnControlFDUpdate must be nil: the loop watches the fds")
	}
	s, err := CreateSocket(&args.Socket)
	if err != nil {
		return nil, err
	}
	l := &Loop{s: s, onError: args.OnError, wake: -1, done: make(chan struct{})}
	if err := l.open(); err != nil {
		l.closeFDs()
		s.Delete()
		return nil, err
	}
	s.loop = l
	return l, nil
}

func (l *Loop) open() error {
	const op = "NewLoop"
	var err error
	if l.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return &Error{Op: op, Err: syscallErr(err)}
	}
	if err := l.s.fdt.ctl(unix.EPOLL_CTL_ADD, l.wake, unix.EPOLLIN); err != nil {
		return err
	}
	dup, err := unix.FcntlInt(uintptr(l.s.fdt.epfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return &Error{Op: op, Err: syscallErr(err)}
	}
	// Non-blocking, so os.NewFile hands it to the netpoller (an epoll fd is
	// pollable: readable while it has events ready).
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return &Error{Op: op, Err: syscallErr(err)}
	}
	l.file = os.NewFile(uintptr(dup), "memif-epoll")
	if l.raw, err = l.file.SyscallConn(); err != nil {
		return &Error{Op: op, Err: err}
	}
	return nil
}

func (l *Loop) closeFDs() {
	if l.file != nil {
		l.file.Close()
	}
	l.mu.Lock() // wakeup may run concurrently (ctx's AfterFunc outlives Run)
	defer l.mu.Unlock()
	if l.wake >= 0 {
		unix.Close(l.wake)
		l.wake = -1
	}
}

// Socket is the socket the loop runs. Create connections on it from any
// goroutine; do not call its PollEvent, the loop polls.
func (l *Loop) Socket() *Socket { return l.s }

// Errors counts what callbacks and libmemif handlers returned while the
// loop ran. Safe from any goroutine.
func (l *Loop) Errors() uint64 { return l.errs.Load() }

// Done is closed when Run has returned and everything is deleted.
func (l *Loop) Done() <-chan struct{} { return l.done }

// wakeup makes Run look at its queue and ctx. Under mu, so it never writes
// to the eventfd after shutdown closed it (its number may be reused).
func (l *Loop) wakeup() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wake >= 0 {
		unix.Write(l.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	}
}

// Do runs fn on the loop goroutine and returns what it returned; for control
// work that must not interleave with callbacks. From the loop goroutine
// itself (a callback, or a function passed to Do) fn runs at once. Before
// Run starts, fn waits for it; after Run returned, Do returns ErrLoopClosed.
func (l *Loop) Do(fn func() error) error {
	if tid := l.tid.Load(); tid != 0 && tid == int64(unix.Gettid()) {
		return fn()
	}
	r := doReq{fn: fn, done: make(chan error, 1)}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrLoopClosed
	}
	l.queue = append(l.queue, r)
	l.mu.Unlock()
	l.wakeup()
	return <-r.done
}

// doReq is one Do call waiting for the loop.
type doReq struct {
	fn   func() error
	done chan error // buffered: the loop never blocks on it
}

// runDo keeps a panic in fn from killing the loop: it comes back to Do's
// caller as a CallbackError.
func runDo(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &CallbackError{Callback: "Loop.Do", Panic: p}
		}
	}()
	return fn()
}

func (l *Loop) runQueue() {
	l.mu.Lock()
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	for _, r := range q {
		r.done <- runDo(r.fn)
	}
}

func (l *Loop) report(err error) {
	if err == nil {
		return
	}
	l.errs.Add(1)
	if l.onError != nil {
		l.onError(err)
	}
}

// Run handles the socket's events until ctx ends, then deletes every
// connection on the socket (their OnDisconnect runs here), the socket and
// the loop's own fds, and returns nil. It returns an error only if the
// loop could not wait (the socket is then cleaned up as well). Run is
// called once.
func (l *Loop) Run(ctx context.Context) error {
	if !l.started.CompareAndSwap(false, true) {
		return argErr("Loop.Run", "loop", "Run was already called")
	}
	// Locked so that Do can tell the loop goroutine by its thread, as the
	// binding tells callbacks (socket.go, begin).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l.tid.Store(int64(unix.Gettid()))
	defer l.tid.Store(0)
	stop := context.AfterFunc(ctx, l.wakeup)
	defer stop()
	timer := time.AfterFunc(time.Hour, l.wakeup)
	timer.Stop()
	defer timer.Stop()

	const op = "Loop.Run"
	var evs [16]unix.EpollEvent
	var err error
	for {
		l.runQueue()
		if ctx.Err() != nil {
			break
		}
		if at := l.s.wakeAt.Load(); at != 0 {
			timer.Reset(max(time.Until(time.Unix(0, at)), 0))
		}
		n := 0
		var werr error
		rerr := l.raw.Read(func(fd uintptr) bool {
			n, werr = unix.EpollWait(int(fd), evs[:], 0)
			return n > 0 || (werr != nil && !errors.Is(werr, unix.EINTR)) || l.s.guardDue()
		})
		if rerr == nil && werr != nil {
			rerr = syscallErr(werr)
		}
		if rerr != nil {
			err = &Error{Op: op, Err: rerr}
			break
		}
		ready := evs[:0]
		for _, e := range evs[:n] {
			if int(e.Fd) == l.wake {
				var b [8]byte
				unix.Read(l.wake, b[:])
				continue
			}
			ready = append(ready, e)
		}
		l.report(l.s.dispatch(op, ready))
	}
	l.shutdown()
	return err
}

// shutdown deletes what the loop ran and fails Do calls still queued.
func (l *Loop) shutdown() {
	l.mu.Lock()
	l.closed = true
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	for _, r := range q {
		r.done <- ErrLoopClosed
	}
	s := l.s
	for _, c := range s.connList() {
		l.report(c.Delete())
	}
	s.fdt.ctl(unix.EPOLL_CTL_DEL, l.wake, 0)
	l.closeFDs()
	l.report(s.Delete())
	close(l.done)
}
