//go:build linux && cgo

package memif

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Handler serves one queue of a live link, on its own goroutine: receive
// with q.Receive, send with q.Stage and q.Flush. ctx ends when the link
// goes down (or the Endpoint closes); return then. Shared-memory views are
// reachable only through q and only until the handler returns: the
// Endpoint keeps the memory mapped until every handler of the link has
// returned. A handler that returns an error or panics while the link is
// up is counted (QueueStats.HandlerErrors), reported to
// EndpointConfig.OnError and started again on the same queue; one that
// returns nil is done with its queue for this link. Once the link is down
// what it returns is not a failure: return Receive's error as it is.
type Handler func(ctx context.Context, q *Queue) error

// EndpointConfig configures an Endpoint.
type EndpointConfig struct {
	// Socket is the socket the Endpoint creates and runs (its own Loop),
	// unless Loop is set.
	Socket SocketArgs
	// Loop, if set, is a Loop the caller runs (several Endpoints may share
	// one socket); then Endpoint.Run only waits for its context and
	// deletes the interface.
	Loop *Loop
	// Conn is the interface. Socket and the callbacks (OnConnect,
	// OnDisconnect, OnInterrupt) must be unset: the Endpoint owns them.
	Conn ConnArgs
	// Mode is how Receive (and Queue.Forward) waits. SpinTime is how long
	// WaitAdaptive's Receive waits for the ring inside C before parking,
	// and WaitPoll's between looks at its contexts (0: DefaultSpinTime; at
	// most MaxSpin; Forward, which holds its target's queue while it
	// waits, looks at its contexts every few µs).
	Mode     WaitMode
	SpinTime time.Duration
	// Deprecated: Spin counted WaitAdaptive's empty polls; it is ignored
	// now that the wait happens in C for SpinTime.
	Spin int
	// Recheck bounds a parked Receive's (or Forward's) sleep (0:
	// DefaultRecheck): a safety net only, since the waiting receive and
	// forward lose no wake-up (see waiter.park).
	Recheck time.Duration
	// Batch is the most buffers one Receive returns (0: 256); it is
	// capped at the negotiated ring size.
	Batch int
	// Reconnect is a slave's connection request period while the master is
	// away (0: DefaultReconnect; negative: connect once). On a shared Loop
	// it is set on the socket. Masters wait for their slave.
	Reconnect time.Duration
	// OnError receives handler failures and loop errors, from any goroutine.
	OnError func(error)
	// OnLinkUp and OnLinkDown, if set, run on the loop goroutine when a link
	// comes up (after the handlers started) and after it went down (after
	// every handler returned). Do not block in them.
	OnLinkUp   func(Link)
	OnLinkDown func(Link)
}

// DefaultSpinTime is how long WaitAdaptive's Receive waits for the ring
// before parking: about a round trip through a busy peer, far below the
// cost of a park and wake-up.
const DefaultSpinTime = 50 * time.Microsecond

// Deprecated: DefaultSpin was Spin's default; see DefaultSpinTime.
const DefaultSpin = 64

// DefaultReconnect is a slave Endpoint's default connection request period.
const DefaultReconnect = 250 * time.Millisecond

const defaultBatch = 256

// Link is what the peers negotiated for one link session.
type Link struct {
	Master     bool // our role
	RxQueues   int
	TxQueues   int
	RxRingSize int // descriptors per rx ring
	TxRingSize int // descriptors per tx ring
	BufferSize int // bytes per buffer; 0 if a master cannot tell (see Details)
}

// Endpoint runs one memif interface the Go way: on every link-up it starts
// one goroutine per queue running the Handler; on link-down it cancels
// them and waits until they returned before libmemif unmaps the shared
// memory, so no view can outlive its mapping. A slave reconnects by
// itself. Counters per queue are readable at any time (Stats).
type Endpoint struct {
	cfg     EndpointConfig
	handler Handler
	loop    *Loop
	owned   bool // the Endpoint created loop and runs it
	conn    *Conn

	sess     *session // current link session; loop goroutine only
	sessions atomic.Uint64
	spare    spares // the queues' batches between links

	mu      sync.Mutex
	link    *Link
	up      chan struct{} // closed while a link is up
	stats   []*queueCounters
	senders []*sender // Send's scratch per queue
	cancel  context.CancelFunc
	state   int // epNew, epRunning, epDone

	errs atomic.Uint64
	done chan struct{}
}

const (
	epNew = iota
	epRunning
	epDone
)

// NewEndpoint creates the interface (a master starts listening, a slave
// tries to connect); nothing runs until Run.
func NewEndpoint(cfg EndpointConfig, h Handler) (*Endpoint, error) {
	const op = "NewEndpoint"
	a := cfg.Conn
	switch {
	case h == nil:
		return nil, nilErr(op, "handler")
	case a.Socket != nil || a.OnConnect != nil || a.OnDisconnect != nil || a.OnInterrupt != nil:
		return nil, argErr(op, "conn", "Socket and callbacks must be unset: the Endpoint owns them")
	case cfg.Mode < WaitInterrupt || cfg.Mode > WaitPoll:
		return nil, argErr(op, "mode", "%d is not a wait mode", cfg.Mode)
	case cfg.Spin < 0 || cfg.SpinTime < 0 || cfg.SpinTime > MaxSpin || cfg.Recheck < 0 || cfg.Batch < 0 || cfg.Batch > MaxBurst:
		return nil, argErr(op, "config", "negative Spin or Recheck, SpinTime outside 0..%v, or Batch outside 0..%d", MaxSpin, MaxBurst)
	}
	if cfg.SpinTime == 0 {
		cfg.SpinTime = DefaultSpinTime
	}
	if cfg.Recheck == 0 {
		cfg.Recheck = DefaultRecheck
	}
	if cfg.Batch == 0 {
		cfg.Batch = defaultBatch
	}
	if cfg.Reconnect == 0 {
		cfg.Reconnect = DefaultReconnect
	}
	e := &Endpoint{cfg: cfg, handler: h, loop: cfg.Loop, up: make(chan struct{}), done: make(chan struct{})}
	if e.loop == nil {
		la := LoopArgs{Socket: cfg.Socket, OnError: e.report}
		if !a.IsMaster && cfg.Reconnect > 0 && la.Socket.ConnectionRequestTimer == 0 {
			la.Socket.ConnectionRequestTimer = cfg.Reconnect
		}
		l, err := NewLoop(&la)
		if err != nil {
			return nil, err
		}
		e.loop, e.owned = l, true
	} else if !a.IsMaster && cfg.Reconnect > 0 {
		if err := e.loop.Socket().SetConnectionRequestTimer(cfg.Reconnect); err != nil {
			return nil, err
		}
	}
	a.Socket = e.loop.Socket()
	a.OnConnect, a.OnDisconnect = e.onConnect, e.onDisconnect
	c, err := Create(&a)
	if err != nil {
		if e.owned {
			e.closeUnrun()
		}
		return nil, err
	}
	e.conn = c
	return e, nil
}

// Run serves the interface until ctx ends or Close, then deletes it
// (handlers are cancelled and waited for) and, with its own Loop, the
// socket. It returns the Loop's error, if any. Call it once.
func (e *Endpoint) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.state != epNew {
		e.mu.Unlock()
		return argErr("Endpoint.Run", "endpoint", "Run was already called or the endpoint is closed")
	}
	ctx, e.cancel = context.WithCancel(ctx)
	e.state = epRunning
	e.mu.Unlock()
	defer close(e.done)
	defer e.freeSenders() // the interface is deleted by then: Send fails before C
	defer e.spare.close() // no link comes up any more
	defer e.cancel()
	if e.owned {
		return e.loop.Run(ctx) // deletes the interface at the end
	}
	select {
	case <-ctx.Done():
	case <-e.loop.Done():
	}
	err := e.loop.Do(e.conn.Delete)
	if errors.Is(err, ErrLoopClosed) || errors.Is(err, ErrDeleted) {
		err = nil // the loop deleted it at its own end
	}
	return err
}

// Close stops Run (or, if Run was never called, deletes the interface and
// the Endpoint's own socket) and returns when everything is released.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	switch e.state {
	case epRunning:
		e.cancel()
		e.mu.Unlock()
		<-e.done
		return nil
	case epDone:
		e.mu.Unlock()
		return nil
	}
	e.state = epDone
	e.mu.Unlock()
	defer close(e.done)
	defer e.spare.close() // on a shared Loop, links came up without Run
	defer e.freeSenders() // and Send or Forward may have made scratch
	if e.owned {
		e.closeUnrun()
		return nil
	}
	err := e.loop.Do(e.conn.Delete)
	if errors.Is(err, ErrLoopClosed) {
		return e.conn.Delete() // nobody polls: no callback can run concurrently
	}
	return err
}

// closeUnrun cleans up an owned Loop that never ran: Run with an ended
// context deletes everything at once.
func (e *Endpoint) closeUnrun() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e.loop.Run(ctx)
}

// Loop is the Loop the Endpoint runs on: for control calls (Do) alongside.
func (e *Endpoint) Loop() *Loop { return e.loop }

// Link returns the negotiated link while it is up.
func (e *Endpoint) Link() (Link, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.link == nil {
		return Link{}, false
	}
	return *e.link, true
}

// WaitUp waits until a link is up (and its handlers started) or ctx ends.
func (e *Endpoint) WaitUp(ctx context.Context) (Link, error) {
	for {
		e.mu.Lock()
		up, l := e.up, e.link
		e.mu.Unlock()
		if l != nil {
			return *l, nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			return Link{}, ctx.Err()
		case <-e.done:
			return Link{}, ErrDeleted
		}
	}
}

// Sessions counts the links that came up so far.
func (e *Endpoint) Sessions() uint64 { return e.sessions.Load() }

// Errors counts handler failures and loop errors so far.
func (e *Endpoint) Errors() uint64 { return e.errs.Load() }

// Details is the interface's Details, read on the loop goroutine.
func (e *Endpoint) Details() (*Details, error) {
	var d *Details
	err := e.loop.Do(func() error {
		var err error
		d, err = e.conn.Details()
		return err
	})
	return d, err
}

func (e *Endpoint) report(err error) {
	if err == nil {
		return
	}
	e.errs.Add(1)
	if e.cfg.OnError != nil {
		e.cfg.OnError(err)
	}
}

// counters returns queue qid's counters, which live as long as the Endpoint.
func (e *Endpoint) counters(qid int) *queueCounters {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.countersLocked(qid)
}

func (e *Endpoint) countersLocked(qid int) *queueCounters { return nth(&e.stats, qid) }

// nth returns (*s)[i], growing *s with new values up to i.
func nth[T any](s *[]*T, i int) *T {
	for len(*s) <= i {
		*s = append(*s, new(T))
	}
	return (*s)[i]
}

// Stats returns every queue's counters so far (indexed by queue id,
// totals over all link sessions; Descriptors: the current session's).
// Safe at any time.
func (e *Endpoint) Stats() []QueueStats {
	e.mu.Lock()
	cs := append([]*queueCounters(nil), e.stats...)
	e.mu.Unlock()
	out := make([]QueueStats, len(cs))
	for i, c := range cs {
		out[i] = c.load()
		if e.conn != nil {
			out[i].Descriptors, _ = e.conn.DescriptorStats(uint16(i)) // zero when down
		}
	}
	return out
}

// onConnect starts a session: runs on the loop goroutine.
func (e *Endpoint) onConnect(c *Conn) error {
	s, err := e.startSession(c)
	if err != nil {
		return err
	}
	e.sess = s
	e.sessions.Add(1)
	e.mu.Lock()
	e.link = &s.link
	close(e.up)
	e.mu.Unlock()
	if e.cfg.OnLinkUp != nil {
		e.cfg.OnLinkUp(s.link)
	}
	return nil
}

// onDisconnect ends the session before libmemif unmaps: it runs on the loop
// goroutine, which is never a handler goroutine, so waiting cannot
// deadlock (handlers make no control calls).
func (e *Endpoint) onDisconnect(c *Conn) error {
	s := e.sess
	if s == nil {
		return nil
	}
	e.sess = nil
	e.mu.Lock()
	e.link = nil
	e.up = make(chan struct{})
	e.mu.Unlock()
	s.stop()
	if e.cfg.OnLinkDown != nil {
		e.cfg.OnLinkDown(s.link)
	}
	return nil
}
