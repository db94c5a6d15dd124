// Package pkt is the test-traffic format the examples share: every packet
// carries its stream, sequence number, length and a CRC-32C, so receivers
// verify each one and count gaps.
package pkt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// HeaderLen is the smallest packet: seq (8) | stream (2) | length (2) | crc (4).
const HeaderLen = 16

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Fill writes packet seq of stream into b (all of it).
func Fill(b []byte, stream uint16, seq uint64) {
	binary.LittleEndian.PutUint64(b[0:], seq)
	binary.LittleEndian.PutUint16(b[8:], stream)
	binary.LittleEndian.PutUint16(b[10:], uint16(len(b)))
	pl := b[HeaderLen:]
	x := byte(seq)
	for i := range pl {
		pl[i] = x + byte(i)
	}
	binary.LittleEndian.PutUint32(b[12:], sum(b))
}

func sum(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b[:12])
	return crc32.Update(c, castagnoli, b[HeaderLen:])
}

// ErrCorrupt marks a packet whose length or checksum is wrong.
var ErrCorrupt = errors.New("corrupt packet")

// Check verifies b and returns its stream and sequence number.
func Check(b []byte) (stream uint16, seq uint64, err error) {
	if len(b) < HeaderLen {
		return 0, 0, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(b))
	}
	seq = binary.LittleEndian.Uint64(b)
	stream = binary.LittleEndian.Uint16(b[8:])
	if n := int(binary.LittleEndian.Uint16(b[10:])); n != len(b)&0xffff {
		return stream, seq, fmt.Errorf("%w: seq %d is %d bytes, header says %d", ErrCorrupt, seq, len(b), n)
	}
	if got, want := sum(b), binary.LittleEndian.Uint32(b[12:]); got != want {
		return stream, seq, fmt.Errorf("%w: seq %d crc %08x, header says %08x", ErrCorrupt, seq, got, want)
	}
	return stream, seq, nil
}

// Tracker follows one stream's sequence numbers: gaps are drops, going back
// is reordering.
type Tracker struct {
	Next      uint64
	Received  uint64
	Lost      uint64
	Reordered uint64
}

// See records seq.
func (t *Tracker) See(seq uint64) {
	t.Received++
	switch {
	case seq == t.Next:
		t.Next++
	case seq > t.Next:
		t.Lost += seq - t.Next
		t.Next = seq + 1
	default:
		t.Reordered++
		if t.Lost > 0 {
			t.Lost--
		}
	}
}
