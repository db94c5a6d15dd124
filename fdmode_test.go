//go:build linux && cgo

package memif

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// epollLoop drives a socket created with OnControlFDUpdate: the
// application's own epoll watches the fds libmemif reports and hands
// readiness back through ControlFDHandler.
type epollLoop struct {
	epfd int
	mu   sync.Mutex
	evs  map[int]FDEvent
	s    *Socket
	stop chan struct{}
	done chan error
}

func (l *epollLoop) update(ev FDEvent) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case ev.Type&FDEventDel != 0:
		delete(l.evs, ev.FD)
		err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, ev.FD, nil)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EBADF) {
			return nil
		}
		return err
	default:
		var e unix.EpollEvent
		e.Fd = int32(ev.FD)
		if ev.Type&FDEventRead != 0 {
			e.Events |= unix.EPOLLIN
		}
		if ev.Type&FDEventWrite != 0 {
			e.Events |= unix.EPOLLOUT
		}
		op := unix.EPOLL_CTL_ADD
		if ev.Type&FDEventMod != 0 {
			op = unix.EPOLL_CTL_MOD
			if old, ok := l.evs[ev.FD]; ok && ev.data == nil {
				ev.data = old.data
			}
		}
		l.evs[ev.FD] = ev
		return unix.EpollCtl(l.epfd, op, ev.FD, &e)
	}
}

func (l *epollLoop) run() {
	events := make([]unix.EpollEvent, 16)
	for {
		select {
		case <-l.stop:
			l.done <- nil
			return
		default:
		}
		n, err := unix.EpollWait(l.epfd, events, 5)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			l.done <- err
			return
		}
		for _, e := range events[:n] {
			l.mu.Lock()
			ev, ok := l.evs[int(e.Fd)]
			l.mu.Unlock()
			if !ok {
				continue // removed while we waited
			}
			var what FDEventType
			if e.Events&unix.EPOLLIN != 0 {
				what |= FDEventRead
			}
			if e.Events&unix.EPOLLOUT != 0 {
				what |= FDEventWrite
			}
			if e.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
				what |= FDEventError
			}
			if err := l.s.ControlFDHandler(ev, what); err != nil {
				l.done <- err
				return
			}
		}
	}
}

func TestControlFDMode(t *testing.T) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	require.NoError(t, err)
	defer unix.Close(epfd)
	l := &epollLoop{epfd: epfd, evs: map[int]FDEvent{}, stop: make(chan struct{}), done: make(chan error, 1)}
	s, err := CreateSocket(&SocketArgs{Path: testSocketPath(t), OnControlFDUpdate: l.update})
	require.NoError(t, err)
	l.s = s
	assert.ErrorIs(t, s.PollEvent(0), ErrInvalArg, "no internal poll in this mode")
	assert.ErrorIs(t, s.CancelPollEvent(), ErrInvalArg)
	assert.ErrorIs(t, s.ControlFDHandler(FDEvent{FD: 3}, FDEventRead), ErrInvalArg)

	mev, sev := newEvents(), newEvents()
	master, err := Create(&ConnArgs{Socket: s, IsMaster: true, OnConnect: func(c *Conn) error { mev.connected <- c; return nil },
		OnDisconnect: func(c *Conn) error { mev.disconnected <- c; return nil }})
	require.NoError(t, err)
	l.mu.Lock()
	assert.Len(t, l.evs, 1, "the listener fd was handed to the application")
	l.mu.Unlock()
	go l.run()
	slave, err := Create(&ConnArgs{Socket: s, OnConnect: func(c *Conn) error { sev.connected <- c; return nil }})
	require.NoError(t, err)
	waitConn(t, mev.connected, "master OnConnect", 20*time.Second)
	waitConn(t, sev.connected, "slave OnConnect", 20*time.Second)

	const count = 10_000
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		errs <- sendStream(slave, 0, 3, count, func(uint64) int { return 100 }, 2048, 32, stop)
	}()
	go func() { defer wg.Done(); errs <- recvStream(master, 0, 3, count, stop) }()
	waitAll(t, &wg, stop, 30*time.Second)
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	require.NoError(t, slave.Delete())
	waitConn(t, mev.disconnected, "master OnDisconnect", 20*time.Second)
	close(l.stop)
	require.NoError(t, <-l.done)
	require.NoError(t, master.Delete())
	require.NoError(t, s.Delete())
	l.mu.Lock()
	defer l.mu.Unlock()
	assert.Empty(t, l.evs, "libmemif told the application to stop watching every fd")
}

func TestSetListenerFD(t *testing.T) {
	path := testSocketPath(t)
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	require.NoError(t, unix.Bind(fd, &unix.SockaddrUnix{Name: path}))
	require.NoError(t, unix.Listen(fd, 4))

	dm := newDriver(t, &SocketArgs{Path: path})
	var lerr error
	var got int
	dm.do(func() { lerr = dm.s.SetListenerFD(fd); got = dm.s.ListenerFD() })
	require.NoError(t, lerr)
	assert.Equal(t, fd, got)
	mev := newEvents()
	_, err = dm.create(mev.wire(ConnArgs{IsMaster: true}))
	require.NoError(t, err)
	ds := newDriver(t, &SocketArgs{Path: path})
	sev := newEvents()
	_, err = ds.create(sev.wire(ConnArgs{}))
	require.NoError(t, err)
	waitConn(t, mev.connected, "master OnConnect via the given listener", 20*time.Second)
	waitConn(t, sev.connected, "slave OnConnect", 20*time.Second)
	dm.do(func() { lerr = dm.s.SetListenerFD(-1) })
	assert.ErrorIs(t, lerr, ErrInvalArg)
	ds.close()
	dm.close()
	// Delete left the caller's listener open.
	_, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	assert.NoError(t, err)
}

func TestSocketDeleteClosesLibmemifFDs(t *testing.T) {
	before := openFDs(t)
	for i := 0; i < 50; i++ {
		s, err := CreateSocket(&SocketArgs{Path: testSocketPath(t), ConnectionRequestTimer: time.Second})
		require.NoError(t, err)
		c, err := Create(&ConnArgs{Socket: s, IsMaster: true})
		require.NoError(t, err)
		require.NoError(t, c.Delete())
		require.NoError(t, s.Delete())
	}
	assert.Equal(t, before, openFDs(t))
}
