package main

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The responder's and the pinger's addresses, shared with the end-to-end test.
var (
	ourMAC  = net.HardwareAddr{0x02, 0xfe, 0, 0, 0, 0x02}
	ourIP   = netip.MustParseAddr("192.168.1.2")
	peerMAC = net.HardwareAddr{0x02, 0xfe, 0, 0, 0, 0x01}
	peerIP  = netip.MustParseAddr("192.168.1.1")
	otherIP = netip.MustParseAddr("192.168.1.3")
)

func ip4(a netip.Addr) net.IP { b := a.As4(); return b[:] }

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...))
	return bytes.Clone(buf.Bytes())
}

func arpFrame(t testing.TB, op uint16, dstMAC net.HardwareAddr, target netip.Addr) []byte {
	return serialize(t,
		&layers.Ethernet{SrcMAC: peerMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, Operation: op,
			SourceHwAddress: peerMAC, SourceProtAddress: ip4(peerIP),
			DstHwAddress: make(net.HardwareAddr, 6), DstProtAddress: ip4(target)})
}

// echo is one ping: what its reply must carry.
type echo struct {
	id, seq uint16
	payload []byte
}

func newEcho(id, seq uint16, size int) echo {
	p := make([]byte, size)
	for i := range p {
		p[i] = byte(int(seq)*7 + i)
	}
	return echo{id: id, seq: seq, payload: p}
}

func icmpFrame(t testing.TB, dstMAC net.HardwareAddr, dst netip.Addr, typ uint8, e echo) []byte {
	return serialize(t,
		&layers.Ethernet{SrcMAC: peerMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Id: e.seq, Protocol: layers.IPProtocolICMPv4, SrcIP: ip4(peerIP), DstIP: ip4(dst)},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: e.id, Seq: e.seq},
		gopacket.Payload(e.payload))
}

func echoRequest(t testing.TB, e echo) []byte {
	return icmpFrame(t, ourMAC, ourIP, layers.ICMPv4TypeEchoRequest, e)
}

// checkARPReply checks a reply to arpFrame(ARPRequest, ..., ourIP).
func checkARPReply(t testing.TB, frame []byte) {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	require.Nil(t, p.ErrorLayer(), "ARP reply does not decode: %x", frame)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	arp, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	require.NotNil(t, arp, "not an ARP frame: %v", p)
	assert.Equal(t, peerMAC, eth.DstMAC, "ethernet dst")
	assert.Equal(t, ourMAC, eth.SrcMAC, "ethernet src")
	assert.Equal(t, layers.LinkTypeEthernet, arp.AddrType)
	assert.Equal(t, layers.EthernetTypeIPv4, arp.Protocol)
	assert.Equal(t, uint8(6), arp.HwAddressSize)
	assert.Equal(t, uint8(4), arp.ProtAddressSize)
	assert.Equal(t, uint16(layers.ARPReply), arp.Operation)
	assert.Equal(t, []byte(ourMAC), arp.SourceHwAddress, "sender MAC")
	assert.Equal(t, []byte(ip4(ourIP)), arp.SourceProtAddress, "sender IP")
	assert.Equal(t, []byte(peerMAC), arp.DstHwAddress, "target MAC")
	assert.Equal(t, []byte(ip4(peerIP)), arp.DstProtAddress, "target IP")
	assert.Len(t, frame, 60, "padded to the Ethernet minimum")
}

// checkEchoReply checks a reply to echoRequest(e), checksums included.
func checkEchoReply(t testing.TB, frame []byte, e echo) {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	require.Nil(t, p.ErrorLayer(), "echo reply does not decode")
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	require.NotNil(t, icmp, "not an ICMPv4 frame: %v", p)
	assert.Equal(t, peerMAC, eth.DstMAC, "ethernet dst")
	assert.Equal(t, ourMAC, eth.SrcMAC, "ethernet src")
	assert.Equal(t, ip4(ourIP), ip.SrcIP, "IPv4 src")
	assert.Equal(t, ip4(peerIP), ip.DstIP, "IPv4 dst")
	assert.Equal(t, int(ip.Length), 20+8+len(e.payload), "IPv4 total length")
	assert.Equal(t, layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoReply, 0), icmp.TypeCode)
	assert.Equal(t, e.id, icmp.Id, "ICMP id")
	assert.Equal(t, e.seq, icmp.Seq, "ICMP seq")
	require.True(t, bytes.Equal(e.payload, icmp.Payload), "payload of seq %d differs (%d bytes sent, %d back)",
		e.seq, len(e.payload), len(icmp.Payload))
	require.NoError(t, checksumErr(ip, icmp))
}

// checksumErr recomputes both checksums with gopacket and compares.
func checksumErr(ip *layers.IPv4, icmp *layers.ICMPv4) error {
	ipc, icmpc := *ip, *icmp
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true},
		&ipc, &icmpc, gopacket.Payload(icmp.Payload))
	switch {
	case err != nil:
		return err
	case ipc.Checksum != ip.Checksum:
		return fmt.Errorf("IPv4 checksum %#04x, want %#04x", ip.Checksum, ipc.Checksum)
	case icmpc.Checksum != icmp.Checksum:
		return fmt.Errorf("ICMP checksum %#04x, want %#04x", icmp.Checksum, icmpc.Checksum)
	}
	return nil
}

func TestARPReply(t *testing.T) {
	r := newResponder(ourMAC, ourIP)
	for _, dst := range []net.HardwareAddr{layers.EthernetBroadcast, ourMAC} {
		v, reply := r.reply(arpFrame(t, layers.ARPRequest, dst, ourIP))
		require.Equal(t, arpReply, v)
		checkARPReply(t, reply)
	}
}

func TestEchoReply(t *testing.T) {
	r := newResponder(ourMAC, ourIP)
	for i, size := range []int{0, 1, 18, 56, 1472, 2006, 2007, 8000, 65507} {
		e := newEcho(0x1234, uint16(i), size)
		v, reply := r.reply(echoRequest(t, e))
		require.Equal(t, icmpReply, v, "size %d", size)
		checkEchoReply(t, reply, e)
		assert.GreaterOrEqual(t, len(reply), 60)
	}
}

func TestEchoReplyIgnoresEthernetPadding(t *testing.T) {
	e := newEcho(1, 2, 4)
	req := append(echoRequest(t, e), 0xee, 0xee, 0xee) // trailer beyond the IPv4 length
	v, reply := newResponder(ourMAC, ourIP).reply(req)
	require.Equal(t, icmpReply, v)
	checkEchoReply(t, reply, e)
}

func TestChecksumCheckCatchesDamage(t *testing.T) {
	frame := echoRequest(t, newEcho(1, 2, 100))
	for _, off := range []int{14 + 8, 14 + 20 + 50} { // TTL, payload
		bad := bytes.Clone(frame)
		bad[off]++
		p := gopacket.NewPacket(bad, layers.LayerTypeEthernet, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		require.Error(t, checksumErr(ip, icmp), "byte %d changed", off)
	}
}

func TestDrops(t *testing.T) {
	ping := echoRequest(t, newEcho(1, 1, 32))
	udpIP := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: ip4(peerIP), DstIP: ip4(ourIP)}
	udpL := &layers.UDP{SrcPort: 1, DstPort: 2}
	require.NoError(t, udpL.SetNetworkLayerForChecksum(udpIP))
	udp := serialize(t, &layers.Ethernet{SrcMAC: peerMAC, DstMAC: ourMAC, EthernetType: layers.EthernetTypeIPv4},
		udpIP, udpL, gopacket.Payload("hi"))
	fragment := serialize(t,
		&layers.Ethernet{SrcMAC: peerMAC, DstMAC: ourMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4MoreFragments, Protocol: layers.IPProtocolICMPv4,
			SrcIP: ip4(peerIP), DstIP: ip4(ourIP)},
		gopacket.Payload(make([]byte, 64)))
	ipv6 := serialize(t, &layers.Ethernet{SrcMAC: peerMAC, DstMAC: ourMAC, EthernetType: layers.EthernetTypeIPv6},
		gopacket.Payload(make([]byte, 60)))
	badVersion := bytes.Clone(ping)
	badVersion[14] = 0x65
	longerThanFrame := bytes.Clone(ping)
	longerThanFrame[14+3] += 10 // IPv4 total length beyond the frame
	shortICMP := serialize(t,
		&layers.Ethernet{SrcMAC: peerMAC, DstMAC: ourMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: ip4(peerIP), DstIP: ip4(ourIP)},
		gopacket.Payload{8, 0, 0})
	arpIPv6 := arpFrame(t, layers.ARPRequest, layers.EthernetBroadcast, ourIP)
	arpIPv6[14+2] = 0x86 // protocol 0x86dd
	arpIPv6[14+3] = 0xdd

	for _, c := range []struct {
		name  string
		frame []byte
		want  verdict
	}{
		{"ARP for another IP", arpFrame(t, layers.ARPRequest, layers.EthernetBroadcast, otherIP), dropNotForUs},
		{"ARP reply", arpFrame(t, layers.ARPReply, ourMAC, ourIP), dropNotForUs},
		{"ARP to another MAC", arpFrame(t, layers.ARPRequest, peerMAC, ourIP), dropNotForUs},
		{"ARP for IPv6", arpIPv6, dropMalformed},
		{"ping to another IP", icmpFrame(t, ourMAC, otherIP, layers.ICMPv4TypeEchoRequest, newEcho(1, 1, 8)), dropNotForUs},
		{"ping to another MAC", icmpFrame(t, peerMAC, ourIP, layers.ICMPv4TypeEchoRequest, newEcho(1, 1, 8)), dropNotForUs},
		{"echo reply", icmpFrame(t, ourMAC, ourIP, layers.ICMPv4TypeEchoReply, newEcho(1, 1, 8)), dropNotForUs},
		{"UDP", udp, dropNotForUs},
		{"IPv6", ipv6, dropNotForUs},
		{"fragment", fragment, dropUnsupported},
		{"empty", nil, dropMalformed},
		{"runt", ping[:10], dropMalformed},
		{"IPv4 header cut", ping[:14+12], dropMalformed},
		{"IPv4 longer than frame", longerThanFrame, dropMalformed},
		{"IP version 6 in IPv4", badVersion, dropMalformed},
		{"ICMP header cut", shortICMP, dropMalformed},
	} {
		v, reply := newResponder(ourMAC, ourIP).reply(c.frame)
		assert.Equal(t, c.want, v, c.name)
		assert.Nil(t, reply, c.name)
	}
}
