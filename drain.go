//go:build linux && cgo

package memif

import (
	"context"
	"fmt"
	"time"
)

// TxPending counts the buffers of the link's tx rings that the peer has not
// consumed yet (ErrDisconnected without a link). In OnLinkDown the rings
// are still mapped: it tells what a link-down lost.
func (e *Endpoint) TxPending() (int, error) {
	d, err := e.Details()
	if err != nil {
		return 0, err
	}
	n, ok := txPending(d)
	if !ok {
		return 0, &Error{Op: "Endpoint.TxPending", Err: ErrDisconnected}
	}
	return n, nil
}

// txPending reads the tx rings' indexes: a slave produces at head and gets
// buffers back at tail; a master produces at tail and its slave gives
// buffers back by moving head a whole ring ahead of it.
func txPending(d *Details) (n int, ok bool) {
	if len(d.TxQueues) == 0 {
		return 0, false
	}
	for _, q := range d.TxQueues {
		out := int(q.Head - q.Tail) // uint16 arithmetic: rings wrap
		if d.IsMaster {
			out = int(q.RingSize) - out
		}
		n += out
	}
	return n, true
}

// Drain waits until the peer consumed everything sent (TxPending is 0),
// for a clean exit: what is still on the rings is lost with the link. It
// returns ErrDisconnected if the link goes down first, or ctx's error with
// the count still pending.
func (e *Endpoint) Drain(ctx context.Context) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		n, err := e.TxPending()
		if err != nil || n == 0 {
			return err
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("memif: %d tx buffers not consumed: %w", n, ctx.Err())
		}
	}
}
