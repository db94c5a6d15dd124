// Package exutil holds what every example needs around the binding: a
// goroutine that drives a socket's control path, and waiting for links.
package exutil

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/memif-go/memif"
)

// Driver runs a socket's control path (PollEvent, so every callback) on its
// own goroutine until Stop. Other goroutines may still make control calls
// (Create, Delete, Details): the short poll timeout lets them in.
type Driver struct {
	s    *memif.Socket
	done chan struct{}
	// Errs receives what PollEvent reported (callback errors, panics);
	// the driver keeps going. Buffered; extra errors are dropped.
	Errs chan error
}

// Drive starts the control goroutine of s.
func Drive(s *memif.Socket) *Driver {
	d := &Driver{s: s, done: make(chan struct{}), Errs: make(chan error, 16)}
	go func() {
		defer close(d.done)
		for {
			err := s.PollEvent(20 * time.Millisecond)
			if errors.Is(err, memif.ErrPollCancel) || errors.Is(err, memif.ErrDeleted) {
				return
			}
			if err != nil {
				select {
				case d.Errs <- err:
				default:
				}
			}
		}
	}()
	return d
}

// Stop ends the control goroutine (libmemif's cancel is final for the
// socket) and waits for it.
func (d *Driver) Stop() {
	d.s.CancelPollEvent()
	<-d.done
}

// Events turns connection callbacks into channels.
type Events struct {
	Up   chan *memif.Conn
	Down chan *memif.Conn
}

// NewEvents returns Events with buffered channels.
func NewEvents() *Events {
	return &Events{Up: make(chan *memif.Conn, 8), Down: make(chan *memif.Conn, 8)}
}

// Wire sets a's OnConnect and OnDisconnect to feed e, after running any
// callbacks already set (so a waiter sees their work done).
func (e *Events) Wire(a *memif.ConnArgs) {
	up, down := a.OnConnect, a.OnDisconnect
	a.OnConnect = func(c *memif.Conn) error {
		var err error
		if up != nil {
			err = up(c)
		}
		select {
		case e.Up <- c:
		default:
		}
		return err
	}
	a.OnDisconnect = func(c *memif.Conn) error {
		var err error
		if down != nil {
			err = down(c)
		}
		select {
		case e.Down <- c:
		default:
		}
		return err
	}
}

// WaitUp waits for a link, or fails after timeout (0: forever).
func (e *Events) WaitUp(timeout time.Duration) (*memif.Conn, error) {
	var after <-chan time.Time
	if timeout > 0 {
		after = time.After(timeout)
	}
	select {
	case c := <-e.Up:
		return c, nil
	case <-after:
		return nil, fmt.Errorf("no connection within %v", timeout)
	}
}

// Fatal prints a one-line error for command name and exits 1.
func Fatal(name string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	os.Exit(1)
}
