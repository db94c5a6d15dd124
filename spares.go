//go:build linux && cgo

package memif

import "sync"

// spares keeps the descriptor mappings of an Endpoint's queues from one
// link to the next. A handler's Batch or Slice keeps a freed batch's
// mapping until a garbage collection, and links may come and go far
// faster than the Go heap grows (nothing else would trigger one): reused,
// the mappings are bounded by the queues, not by the links.
type spares struct {
	mu     sync.Mutex
	closed bool
	maps   [][spareKinds]*descMap // by queue id
}

// What a Queue exposes to its handler, so what may be shared.
const (
	spareRx = iota // Queue.rx (Rx)
	spareTx        // Queue.ztx (Tx)
	spareKinds
)

// get returns a batch of n descriptors for queue qid: over the last link's
// mapping of that kind when there is one.
func (s *spares) get(qid, kind, n int) (*Buffers, error) {
	var m *descMap
	s.mu.Lock()
	if qid < len(s.maps) {
		m, s.maps[qid][kind] = s.maps[qid][kind], nil
	}
	s.mu.Unlock()
	if m == nil {
		return NewBuffers(n)
	}
	return m.reuse(n)
}

// put frees b, the queue's batch of a link that has ended (no handler runs
// any more), and keeps its mapping for the next link (freed at once after
// close).
func (s *spares) put(qid, kind int, b *Buffers) {
	if b == nil || b.p == nil || b.parent != nil {
		return
	}
	m := b.detach()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		m.free()
		return
	}
	for len(s.maps) <= qid {
		s.maps = append(s.maps, [spareKinds]*descMap{})
	}
	old := s.maps[qid][kind]
	s.maps[qid][kind] = m
	s.mu.Unlock()
	if old != nil {
		old.free()
	}
}

// close frees the mappings kept once no link can come up any more.
func (s *spares) close() {
	s.mu.Lock()
	maps := s.maps
	s.maps, s.closed = nil, true
	s.mu.Unlock()
	for _, ms := range maps {
		for _, m := range ms {
			if m != nil {
				m.free()
			}
		}
	}
}
