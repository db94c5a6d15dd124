package main

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// verdict is what became of one received frame: a reply, or why there is
// none. Every frame ends in exactly one verdict.
type verdict int

const (
	arpReply verdict = iota
	icmpReply
	dropNotForUs    // another MAC or IP, or a frame we do not answer (not ARP request / echo request)
	dropMalformed   // does not decode, or is shorter than its headers say
	dropUnsupported // IPv4 fragments: no reassembly here
	dropTooBig      // beyond the 65535 bytes a memif packet (BufferAlloc) can hold
	dropTxRingFull
	dropTxError
	dropLinkDown // lost to a disconnect (in a chain cut short, or on the way out)
	numVerdicts
)

var verdictNames = [numVerdicts]string{"arp replies", "icmp replies", "not for us", "malformed",
	"unsupported", "too big", "tx ring full", "tx error", "link down"}

func (v verdict) String() string { return verdictNames[v] }

// responder turns a request frame into its reply. It keeps decoding and
// serialization state to allocate little per frame; use one per goroutine.
type responder struct {
	mac net.HardwareAddr
	ip  net.IP // 4 bytes

	parser  *gopacket.DecodingLayerParser
	decoded []gopacket.LayerType
	eth     layers.Ethernet
	arp     layers.ARP
	ip4     layers.IPv4
	icmp    layers.ICMPv4

	out     gopacket.SerializeBuffer
	outEth  layers.Ethernet
	outARP  layers.ARP
	outIP   layers.IPv4
	outICMP layers.ICMPv4
}

var serializeOpts = gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}

func newResponder(mac net.HardwareAddr, ip netip.Addr) *responder {
	a4 := ip.As4()
	r := &responder{mac: mac, ip: net.IP(a4[:]), out: gopacket.NewSerializeBuffer()}
	r.parser = gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &r.eth, &r.arp, &r.ip4, &r.icmp)
	r.parser.IgnoreUnsupported = true // stop at the first layer we do not decode, no error
	return r
}

// reply decodes frame and builds the answer: for arpReply and icmpReply the
// reply frame, valid until the next call (frame itself may be a view into
// shared memory: it is not kept). Pure apart from that scratch state.
func (r *responder) reply(frame []byte) (verdict, []byte) {
	if err := r.parser.DecodeLayers(frame, &r.decoded); err != nil || r.parser.Truncated || len(r.decoded) == 0 {
		return dropMalformed, nil
	}
	if !bytes.Equal(r.eth.DstMAC, r.mac) && !bytes.Equal(r.eth.DstMAC, layers.EthernetBroadcast) {
		return dropNotForUs, nil
	}
	switch r.eth.EthernetType {
	case layers.EthernetTypeARP:
		if !r.has(layers.LayerTypeARP) {
			return dropMalformed, nil
		}
		return r.arpReply()
	case layers.EthernetTypeIPv4:
		if !r.has(layers.LayerTypeIPv4) {
			return dropMalformed, nil
		}
		return r.echoReply()
	}
	return dropNotForUs, nil
}

func (r *responder) has(t gopacket.LayerType) bool {
	for _, d := range r.decoded {
		if d == t {
			return true
		}
	}
	return false
}

func (r *responder) arpReply() (verdict, []byte) {
	a := &r.arp
	if a.AddrType != layers.LinkTypeEthernet || a.Protocol != layers.EthernetTypeIPv4 ||
		a.HwAddressSize != 6 || a.ProtAddressSize != 4 {
		return dropMalformed, nil
	}
	if a.Operation != layers.ARPRequest || !bytes.Equal(a.DstProtAddress, r.ip) {
		return dropNotForUs, nil
	}
	r.outEth = layers.Ethernet{SrcMAC: r.mac, DstMAC: a.SourceHwAddress, EthernetType: layers.EthernetTypeARP}
	r.outARP = layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		Operation: layers.ARPReply, SourceHwAddress: r.mac, SourceProtAddress: r.ip,
		DstHwAddress: a.SourceHwAddress, DstProtAddress: a.SourceProtAddress}
	if err := gopacket.SerializeLayers(r.out, serializeOpts, &r.outEth, &r.outARP); err != nil {
		return dropMalformed, nil
	}
	return arpReply, r.out.Bytes()
}

func (r *responder) echoReply() (verdict, []byte) {
	ip := &r.ip4
	if ip.Version != 4 {
		return dropMalformed, nil
	}
	if !bytes.Equal(ip.DstIP, r.ip) {
		return dropNotForUs, nil
	}
	if ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
		return dropUnsupported, nil
	}
	if ip.Protocol != layers.IPProtocolICMPv4 {
		return dropNotForUs, nil
	}
	if !r.has(layers.LayerTypeICMPv4) {
		return dropMalformed, nil // shorter than an ICMP header
	}
	if r.icmp.TypeCode != layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0) {
		return dropNotForUs, nil
	}
	r.outEth = layers.Ethernet{SrcMAC: r.mac, DstMAC: r.eth.SrcMAC, EthernetType: layers.EthernetTypeIPv4}
	r.outIP = layers.IPv4{Version: 4, TOS: ip.TOS, TTL: 64, Protocol: layers.IPProtocolICMPv4,
		SrcIP: r.ip, DstIP: ip.SrcIP}
	r.outICMP = layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoReply, 0),
		Id: r.icmp.Id, Seq: r.icmp.Seq}
	// IPv4 decoding cut off any Ethernet padding, so this is the data exactly.
	payload := gopacket.Payload(r.icmp.Payload)
	if err := gopacket.SerializeLayers(r.out, serializeOpts, &r.outEth, &r.outIP, &r.outICMP, payload); err != nil {
		return dropMalformed, nil
	}
	return icmpReply, r.out.Bytes()
}
