//go:build linux && cgo

package memif

import "time"

// ForwardWait is Forward that, when no packet waits in rx for B and A's rx
// queue rxq is empty, first waits inside C up to spin (at most MaxSpin) for
// A's next burst, in the same cgo crossing (fwdwait.h; the wait is
// RefillRxBurstWait's). pkts, dropped and more are all zero, with a nil
// error, only when spin passed with nothing received: then A's queue
// eventfd (QueueEventFD) was consumed before A's ring was looked at a last
// time, so a caller may park on it with no wake-up lost (with the same
// proviso as RefillRxBurstWait: a ring whose layout was verified). A link
// going down, A's or B's, ends the wait at once with ErrDisconnected on
// that side.
func (c *Conn) ForwardWait(rxq uint16, to *Conn, txq uint16, rx, tx *Buffers, spin time.Duration) (pkts, dropped int, more bool, err error) {
	return c.forward(rxq, to, txq, rx, tx, spin, true, false)
}

// forwardWait is ForwardWait; noarm leaves A's eventfd alone when the spin
// ends empty (for a caller that spins on rather than parks).
func (c *Conn) forwardWait(rxq uint16, to *Conn, txq uint16, rx, tx *Buffers, spin time.Duration, noarm bool) (pkts, dropped int, more bool, err error) {
	return c.forward(rxq, to, txq, rx, tx, spin, true, noarm)
}
