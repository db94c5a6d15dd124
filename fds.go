//go:build linux && cgo

package memif

import (
	"errors"

	"golang.org/x/sys/unix"
)

// The binding always runs libmemif in control-fd mode: libmemif reports
// every fd it opens through on_control_fd_update, so the binding knows
// exactly which fds belong to a socket (no /proc scanning) and reads each
// control message before libmemif does (guard.go). Without
// SocketArgs.OnControlFDUpdate, the fds go to the socket's own epoll, which
// PollEvent and Loop wait on; with it, they go to the application.

// fdKind is what an fd libmemif reported is, learned when it is added.
type fdKind uint8

const (
	fdOther    fdKind = iota // eventfd or timerfd: interrupts, request timer
	fdListener               // the master's listening socket
	fdChannel                // a control channel (guarded)
)

// watched is one fd libmemif asked to be watched.
type watched struct {
	ev       FDEvent
	kind     fdKind
	guard    *channelGuard // control channels only
	dev, ino uint64        // identity: libmemif may close an fd without telling (see prune)
}

// same reports whether fd is still the file libmemif reported: its number
// may have been closed and reused since.
func (w *watched) same(fd int) bool {
	var st unix.Stat_t
	return unix.Fstat(fd, &st) == nil && st.Dev == w.dev && st.Ino == w.ino
}

// fdTable is a socket's fds and, when the binding polls, its epoll. It is
// used under Socket.mu (it changes only inside libmemif calls).
type fdTable struct {
	epfd   int // -1 when the application watches the fds
	cancel int // eventfd behind CancelPollEvent; -1 with the application's fds
	fds    map[int]*watched
	// listenName is the listener's address: channels accepted on it carry
	// it, our slaves' channels do not (they may be autobound to another).
	listenName string
	// dropped are fds libmemif stopped watching without closing them (its
	// memif_delete_socket leaves the listener open): Delete closes them.
	dropped []int
}

func newFDTable(own bool) (*fdTable, error) {
	t := &fdTable{epfd: -1, cancel: -1, fds: map[int]*watched{}}
	if !own {
		return t, nil
	}
	var err error
	if t.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, &Error{Op: "epoll_create1", Err: syscallErr(err)}
	}
	if t.cancel, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		unix.Close(t.epfd)
		return nil, &Error{Op: "eventfd", Err: syscallErr(err)}
	}
	if err := t.ctl(unix.EPOLL_CTL_ADD, t.cancel, unix.EPOLLIN); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

func (t *fdTable) ctl(op, fd int, events uint32) error {
	if t.epfd < 0 {
		return nil
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := unix.EpollCtl(t.epfd, op, fd, &ev); err != nil {
		return &Error{Op: "epoll_ctl", Err: syscallErr(err)}
	}
	return nil
}

// update applies one on_control_fd_update report.
func (t *fdTable) update(s *Socket, ev FDEvent) error {
	switch {
	case ev.Type&FDEventDel != 0:
		w := t.fds[ev.FD]
		delete(t.fds, ev.FD)
		if t.epfd >= 0 {
			unix.EpollCtl(t.epfd, unix.EPOLL_CTL_DEL, ev.FD, nil) // the fd may be closed already
		}
		if w != nil && w.kind == fdListener {
			t.dropped = append(t.dropped, ev.FD)
		}
		if w != nil && w.guard != nil {
			w.guard.release()
		}
		return nil
	case ev.Type&FDEventMod != 0:
		w := t.fds[ev.FD]
		if w == nil {
			return argErr("on_control_fd_update", "fd", "%d modified but never added", ev.FD)
		}
		w.ev.Type = ev.Type &^ FDEventMod
		if ev.data != nil {
			w.ev.data = ev.data
		}
		return t.ctl(unix.EPOLL_CTL_MOD, ev.FD, epollBits(w.ev.Type))
	default:
		w := &watched{ev: ev, kind: classifyFD(ev.FD)}
		var st unix.Stat_t
		if unix.Fstat(ev.FD, &st) == nil {
			w.dev, w.ino = st.Dev, st.Ino
		}
		if w.kind == fdListener {
			t.listenName = sockName(ev.FD)
			// A connection can vanish between readiness and libmemif's
			// accept: non-blocking, the accept fails instead of stalling
			// the control path.
			unix.SetNonblock(ev.FD, true)
		}
		if old := t.fds[ev.FD]; old != nil && old.guard != nil {
			old.guard.release() // libmemif closed it without a DEL and the number came back
		}
		t.fds[ev.FD] = w
		if w.kind == fdChannel {
			// libmemif answers each message with a sendmsg: on a blocking
			// socket, a peer that stops reading would stall the control
			// path for good. Non-blocking, the send fails and libmemif
			// drops the channel; it reads only when the fd is ready.
			unix.SetNonblock(ev.FD, true)
			w.guard = s.newChannelGuard(ev.FD)
		}
		err := t.ctl(unix.EPOLL_CTL_ADD, ev.FD, epollBits(ev.Type))
		if errors.Is(err, unix.EEXIST) {
			err = t.ctl(unix.EPOLL_CTL_MOD, ev.FD, epollBits(ev.Type))
		}
		return err
	}
}

func epollBits(t FDEventType) uint32 {
	var e uint32
	if t&FDEventRead != 0 {
		e |= unix.EPOLLIN
	}
	if t&FDEventWrite != 0 {
		e |= unix.EPOLLOUT
	}
	return e
}

func fdEvents(e uint32) FDEventType {
	var t FDEventType
	if e&unix.EPOLLIN != 0 {
		t |= FDEventRead
	}
	if e&unix.EPOLLOUT != 0 {
		t |= FDEventWrite
	}
	if e&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		t |= FDEventError
	}
	return t
}

// classifyFD tells a listener from a control channel from anything else by
// asking the kernel, not /proc.
func classifyFD(fd int) fdKind {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_SEQPACKET {
		return fdOther
	}
	if acc, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); acc != 0 {
		return fdListener
	}
	return fdChannel
}

func sockName(fd int) string {
	sa, err := unix.Getsockname(fd)
	if un, ok := sa.(*unix.SockaddrUnix); ok && err == nil {
		return un.Name
	}
	return ""
}

// prune forgets fds libmemif closed without a DEL report: its listener
// handler closes an accepted channel it already reported when sending HELLO
// fails (the peer hung up before the accept). Run after listener events.
func (t *fdTable) prune() {
	for fd, w := range t.fds {
		if !w.same(fd) {
			delete(t.fds, fd)
			if t.epfd >= 0 {
				unix.EpollCtl(t.epfd, unix.EPOLL_CTL_DEL, fd, nil)
			}
			if w.guard != nil {
				w.guard.release()
			}
		}
	}
}

// leaked lists the fds memif_delete_socket leaves open: the ones it stopped
// watching without closing (the listener) and the ones it never stopped
// watching (the request timer, control channels that never authenticated),
// each still the file libmemif reported.
func (t *fdTable) leaked() []int {
	out := append([]int(nil), t.dropped...)
	for fd, w := range t.fds {
		if w.guard != nil {
			w.guard.release()
		}
		if w.same(fd) {
			out = append(out, fd)
		}
	}
	return out
}

func (t *fdTable) close() {
	if t.epfd >= 0 {
		unix.Close(t.epfd)
		t.epfd = -1
	}
	if t.cancel >= 0 {
		unix.Close(t.cancel)
		t.cancel = -1
	}
}

// stillReady re-checks an fd just before libmemif handles it: another
// handler may have consumed the event (or closed the fd and a new one taken
// its number), and libmemif's accept and recvmsg would then block.
func stillReady(fd int) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLOUT}}
	n, err := unix.Poll(p, 0)
	return err == nil && n > 0
}

// syscallErr wraps an errno as memif's syscall error, keeping the errno for
// errors.Is (libmemif's own MEMIF_ERR_SYSCALL drops it).
func syscallErr(err error) error {
	var en unix.Errno
	if errors.As(err, &en) {
		return &SyscallError{Errno: en}
	}
	return err
}
