// Package memiftest gives tests their end of a memif link: a Loop run for
// the length of a test, and Peer, an Endpoint that sends verified frames
// (internal/pkt) and checks every frame it receives.
package memiftest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/memif-go/memif"
	"github.com/memif-go/memif/internal/pkt"
)

// StartLoop runs a Loop on a socket with args until the test ends (Run
// then deletes every interface on it and the socket).
func StartLoop(t testing.TB, args memif.SocketArgs) *memif.Loop {
	t.Helper()
	loop, err := memif.NewLoop(&memif.LoopArgs{Socket: args, OnError: func(err error) { t.Logf("loop: %v", err) }})
	if err != nil {
		t.Fatalf("NewLoop: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- loop.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Loop.Run: %v", err)
		}
	})
	return loop
}

// Run creates an Endpoint and runs it until the test ends, then closes it
// and checks Run's result.
func Run(t testing.TB, cfg memif.EndpointConfig, h memif.Handler) *memif.Endpoint {
	t.Helper()
	ep, err := memif.NewEndpoint(cfg, h)
	if err != nil {
		t.Fatalf("NewEndpoint: %v", err)
	}
	ran := make(chan error, 1)
	go func() { ran <- ep.Run(context.Background()) }()
	t.Cleanup(func() {
		ep.Close()
		if err := <-ran; err != nil {
			t.Errorf("Endpoint.Run: %v", err)
		}
	})
	return ep
}

// Check is a test's own check of a received frame (its queue, stream and
// sequence number already read); nil accepts it.
type Check func(qid int, stream uint16, seq uint64, frame []byte) error

// Peer is one end of a link in the test process.
type Peer struct {
	ep    *memif.Endpoint
	check Check
	ran   chan error

	mu      sync.Mutex
	streams map[uint16]*pkt.Tracker
	err     error         // the first bad frame
	changed chan struct{} // closed and replaced after every burst
}

// NewPeer starts an Endpoint on path (a slave retries every 20ms until the
// master listens) with queues queue pairs; check, if set, vets every
// frame. Close ends it; the test's end does too.
func NewPeer(t testing.TB, path string, master bool, queues int, check Check) *Peer {
	t.Helper()
	p := &Peer{check: check, ran: make(chan error, 1), streams: map[uint16]*pkt.Tracker{}, changed: make(chan struct{})}
	ep, err := memif.NewEndpoint(memif.EndpointConfig{
		Socket: memif.SocketArgs{Path: path},
		Conn: memif.ConnArgs{IsMaster: master, InterfaceName: "test",
			NumS2MRings: uint8(queues), NumM2SRings: uint8(queues)},
		Mode: memif.WaitAdaptive, Reconnect: 20 * time.Millisecond,
		OnError: func(err error) { t.Logf("peer: %v", err) },
	}, p.serve)
	if err != nil {
		t.Fatalf("NewEndpoint: %v", err)
	}
	p.ep = ep
	go func() { p.ran <- ep.Run(context.Background()) }()
	t.Cleanup(func() { p.Close() })
	return p
}

// Close takes the peer's link down for good and waits.
func (p *Peer) Close() error {
	err := p.ep.Close()
	if rerr := <-p.ran; err == nil {
		err = rerr
	}
	p.ran <- nil // a second Close returns at once
	return err
}

// WaitUp waits for the link.
func (p *Peer) WaitUp(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := p.ep.WaitUp(ctx)
	return err
}

// Endpoint is the peer's Endpoint.
func (p *Peer) Endpoint() *memif.Endpoint { return p.ep }

// serve checks every frame received on q, chains gathered across bursts.
func (p *Peer) serve(ctx context.Context, q *memif.Queue) error {
	chain := make([]byte, 0, 1<<16)
	for {
		n, err := q.Receive(ctx)
		if err != nil {
			return err
		}
		rx := q.Rx()
		if rx.ChainCut() { // the guard dropped the rest of the chain gathered
			chain = chain[:0]
		}
		p.mu.Lock()
		for i := range n {
			if chain = append(chain, rx.Data(i)...); rx.HasNext(i) {
				continue // may go on in the next burst
			}
			stream, seq, err := pkt.Check(chain)
			if err == nil && p.check != nil {
				err = p.check(q.ID(), stream, seq, chain)
			}
			chain = chain[:0]
			if err != nil {
				p.err = cmpErr(p.err, fmt.Errorf("queue %d: %w", q.ID(), err))
				continue
			}
			tr := p.streams[stream]
			if tr == nil {
				tr = &pkt.Tracker{}
				p.streams[stream] = tr
			}
			tr.See(seq)
		}
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// Receive waits until count frames of stream arrived, or a bad frame, or
// the deadline, and returns the stream's tracker.
func (p *Peer) Receive(stream uint16, count int, deadline time.Time) (pkt.Tracker, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		p.mu.Lock()
		var tr pkt.Tracker
		if t := p.streams[stream]; t != nil {
			tr = *t
		}
		err, changed := p.err, p.changed
		p.mu.Unlock()
		if err != nil || tr.Received >= uint64(count) {
			return tr, err
		}
		select {
		case <-changed:
		case <-timer.C:
			return tr, fmt.Errorf("received %d of %d frames of stream %d before the deadline", tr.Received, count, stream)
		}
	}
}

// ErrDown reports that the link went down under Send.
var ErrDown = errors.New("link went down")

// Send transmits frames 0..count-1 of frame on queue qid, 32 a burst
// (chained when longer than a buffer); a full ring holds it back until the
// deadline.
func (p *Peer) Send(qid int, count int, frame func(seq uint64) []byte, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var data []byte
	for seq := 0; seq < count; {
		data = data[:0]
		offs := []int32{0}
		for ; seq < count && len(offs) <= 32; seq++ {
			data = append(data, frame(uint64(seq))...)
			offs = append(offs, int32(len(data)))
		}
		sent, err := p.ep.Send(ctx, qid, data, offs, time.Until(deadline))
		switch {
		case errors.Is(err, memif.ErrDisconnected):
			return ErrDown
		case err != nil:
			return fmt.Errorf("sent %d of a burst of %d before frame %d: %w", sent, len(offs)-1, seq, err)
		}
	}
	return nil
}
