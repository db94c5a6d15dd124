//go:build linux && cgo && memifdebug

package memif

// Built with -tags memifdebug: a view of a session that has ended panics
// in Data (instead of returning nil) with what went wrong, and TxBurst
// clears the descriptors it sent from the batch, so a view kept past the
// send reads as empty instead of the peer's next packet.
const debugViews = true
