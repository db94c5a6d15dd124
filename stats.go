//go:build linux && cgo

package memif

import "sync/atomic"

// QueueStats are one queue's counters, totals over every link session of
// an Endpoint.
type QueueStats struct {
	RxPackets, RxBytes uint64 // packets (chains count once) and bytes received
	TxPackets, TxBytes uint64 // packets and bytes sent
	Drops              Drops
	RingFull           uint64 // times Flush found the tx ring full
	Parks              uint64 // times Receive parked on the queue's eventfd
	HandlerErrors      uint64 // handler errors and panics (each restarted the handler)
	// Descriptors are the descriptor guard's counts (bad descriptors and
	// the buffers dropped for them) of the current link session only:
	// zero while the link is down.
	Descriptors DescriptorStats
}

// Drops are packets an Endpoint dropped, by cause.
type Drops struct {
	RingFull uint64 // the tx ring had no room before the wait (or its context) ended
	LinkDown uint64 // the link was down, or staged when the handler returned
	Oversize uint64 // Stage asked for more than 65535 bytes (or none)
}

// queueCounters are updated once per burst, never per packet.
type queueCounters struct {
	rxPackets, rxBytes, txPackets, txBytes   atomic.Uint64
	dropRingFull, dropLinkDown, dropOversize atomic.Uint64
	ringFull, parks, handlerErrors           atomic.Uint64
	_                                        [64 - 10*8%64]byte // queues run on different cores
}

func (c *queueCounters) load() QueueStats {
	return QueueStats{
		RxPackets: c.rxPackets.Load(), RxBytes: c.rxBytes.Load(),
		TxPackets: c.txPackets.Load(), TxBytes: c.txBytes.Load(),
		Drops: Drops{RingFull: c.dropRingFull.Load(), LinkDown: c.dropLinkDown.Load(),
			Oversize: c.dropOversize.Load()},
		RingFull: c.ringFull.Load(), Parks: c.parks.Load(), HandlerErrors: c.handlerErrors.Load(),
	}
}
