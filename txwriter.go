//go:build linux && cgo

package memif

import (
	"errors"
	"runtime"
	"time"
)

// TxWriter sends packets from Go memory on one tx queue, one call per
// packet (gopacket's WritePacketData is built on it, in the memifpacket
// module): each packet is copied into shared memory and sent in one cgo
// crossing (CopyTx), chained when longer than the buffer size. It allocates
// nothing per packet. One goroutine at a time uses a writer; make one per
// queue.
type TxWriter struct {
	c       *Conn
	qid     uint16
	b       *Buffers
	offs    [2]int32
	timeout time.Duration
}

// txWriterBatch descriptors hold any one packet: MaxPacket bytes in the
// shortest segments a master assumes (minSegment), and a batch this size
// lifts CopyTx's bound altogether on rings of up to 1024 slots.
const txWriterBatch = (MaxPacket + minSegment - 1) / minSegment

// Waiting for ring space: a few retries with a yield, then sleeps that
// double up to txMaxBackoff (the peer gives no signal when it frees slots).
const (
	txSpins      = 16
	txMaxBackoff = time.Millisecond
)

// NewTxWriter writes to tx queue qid of c. Close it when done.
func NewTxWriter(c *Conn, qid uint16) (*TxWriter, error) {
	if c == nil {
		return nil, nilErr("NewTxWriter", "connection")
	}
	b, err := NewBuffers(txWriterBatch)
	if err != nil {
		return nil, err
	}
	return &TxWriter{c: c, qid: qid, b: b}, nil
}

// SetTimeout bounds how long WritePacket waits for ring space; it then
// returns ErrTimeout. Zero (the default) waits until there is space or the
// link goes down.
func (w *TxWriter) SetTimeout(d time.Duration) { w.timeout = d }

// WritePacket copies p (1..MaxPacket bytes) into the queue's buffers and
// sends it. When the ring is full (or a master's slave has not refilled yet,
// just after connect) it waits, see SetTimeout. p is not retained. A link
// that is down gives ErrDisconnected (ErrDeleted after Delete).
func (w *TxWriter) WritePacket(p []byte) error {
	const op = "TxWriter.WritePacket"
	if w.b == nil {
		return ErrClosed
	}
	if len(p) == 0 || len(p) > MaxPacket {
		return argErr(op, "packet", "%d bytes is outside 1..%d", len(p), MaxPacket)
	}
	w.offs[1] = int32(len(p))
	var deadline time.Time
	backoff := time.Duration(0)
	for try := 0; ; try++ {
		n, err := w.c.CopyTx(w.qid, w.b, p, w.offs[:])
		if n == 1 {
			return nil
		}
		if err != nil && !errors.Is(err, ErrNoBufRing) {
			return err
		}
		if w.timeout > 0 {
			now := time.Now()
			if deadline.IsZero() {
				deadline = now.Add(w.timeout)
			} else if !now.Before(deadline) {
				return ErrTimeout
			}
		}
		if try < txSpins {
			runtime.Gosched()
			continue
		}
		backoff = min(max(2*backoff, time.Microsecond), txMaxBackoff)
		if !deadline.IsZero() {
			backoff = min(backoff, max(time.Until(deadline), 0))
		}
		time.Sleep(backoff)
	}
}

// Close frees the writer's batch. Later calls return ErrClosed.
func (w *TxWriter) Close() error {
	if w.b != nil {
		w.b.Free()
		w.b = nil
	}
	return nil
}
