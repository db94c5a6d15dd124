//go:build linux && cgo

package memifpacket

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/memif-go/memif"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	srcMAC = net.HardwareAddr{0x02, 0xfe, 0x00, 0x00, 0x00, 0x01}
	dstMAC = net.HardwareAddr{0x02, 0xfe, 0x00, 0x00, 0x00, 0x02}
	srcIP  = net.IP{192, 168, 1, 1}
	dstIP  = net.IP{192, 168, 1, 2}
)

const icmpID = 0x4d47

// Even sequence numbers are ARP requests for 10.1.x.y (x.y = seq), odd
// ones ICMP echo requests with that sequence number; every tenth is a
// jumbo echo that memif chains over several buffers.
func frame(buf gopacket.SerializeBuffer, seq int) error {
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4}
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if seq%2 == 0 {
		eth.DstMAC = layers.EthernetBroadcast
		eth.EthernetType = layers.EthernetTypeARP
		arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
			HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
			SourceHwAddress: srcMAC, SourceProtAddress: srcIP,
			DstHwAddress: make([]byte, 6), DstProtAddress: arpTarget(seq)}
		return gopacket.SerializeLayers(buf, opts, eth, arp)
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: srcIP, DstIP: dstIP, Id: uint16(seq)}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: icmpID, Seq: uint16(seq)}
	return gopacket.SerializeLayers(buf, opts, eth, ip, icmp, gopacket.Payload(payload(seq)))
}

func arpTarget(seq int) net.IP { return net.IP{10, 1, byte(seq >> 8), byte(seq)} }

func payloadSize(seq int) int {
	if seq%10 == 9 {
		return 6000 // three 2048-byte buffers
	}
	return 56
}

// payload: seq (8 bytes), a pattern, crc32 of all before it (4 bytes).
func payload(seq int) []byte {
	p := make([]byte, payloadSize(seq))
	binary.BigEndian.PutUint64(p, uint64(seq))
	for i := 8; i < len(p)-4; i++ {
		p[i] = byte(seq*31 + i)
	}
	binary.BigEndian.PutUint32(p[len(p)-4:], crc32.ChecksumIEEE(p[:len(p)-4]))
	return p
}

// inetSum is the Internet checksum over b: 0 when b holds a valid checksum.
func inetSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// checkFrame verifies every field of a decoded frame against what frame
// built for seq.
func checkFrame(pkt gopacket.Packet, seq int) error {
	if el := pkt.ErrorLayer(); el != nil {
		return fmt.Errorf("seq %d: decode error: %v", seq, el.Error())
	}
	ci := pkt.Metadata().CaptureInfo
	if n := len(pkt.Data()); ci.CaptureLength != n || ci.Length != n || ci.InterfaceIndex != 0 ||
		time.Since(ci.Timestamp) > time.Minute || ci.Timestamp.After(time.Now()) {
		return fmt.Errorf("seq %d: capture info %+v for %d bytes", seq, ci, n)
	}
	eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth == nil || eth.SrcMAC.String() != srcMAC.String() {
		return fmt.Errorf("seq %d: ethernet %v", seq, eth)
	}
	if seq%2 == 0 {
		arp, _ := pkt.Layer(layers.LayerTypeARP).(*layers.ARP)
		switch {
		case arp == nil:
			return fmt.Errorf("seq %d: want ARP, got %v", seq, pkt.Layers())
		case eth.DstMAC.String() != layers.EthernetBroadcast.String() || eth.EthernetType != layers.EthernetTypeARP:
			return fmt.Errorf("seq %d: ethernet %v -> %v type %v", seq, eth.SrcMAC, eth.DstMAC, eth.EthernetType)
		case arp.AddrType != layers.LinkTypeEthernet || arp.Protocol != layers.EthernetTypeIPv4 ||
			arp.HwAddressSize != 6 || arp.ProtAddressSize != 4 || arp.Operation != layers.ARPRequest:
			return fmt.Errorf("seq %d: ARP header %+v", seq, arp)
		case net.HardwareAddr(arp.SourceHwAddress).String() != srcMAC.String() ||
			!net.IP(arp.SourceProtAddress).Equal(srcIP) ||
			net.HardwareAddr(arp.DstHwAddress).String() != "00:00:00:00:00:00" ||
			!net.IP(arp.DstProtAddress).Equal(arpTarget(seq)):
			return fmt.Errorf("seq %d: ARP addresses %+v", seq, arp)
		}
		return nil
	}
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	icmp, _ := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	switch {
	case ip == nil || icmp == nil:
		return fmt.Errorf("seq %d: want IPv4/ICMPv4, got %v", seq, pkt.Layers())
	case eth.DstMAC.String() != dstMAC.String() || eth.EthernetType != layers.EthernetTypeIPv4:
		return fmt.Errorf("seq %d: ethernet %v -> %v type %v", seq, eth.SrcMAC, eth.DstMAC, eth.EthernetType)
	case ip.Version != 4 || ip.IHL != 5 || ip.TTL != 64 || ip.Protocol != layers.IPProtocolICMPv4 ||
		!ip.SrcIP.Equal(srcIP) || !ip.DstIP.Equal(dstIP) || ip.Id != uint16(seq) ||
		int(ip.Length) != 20+8+payloadSize(seq):
		return fmt.Errorf("seq %d: IPv4 header %+v", seq, ip)
	case inetSum(ip.Contents) != 0:
		return fmt.Errorf("seq %d: IPv4 checksum %#04x does not verify", seq, ip.Checksum)
	case icmp.TypeCode.Type() != layers.ICMPv4TypeEchoRequest || icmp.TypeCode.Code() != 0 ||
		icmp.Id != icmpID || icmp.Seq != uint16(seq):
		return fmt.Errorf("seq %d: ICMP %v id %#x seq %d", seq, icmp.TypeCode, icmp.Id, icmp.Seq)
	case inetSum(ip.Payload) != 0:
		return fmt.Errorf("seq %d: ICMP checksum %#04x does not verify", seq, icmp.Checksum)
	}
	p := icmp.Payload
	if len(p) != payloadSize(seq) || binary.BigEndian.Uint64(p) != uint64(seq) ||
		binary.BigEndian.Uint32(p[len(p)-4:]) != crc32.ChecksumIEEE(p[:len(p)-4]) {
		return fmt.Errorf("seq %d: payload of %d bytes does not verify", seq, len(p))
	}
	return nil
}

// sendFrames writes count frames with WritePacketData.
func sendFrames(h *Handle, count int) error {
	buf := gopacket.NewSerializeBuffer()
	for seq := range count {
		if err := frame(buf, seq); err != nil {
			return err
		}
		if err := h.WritePacketData(buf.Bytes()); err != nil {
			return fmt.Errorf("seq %d: %w", seq, err)
		}
	}
	return nil
}

func TestARPAndICMPThroughPacketSource(t *testing.T) {
	for _, tc := range []struct {
		name   string
		source func(*Handle) *gopacket.PacketSource
	}{
		{"ReadPacketData", func(h *Handle) *gopacket.PacketSource {
			return gopacket.NewPacketSource(h, layers.LayerTypeEthernet)
		}},
		{"ZeroCopyReadPacketData", func(h *Handle) *gopacket.PacketSource {
			return gopacket.NewZeroCopyPacketSource(h, layers.LayerTypeEthernet)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			master, slave, _ := loopPair(t)
			for _, dir := range []struct{ from, to *memif.Conn }{{master, slave}, {slave, master}} {
				tx, err := NewHandle(dir.from, 0)
				require.NoError(t, err)
				rx, err := NewHandle(dir.to, 0)
				require.NoError(t, err)
				tx.SetTimeout(5 * time.Second)
				rx.SetTimeout(5 * time.Second)
				const count = 500
				sent := make(chan error, 1)
				go func() { sent <- sendFrames(tx, count) }()
				src := tc.source(rx)
				for seq := range count {
					pkt, err := src.NextPacket()
					require.NoError(t, err, "seq %d", seq)
					require.NoError(t, checkFrame(pkt, seq))
				}
				require.NoError(t, <-sent)
				assert.Zero(t, rx.Drops())
				require.NoError(t, tx.Close())
				require.NoError(t, rx.Close())
			}
		})
	}
}

func TestPacketsEndWithEOFWhenTheLoopStops(t *testing.T) {
	master, slave, stop := loopPair(t)
	tx, err := NewHandle(master, 0)
	require.NoError(t, err)
	rx, err := NewHandle(slave, 0)
	require.NoError(t, err)
	require.NoError(t, sendFrames(tx, 10))
	pkts := gopacket.NewPacketSource(rx, layers.LayerTypeEthernet).Packets()
	for seq := range 10 {
		select {
		case pkt := <-pkts:
			require.NoError(t, checkFrame(pkt, seq))
		case <-time.After(5 * time.Second):
			t.Fatalf("seq %d not received within 5s", seq)
		}
	}
	stop() // the loop deletes both connections: io.EOF closes the channel
	select {
	case pkt, ok := <-pkts:
		require.False(t, ok, "unexpected packet %v", pkt)
	case <-time.After(5 * time.Second):
		t.Fatal("Packets() still open 5s after the connection was deleted")
	}
	_, _, err = rx.ReadPacketData()
	assert.ErrorIs(t, err, io.EOF)
	assert.ErrorIs(t, tx.WritePacketData([]byte{1}), memif.ErrDeleted)
	require.NoError(t, tx.Close())
	require.NoError(t, rx.Close())
	_, _, err = rx.ZeroCopyReadPacketData()
	assert.ErrorIs(t, err, io.EOF, "after Close")
}

func TestDisconnectIsNotEOF(t *testing.T) {
	master, slave, _ := loopPair(t)
	rx, err := NewHandle(master, 0)
	require.NoError(t, err)
	defer rx.Close()
	require.NoError(t, slave.Delete())
	_, _, err = rx.ReadPacketData()
	assert.ErrorIs(t, err, memif.ErrDisconnected)
	assert.False(t, errors.Is(err, io.EOF), "a master's link comes back: PacketSource must keep reading")
	rx.SetTimeout(10 * time.Millisecond)
	_, _, err = rx.ReadPacketData()
	assert.ErrorIs(t, err, memif.ErrDisconnected)
}

func TestZeroCopyReadAndWriteDoNotAllocate(t *testing.T) {
	master, slave, _ := loopPair(t)
	tx, err := NewHandle(master, 0)
	require.NoError(t, err)
	defer tx.Close()
	rx, err := NewHandle(slave, 0)
	require.NoError(t, err)
	defer rx.Close()
	tx.SetTimeout(5 * time.Second)
	rx.SetTimeout(5 * time.Second)
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, frame(buf, 1))
	data := buf.Bytes()
	var failed error
	allocs := testing.AllocsPerRun(500, func() {
		if err := tx.WritePacketData(data); err != nil {
			failed = err
			return
		}
		got, ci, err := rx.ZeroCopyReadPacketData()
		if err != nil || string(got) != string(data) || ci.Length != len(data) {
			failed = fmt.Errorf("read %d bytes, %v", len(got), err)
		}
	})
	require.NoError(t, failed)
	assert.Zero(t, allocs)
}

func TestLinkType(t *testing.T) {
	for mode, want := range map[memif.InterfaceMode]layers.LinkType{memif.ModeEthernet: layers.LinkTypeEthernet, memif.ModeIP: layers.LinkTypeRaw} {
		got, err := linkType(mode)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	_, err := linkType(memif.ModePuntInject)
	assert.ErrorContains(t, err, "punt/inject mode")
}

// An interface in IP mode carries IP packets without a link header: the
// Handle's LinkType decodes them.
func TestIPModeDecodesWithLinkType(t *testing.T) {
	master, slave, _ := loopPairMode(t, memif.ModeIP)
	tx, err := NewHandle(slave, 0)
	require.NoError(t, err)
	defer tx.Close()
	rx, err := NewHandle(master, 0)
	require.NoError(t, err)
	defer rx.Close()
	require.Equal(t, layers.LinkTypeRaw, rx.LinkType())
	rx.SetTimeout(5 * time.Second)
	buf := gopacket.NewSerializeBuffer()
	const count = 50
	for seq := 1; seq < 2*count; seq += 2 { // the odd ones are ICMP (see frame)
		require.NoError(t, frame(buf, seq))
		require.NoError(t, tx.WritePacketData(buf.Bytes()[14:])) // without the Ethernet header
	}
	src := gopacket.NewPacketSource(rx, rx.LinkType())
	for seq := 1; seq < 2*count; seq += 2 {
		pkt, err := src.NextPacket()
		require.NoError(t, err)
		require.Nil(t, pkt.Layer(layers.LayerTypeEthernet))
		ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		icmp, _ := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		require.NotNil(t, ip, "seq %d: %v", seq, pkt.Layers())
		require.NotNil(t, icmp, "seq %d: %v", seq, pkt.Layers())
		assert.Equal(t, uint16(seq), ip.Id)
		assert.Zero(t, inetSum(ip.Contents), "seq %d: IPv4 checksum", seq)
		assert.Equal(t, uint16(seq), icmp.Seq)
		assert.Zero(t, inetSum(ip.Payload), "seq %d: ICMP checksum", seq)
		p := icmp.Payload
		require.Len(t, p, payloadSize(seq))
		assert.Equal(t, uint64(seq), binary.BigEndian.Uint64(p))
		assert.Equal(t, crc32.ChecksumIEEE(p[:len(p)-4]), binary.BigEndian.Uint32(p[len(p)-4:]))
	}
}
