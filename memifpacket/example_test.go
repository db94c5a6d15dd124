//go:build linux && cgo

package memifpacket_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/memif-go/memif"
	"github.com/memif-go/memif/memifpacket"
)

// A gopacket program on a memif interface: frames written with
// WritePacketData on one side are decoded by a PacketSource on the other.
// Here both sides are in one process on a memif.Loop; usually the peer is
// VPP, DPDK or another process.
func Example() {
	loop, err := memif.NewLoop(&memif.LoopArgs{Socket: memif.SocketArgs{Path: fmt.Sprintf("@memifpacket-example-%d", os.Getpid())}})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- loop.Run(ctx) }()
	defer func() { cancel(); <-ran }() // Run deletes the connections and the socket
	up := make(chan struct{}, 2)
	onUp := func(*memif.Conn) error { up <- struct{}{}; return nil }
	master, err := memif.Create(&memif.ConnArgs{Socket: loop.Socket(), IsMaster: true, OnConnect: onUp})
	if err != nil {
		log.Fatal(err)
	}
	slave, err := memif.Create(&memif.ConnArgs{Socket: loop.Socket(), OnConnect: onUp})
	if err != nil {
		log.Fatal(err)
	}
	for range 2 {
		select {
		case <-up:
		case <-time.After(5 * time.Second):
			log.Fatal("no link")
		}
	}

	out, err := memifpacket.NewHandle(master, 0)
	if err != nil {
		log.Fatal(err)
	}
	defer out.Close()
	in, err := memifpacket.NewHandle(slave, 0)
	if err != nil {
		log.Fatal(err)
	}
	defer in.Close()
	in.SetTimeout(5 * time.Second)

	// Three pings, serialized with gopacket's layers.
	buf := gopacket.NewSerializeBuffer()
	for seq := 1; seq <= 3; seq++ {
		err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4},
			&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}},
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: uint16(seq)},
			gopacket.Payload("memif"))
		if err != nil {
			log.Fatal(err)
		}
		if err := out.WritePacketData(buf.Bytes()); err != nil {
			log.Fatal(err)
		}
	}

	src := gopacket.NewPacketSource(in, layers.LayerTypeEthernet)
	for range 3 {
		pkt, err := src.NextPacket()
		if err != nil {
			log.Fatal(err)
		}
		ip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		icmp := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		fmt.Printf("%v > %v %v id %d seq %d %q\n", ip.SrcIP, ip.DstIP, icmp.TypeCode, icmp.Id, icmp.Seq, icmp.Payload)
	}
	// Output:
	// 10.0.0.1 > 10.0.0.2 EchoRequest id 7 seq 1 "memif"
	// 10.0.0.1 > 10.0.0.2 EchoRequest id 7 seq 2 "memif"
	// 10.0.0.1 > 10.0.0.2 EchoRequest id 7 seq 3 "memif"
}
