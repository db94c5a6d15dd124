//go:build linux && cgo

// Package memifpacket makes a memif queue a gopacket packet source and
// sink: a Handle is a gopacket.PacketDataSource, a
// gopacket.ZeroCopyPacketDataSource and has WritePacketData, as a
// pcap.Handle does, so a gopacket program reads and writes memif traffic
// unchanged:
//
//	h, err := memifpacket.NewHandle(conn, 0)
//	defer h.Close()
//	src := gopacket.NewPacketSource(h, h.LinkType()) // Ethernet, or Raw in IP mode
//	for pkt := range src.Packets() { ... }
//	err = h.WritePacketData(frame)
//
// It is a module of its own so that importers of github.com/memif-go/memif
// do not get gopacket in their module graph.
//
// # Errors
//
// Reads and writes while the link is down return the memif error
// (memif.ErrDisconnected): not io.EOF, because a memif link comes back (a
// master accepts its peer again; a slave reconnects with its socket's
// connection request timer) and the same Handle then reads on; gopacket's
// PacketSource retries such errors every 5 ms.
// Once the Conn is deleted (Conn.Delete, or a memif.Loop that stops) or
// the Handle is closed, reads return io.EOF, which ends a PacketSource.
// A read timeout (SetTimeout) returns memif.ErrTimeout, a net.Error with
// Timeout() true, which PacketSource also retries.
//
// # CaptureInfo
//
// memif carries no timestamps: Timestamp is time.Now() when the packet is
// handed out. CaptureLength and Length are the packet's length (memif
// never truncates); InterfaceIndex is 0.
package memifpacket

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/memif-go/memif"
)

// Handle reads rx queue qid and writes tx queue qid of one memif
// connection. Reading and writing may run on two goroutines; each of them
// on one goroutine at a time.
type Handle struct {
	r    *memif.RxReader
	w    *memif.TxWriter
	link layers.LinkType
}

var (
	_ gopacket.PacketDataSource         = (*Handle)(nil)
	_ gopacket.ZeroCopyPacketDataSource = (*Handle)(nil)
	_ io.Closer                         = (*Handle)(nil)
)

// rxBatch is the burst size underneath the one-packet reads.
const rxBatch = 64

// NewHandle reads and writes queue qid of c. Close it when done, before
// or after c is deleted.
func NewHandle(c *memif.Conn, qid uint16) (*Handle, error) {
	d, err := c.Details()
	if err != nil {
		return nil, err
	}
	link, err := linkType(d.Mode)
	if err != nil {
		return nil, err
	}
	r, err := memif.NewRxReader(c, qid, rxBatch)
	if err != nil {
		return nil, err
	}
	w, err := memif.NewTxWriter(c, qid)
	if err != nil {
		r.Close()
		return nil, err
	}
	return &Handle{r: r, w: w, link: link}, nil
}

// linkType is what a memif interface of mode m carries: Ethernet frames,
// or IP packets without a link header (IPv4 or IPv6, as pcap's RAW).
func linkType(m memif.InterfaceMode) (layers.LinkType, error) {
	switch m {
	case memif.ModeEthernet:
		return layers.LinkTypeEthernet, nil
	case memif.ModeIP:
		return layers.LinkTypeRaw, nil
	}
	return 0, fmt.Errorf("memifpacket: %v mode has no gopacket link type", m)
}

// LinkType is the link type of the packets, as pcap.Handle.LinkType:
// Ethernet, or Raw (IP packets) for an interface in memif.ModeIP. It is a
// gopacket.Decoder: gopacket.NewPacketSource(h, h.LinkType()).
func (h *Handle) LinkType() layers.LinkType { return h.link }

// SetTimeout bounds how long a read waits for a packet and a write for
// ring space; they then return memif.ErrTimeout. Zero, the default, waits
// until there is one or the link goes down. Set it before reading or
// writing starts.
func (h *Handle) SetTimeout(d time.Duration) {
	h.r.SetTimeout(d)
	h.w.SetTimeout(d)
}

// ReadPacketData returns the next packet in a new slice the caller owns
// (gopacket.PacketDataSource). It is copied while the link cannot go down.
func (h *Handle) ReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	data, err := h.r.AppendNext(nil)
	if err != nil {
		return nil, gopacket.CaptureInfo{}, readErr(err)
	}
	return data, captureInfo(len(data)), nil
}

// ZeroCopyReadPacketData returns the next packet without copying
// (gopacket.ZeroCopyPacketDataSource): the slice is valid only until the
// next read on this Handle, and never after the link goes down (it may
// point into memif shared memory, see memif.Buffers). Copy what you keep.
func (h *Handle) ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	data, err := h.r.Next()
	if err != nil {
		return nil, gopacket.CaptureInfo{}, readErr(err)
	}
	return data, captureInfo(len(data)), nil
}

// WritePacketData sends one packet, as pcap.Handle.WritePacketData does:
// it is copied into shared memory and sent before the call returns; data is
// not retained.
func (h *Handle) WritePacketData(data []byte) error {
	return h.w.WritePacket(data)
}

// Drops counts packets the reader discarded (see memif.RxReader.Drops).
func (h *Handle) Drops() uint64 { return h.r.Drops() }

// Close releases the Handle's buffers; later reads return io.EOF, later
// writes memif.ErrClosed. Not concurrently with a read or write.
func (h *Handle) Close() error {
	return errors.Join(h.r.Close(), h.w.Close())
}

func captureInfo(n int) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: n, Length: n}
}

// readErr turns the ends of a reader into io.EOF (see the package doc).
func readErr(err error) error {
	if errors.Is(err, memif.ErrDeleted) || errors.Is(err, memif.ErrClosed) {
		return io.EOF
	}
	return err
}
