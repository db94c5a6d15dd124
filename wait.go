//go:build linux && cgo

package memif

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// WaitMode is how a Queue's Receive (and Forward) waits for packets.
type WaitMode int

const (
	// WaitInterrupt parks the handler goroutine in Go's scheduler on the
	// queue's eventfd (the peer signals it): an idle queue holds no OS
	// thread and burns no CPU.
	WaitInterrupt WaitMode = iota
	// WaitAdaptive watches the ring inside C for SpinTime (in slices of a
	// few µs with a yield between, no syscall while it spins) before
	// parking as WaitInterrupt: lower latency under load, still no thread
	// when idle.
	WaitAdaptive
	// WaitPoll never parks: the rx queue is set to polling mode (the peer
	// stops signalling) and Receive watches the ring inside C, checking
	// its contexts every SpinTime. Lowest latency and highest rate; each
	// queue's handler has an OS thread of its own and keeps a core busy.
	WaitPoll
)

func (m WaitMode) String() string {
	switch m {
	case WaitInterrupt:
		return "interrupt"
	case WaitAdaptive:
		return "adaptive"
	case WaitPoll:
		return "poll"
	}
	return "WaitMode(" + strconv.Itoa(int(m)) + ")"
}

// DefaultRecheck is how long a parked Receive sleeps at most before looking
// at the ring again (EndpointConfig.Recheck).
const DefaultRecheck = 100 * time.Millisecond

// waiter parks a goroutine until an rx queue's eventfd is readable. It
// watches a duplicate of the fd on Go's netpoller and never reads it: the
// waiting receive (spin.h) reads it, then looks at the ring, and only an
// empty look lets the caller park, so every later packet's signal is seen. The duplicate keeps the eventfd open after
// libmemif closes its own at link down, so a late kick is harmless.
type waiter struct {
	file *os.File
	raw  syscall.RawConn
	fd   int // the duplicate, for kick
}

func newWaiter(efd int) (*waiter, error) {
	dup, err := unix.FcntlInt(uintptr(efd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, syscallErr(err)
	}
	// Non-blocking, so os.NewFile registers it with the netpoller (once,
	// edge-triggered: an edge while nobody waits is remembered).
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return nil, syscallErr(err)
	}
	w := &waiter{file: os.NewFile(uintptr(dup), "memif-queue-efd"), fd: dup}
	if w.raw, err = w.file.SyscallConn(); err != nil {
		w.file.Close()
		return nil, err
	}
	return w, nil
}

// readable reports, without reading it, whether fd has a count: the level
// the edge-triggered netpoller cannot tell.
func readable(fd uintptr) bool {
	pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd[:], 0)
		if err == unix.EINTR {
			continue
		}
		return n > 0 || err != nil
	}
}

// park waits until the eventfd is readable, kick is called, or recheck
// passes. The caller must have had an empty waiting receive
// (RefillRxBurstWait) after the last wake-up: the netpoller only wakes on a
// new signal.
func (w *waiter) park(recheck time.Duration) {
	// The deadline is a safety net: a wake-up is lost only where the ring
	// layout could not be verified (the waiting receive then polls
	// memif_rx_burst, which reads the eventfd after finding the ring empty
	// and so can swallow the signal of a packet published in between).
	w.file.SetReadDeadline(time.Now().Add(recheck))
	w.raw.Read(readable)
}

// kick wakes a parked (or the next) park: a count on the eventfd, which the
// next rx burst consumes as it would a spurious signal.
func (w *waiter) kick() {
	unix.Write(w.fd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
}

func (w *waiter) close() { w.file.Close() }

// parkCtx is park that a context other than the session's can also end.
func (w *waiter) parkCtx(ctx context.Context, recheck time.Duration) {
	stop := context.AfterFunc(ctx, w.kick)
	w.park(recheck)
	stop()
}
