//go:build linux && cgo

package memif

/*
#include "cgo_helpers.h"
*/
import "C"

import "unsafe"

// QueueDetails is memif_queue_details_t. BufferSize is filled in on a master
// too, where libmemif reports 0.
type QueueDetails struct {
	Region     uint8
	QID        uint16
	RingSize   uint32
	Flags      uint16 // QueueFlagPolling when the queue is in polling mode
	Head, Tail uint16
	BufferSize uint16
}

// QueueFlagPolling is MEMIF_QUEUE_FLAG_POLLING.
const QueueFlagPolling = C.MEMIF_QUEUE_FLAG_POLLING

// RegionDetails is memif_region_details_t.
type RegionDetails struct {
	Index      uint8
	Addr       unsafe.Pointer
	Size       uint32
	FD         int
	IsExternal bool
}

// Details is memif_details_t, with strings copied into Go memory.
type Details struct {
	IfName         string
	InstName       string
	RemoteIfName   string
	RemoteInstName string
	ID             uint32
	Secret         string
	IsMaster       bool
	Mode           InterfaceMode
	SocketPath     string
	Regions        []RegionDetails
	RxQueues       []QueueDetails
	TxQueues       []QueueDetails
	Error          string // the peer's disconnect reason, if any
	LinkUp         bool
}

// Details wraps memif_get_details.
func (c *Conn) Details() (*Details, error) {
	const op = "memif_get_details"
	var d *Details
	err := c.controlCall(op, func() C.int {
		var code C.int
		d, code = c.details()
		return code
	})
	return d, err
}

// details runs memif_get_details on the control path, growing the string
// buffer until it fits.
func (c *Conn) details() (*Details, C.int) {
	var md C.memif_details_t
	for size := 4096; ; size *= 2 {
		buf := C.malloc(C.size_t(size))
		code := C.memif_get_details(c.h, &md, (*C.char)(buf), C.ssize_t(size))
		if code == C.MEMIF_ERR_NOBUF_DET && size < 1<<20 {
			C.free(buf)
			continue
		}
		defer C.free(buf)
		if code != 0 {
			return nil, code
		}
		return convertDetails(&md), 0
	}
}

func ustr(p *C.uint8_t) string {
	if p == nil {
		return ""
	}
	return C.GoString((*C.char)(unsafe.Pointer(p)))
}

func convertDetails(md *C.memif_details_t) *Details {
	d := &Details{
		IfName:         ustr(md.if_name),
		InstName:       ustr(md.inst_name),
		RemoteIfName:   ustr(md.remote_if_name),
		RemoteInstName: ustr(md.remote_inst_name),
		ID:             uint32(md.id),
		Secret:         ustr(md.secret),
		IsMaster:       md.role == 0,
		Mode:           InterfaceMode(md.mode),
		SocketPath:     ustr(md.socket_path),
		Error:          ustr(md.error),
		LinkUp:         md.link_up_down == 1,
	}
	for i := 0; i < int(md.regions_num); i++ {
		var r C.memif_region_details_t
		C.memifgo_region_at(md, C.int(i), &r)
		d.Regions = append(d.Regions, RegionDetails{
			Index: uint8(r.index), Addr: r.addr, Size: uint32(r.size),
			FD: int(r.fd), IsExternal: r.is_external != 0,
		})
	}
	d.RxQueues = queueDetails(md.rx_queues, int(md.rx_queues_num))
	d.TxQueues = queueDetails(md.tx_queues, int(md.tx_queues_num))
	if bs := negotiatedBufferSize(d); bs != 0 && bs <= 0xffff {
		for i := range d.RxQueues {
			d.RxQueues[i].BufferSize = uint16(bs)
		}
		for i := range d.TxQueues {
			d.TxQueues[i].BufferSize = uint16(bs)
		}
	}
	return d
}

// negotiatedBufferSize is the slave's buffer size, or 0 if it cannot be
// known. libmemif reports it in a slave's queue details only (a master's say
// 0); the memif protocol never sends it. A master derives it from the
// layout: libmemif and VPP slaves put the buffers, one per descriptor of
// every ring, in region 1; DPDK puts them in region 0 after the rings, whose
// header size depends on the peer's cache line, so only an exact division
// is trusted.
func negotiatedBufferSize(d *Details) uint32 {
	all := append(append([]QueueDetails{}, d.RxQueues...), d.TxQueues...)
	if len(all) == 0 || all[0].RingSize == 0 {
		return 0
	}
	if all[0].BufferSize != 0 {
		return uint32(all[0].BufferSize)
	}
	slots := uint32(len(all)) * all[0].RingSize
	switch len(d.Regions) {
	case 2:
		if d.Regions[1].Size%slots == 0 {
			return d.Regions[1].Size / slots
		}
	case 1:
		const desc = 16
		for _, hdr := range []uint32{128, 192, 256, 384} {
			rings := uint32(len(all)) * (hdr + desc*all[0].RingSize)
			if d.Regions[0].Size > rings && (d.Regions[0].Size-rings)%slots == 0 {
				return (d.Regions[0].Size - rings) / slots
			}
		}
	}
	return 0
}

func queueDetails(p *C.memif_queue_details_t, n int) []QueueDetails {
	out := make([]QueueDetails, 0, n)
	for i := 0; i < n; i++ {
		var q C.memif_queue_details_t
		C.memifgo_queue_at(p, C.int(i), &q)
		out = append(out, QueueDetails{
			Region: uint8(q.region), QID: uint16(q.qid), RingSize: uint32(q.ring_size),
			Flags: uint16(q.flags), Head: uint16(q.head), Tail: uint16(q.tail),
			BufferSize: uint16(q.buffer_size),
		})
	}
	return out
}
