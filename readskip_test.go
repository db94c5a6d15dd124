//go:build linux && cgo

package memif

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func needReadSkip(t *testing.T) {
	if !readSkipCompiled() {
		t.Skip("the eventfd read skip is not in this build (it needs -tags memif_readskip, never under AddressSanitizer)")
	}
}

// threadReads is the read system calls this OS thread made so far
// (/proc/thread-self/io's syscr; the caller locks its thread).
func threadReads(t *testing.T) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/io", unix.Gettid()))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("no syscr in %q", b)
	return 0
}

// readsDuring is the read system calls this thread made in fn, less those
// of reading the count itself.
func readsDuring(t *testing.T, fn func()) int64 {
	a := threadReads(t)
	b := threadReads(t)
	fn()
	c := threadReads(t)
	return (c - b) - (b - a)
}

// recvVerified receives until want packets of stream arrived (seq from
// *next on, each checked), polling RxBurst; it empties the ring.
func recvVerified(t *testing.T, c *Conn, bufs *Buffers, stream uint16, next *uint64, want uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for *next < want {
		require.True(t, time.Now().Before(deadline), "packet %d not within 5s", *next)
		n, _, err := c.RxBurst(0, bufs, bufs.Cap())
		require.NoError(t, err)
		for i := 0; i < n; i++ {
			st, seq, err := checkPacket(bufs.Data(i))
			require.NoError(t, err)
			require.Equal(t, stream, st)
			require.Equal(t, *next, seq)
			*next++
		}
		require.NoError(t, c.RefillQueue(0, n, 0))
	}
}

// In polling mode libmemif's eventfd read, made in every burst that finds
// the ring empty or empties it, makes no system call; in interrupt mode,
// and back in it, it does. Counted by the kernel for this thread.
func TestReadSkipNoSyscallWhenPolling(t *testing.T) {
	needReadSkip(t)
	const bursts = 200
	p := connectPair(t, ConnArgs{}, ConnArgs{})
	bufs := newBufs(t, 64)
	efd, err := p.slave.QueueEventFD(0)
	require.NoError(t, err)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	empty := func() {
		for i := 0; i < bursts; i++ {
			n, _, err := p.slave.RxBurst(0, bufs, bufs.Cap())
			require.NoError(t, err)
			require.Zero(t, n)
		}
	}
	var next uint64
	traffic := func() { // a packet per burst, each burst empties the ring
		for i := 0; i < bursts; i++ {
			sendOne(t, p.master, 0, 1, next)
			recvVerified(t, p.slave, bufs, 1, &next, next+1)
		}
	}
	require.GreaterOrEqual(t, readsDuring(t, empty), int64(bursts), "interrupt mode: a read per empty burst")

	require.NoError(t, p.slave.SetRxMode(RxModePolling, 0))
	require.True(t, readSkipPolled(efd))
	require.Zero(t, readsDuring(t, empty), "polling: empty bursts")
	require.Zero(t, readsDuring(t, traffic), "polling: bursts that empty the ring")

	require.NoError(t, p.slave.SetRxMode(RxModeInterrupt, 0))
	require.False(t, readSkipPolled(efd))
	require.GreaterOrEqual(t, readsDuring(t, traffic), int64(bursts), "interrupt mode again: a read per burst")
}

// Back in interrupt mode the peer's signals arrive and RxBurst consumes
// them again: OnInterrupt runs, every packet verified.
func TestReadSkipInterruptsAfterPolling(t *testing.T) {
	needReadSkip(t)
	const rounds = 50
	// Level-triggered: OnInterrupt runs on every poll until RxBurst reads
	// the eventfd, so it must not block; irq holds the latest.
	irq := make(chan uint16, 1)
	p := connectPair(t, ConnArgs{}, ConnArgs{OnInterrupt: func(c *Conn, qid uint16) error {
		select {
		case irq <- qid:
		default:
		}
		return nil
	}})
	bufs := newBufs(t, 64)
	var next uint64
	for cycle := 0; cycle < 3; cycle++ {
		require.NoError(t, p.slave.SetRxMode(RxModePolling, 0))
		for i := 0; i < rounds; i++ {
			sendOne(t, p.master, 0, 2, next)
			recvVerified(t, p.slave, bufs, 2, &next, next+1)
		}
		require.NoError(t, p.slave.SetRxMode(RxModeInterrupt, 0))
		for len(irq) > 0 { // a signal the peer sent before it saw polling
			<-irq
		}
		for i := 0; i < rounds; i++ {
			sendOne(t, p.master, 0, 2, next)
			require.True(t, efdReadable(t, p.slave, 0, 5*time.Second), "cycle %d: packet %d signalled", cycle, next)
			select {
			case q := <-irq:
				require.Zero(t, q)
			case <-time.After(5 * time.Second):
				t.Fatalf("cycle %d: no interrupt for packet %d within 5s", cycle, next)
			}
			recvVerified(t, p.slave, bufs, 2, &next, next+1)
			n, _, err := p.slave.RxBurst(0, bufs, bufs.Cap()) // empty: reads the eventfd
			require.NoError(t, err)
			require.Zero(t, n)
			require.False(t, efdReadable(t, p.slave, 0, 0), "RxBurst consumed the signal")
			for len(irq) > 0 { // calls made before the read
				<-irq
			}
		}
	}
}

// A flag never outlives its eventfd: after the link goes down (the slave
// deleted, the master gone, or an OnDisconnect that panics) the eventfd's
// number, reused by a pipe, reads normally through the process's read().
func TestReadSkipFDReuse(t *testing.T) {
	needReadSkip(t)
	for _, how := range []string{"delete", "peer gone", "panicking OnDisconnect"} {
		t.Run(how, func(t *testing.T) {
			var sargs ConnArgs
			if how == "panicking OnDisconnect" {
				sargs.OnDisconnect = func(*Conn) error { panic("OnDisconnect fails") }
			}
			p := connectPair(t, ConnArgs{}, sargs)
			efd, err := p.slave.QueueEventFD(0)
			require.NoError(t, err)
			require.NoError(t, p.slave.SetRxMode(RxModePolling, 0))
			require.True(t, readSkipPolled(efd))
			// The flag is live: the process's read() skips this fd.
			_, err = readC(efd, make([]byte, 8))
			require.ErrorIs(t, err, unix.EAGAIN)

			switch how {
			case "peer gone":
				require.NoError(t, p.d.deleteConn(p.master))
			default:
				p.d.deleteConn(p.slave) // a panicking OnDisconnect is reported here
			}
			if how == "peer gone" { // Delete returns after OnDisconnect
				waitConn(t, p.sev.disconnected, "slave OnDisconnect", 20*time.Second)
			}
			require.False(t, readSkipPolled(efd))

			if how == "peer gone" { // its reconnect attempts would race for fds
				require.NoError(t, p.d.deleteConn(p.slave))
			}

			// Take the number back (the lowest free fd is handed out) with
			// socketpairs: either end reads what the other writes.
			var fds []int
			defer func() {
				for _, fd := range fds {
					unix.Close(fd)
				}
			}()
			r, w := -1, -1
			for i := 0; i < 512 && r != efd; i++ {
				sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				require.NoError(t, err)
				fds = append(fds, sp[0], sp[1])
				r, w = sp[0], sp[1]
				if w == efd {
					r, w = w, r
				}
			}
			require.Equal(t, efd, r, "fd %d never came back", efd)
			msg := []byte("not an eventfd any more")
			_, err = unix.Write(w, msg)
			require.NoError(t, err)
			got := make([]byte, 64)
			n, err := readC(r, got)
			require.NoError(t, err)
			require.True(t, bytes.Equal(msg, got[:n]), "read %q", got[:n])
		})
	}
}

// A peer that writes the eventfd of a queue in polling mode: the signal is
// consumed before OnInterrupt runs (once per signal), so the level-
// triggered event loop does not come straight back, and packets still flow.
func TestReadSkipHostileSignalWhenPolling(t *testing.T) {
	needReadSkip(t)
	const signals = 20
	var calls atomic.Int64
	irq := make(chan struct{}, 1)
	p := connectPair(t, ConnArgs{}, ConnArgs{OnInterrupt: func(c *Conn, qid uint16) error {
		calls.Add(1)
		select { // never blocks: without the drain it would run on every poll
		case irq <- struct{}{}:
		default:
		}
		return nil
	}})
	bufs := newBufs(t, 64)
	efd, err := p.slave.QueueEventFD(0)
	require.NoError(t, err)
	require.NoError(t, p.slave.SetRxMode(RxModePolling, 0))
	var next uint64
	sendOne(t, p.master, 0, 3, next) // the peer has seen polling: no signal
	recvVerified(t, p.slave, bufs, 3, &next, 1)
	for len(irq) > 0 {
		<-irq
	}
	calls.Store(0)

	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	for i := 0; i < signals; i++ {
		// What a peer that ignores the mode does: the eventfd is one file
		// for both ends.
		_, err := unix.Write(efd, one)
		require.NoError(t, err)
		select {
		case <-irq:
		case <-time.After(5 * time.Second):
			t.Fatalf("signal %d: no OnInterrupt within 5s", i)
		}
		// The loop has run its poll since: it consumed the count.
		for j := 0; j < 3; j++ {
			p.d.do(func() {})
		}
		require.False(t, efdReadable(t, p.slave, 0, 0), "signal %d left on the eventfd", i)
		require.Equal(t, int64(i+1), calls.Load(), "OnInterrupt once per signal")
		sendOne(t, p.master, 0, 3, next)
		recvVerified(t, p.slave, bufs, 3, &next, next+1)
	}
	require.Equal(t, int64(signals), calls.Load())
}

// The binding's own eventfd reads are never skipped: a waiting receive or
// forward that ends empty consumes a signal on a polled queue (a raw read),
// so a reader that parks after it does not wake at once, forever; also on a
// ring whose layout is unknown, where the wait polls memif_rx_burst (whose
// own read is skipped) and consumes the eventfd before its last poll.
func TestReadSkipWaitingReceiveConsumes(t *testing.T) {
	needReadSkip(t)
	p := connectPair(t, ConnArgs{}, ConnArgs{})
	p2 := connectPair(t, ConnArgs{}, ConnArgs{})
	f := newForwarder(t, p.slave, p2.master, 64, 1024)
	bufs := newBufs(t, 64)
	dst, offs := make([]byte, 64*2048), make([]int32, 65)
	efd, err := p.slave.QueueEventFD(0)
	require.NoError(t, err)
	require.NoError(t, p.slave.SetRxMode(RxModePolling, 0))
	var next uint64
	waits := map[string]func() (int, error){
		"RefillRxBurstWait": func() (int, error) {
			n, _, err := p.slave.RefillRxBurstWait(0, 0, 0, bufs, bufs.Cap(), 10*time.Microsecond)
			return n, err
		},
		"CopyRxWait": func() (int, error) {
			n, _, err := p.slave.CopyRxWait(0, bufs, dst, offs, 10*time.Microsecond)
			return n, err
		},
		"ForwardWait": func() (int, error) {
			n, d, more, err := p.slave.ForwardWait(0, p2.master, 0, f.rx, f.tx, 10*time.Microsecond)
			require.Zero(t, d)
			require.False(t, more)
			return n, err
		},
	}
	for _, ring := range []string{"known ring", "unknown ring"} {
		if ring == "unknown ring" {
			p.slave.forgetRxRing(0)
			require.Nil(t, p.slave.ringDesc(false, 0, 0))
		}
		for name, wait := range waits {
			for i := 0; i < 10; i++ {
				_, err := unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
				require.NoError(t, err)
				n, err := wait()
				require.NoError(t, err)
				require.Zero(t, n)
				require.False(t, efdReadable(t, p.slave, 0, 0), "%s, %s left the signal", ring, name)
				sendOne(t, p.master, 0, 4, next) // and packets still flow
				recvVerified(t, p.slave, bufs, 4, &next, next+1)
			}
		}
	}
}

// SetRxMode from another goroutine racing the link going down: whatever
// the interleaving, no flag is left once the disconnect returned.
func TestReadSkipSetRxModeRacesDisconnect(t *testing.T) {
	needReadSkip(t)
	for cycle := 0; cycle < 10; cycle++ {
		p := connectPair(t, ConnArgs{}, ConnArgs{})
		efd, err := p.slave.QueueEventFD(0)
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() {
			for {
				if err := p.slave.SetRxMode(RxModePolling, 0); err != nil {
					done <- err
					return
				}
			}
		}()
		require.NoError(t, p.d.deleteConn(p.master))
		waitConn(t, p.sev.disconnected, "slave OnDisconnect", 20*time.Second)
		select {
		case err := <-done:
			require.ErrorIs(t, err, ErrDisconnected)
		case <-time.After(5 * time.Second):
			t.Fatal("SetRxMode still succeeds after the link went down")
		}
		require.False(t, readSkipPolled(efd), "cycle %d: a flag outlived the link", cycle)
	}
}
