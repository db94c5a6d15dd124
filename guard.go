//go:build linux && cgo

package memif

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The guard reads each control message before libmemif does (a peek: the
// message stays queued for libmemif) and closes the channel of a peer that
// breaks the protocol. libmemif v26.06 trusts its peer: it dereferences a
// NULL connection for anything but INIT before INIT matched, copies strings
// that need not be terminated, writes region and ring entries at the index
// the peer chose, maps regions of the size the peer declared and rings at
// the offset it chose, and keeps every fd a message carries. A refused
// channel is shut down and drained, so libmemif reads end-of-file next and
// runs its own clean-up for a peer that hung up.

// GuardConfig tunes the guard. The zero value is safe.
type GuardConfig struct {
	// HandshakeTimeout closes a channel that has not connected this long
	// after it opened (default DefaultHandshakeTimeout). It is enforced
	// whenever the socket is polled (PollEvent, Loop, ControlFDHandler).
	HandshakeTimeout time.Duration
	// MaxPending caps channels accepted but not yet connected (default
	// DefaultMaxPending); more are closed at once.
	MaxPending int
	// AllowUIDs, if not empty, lists the only peer user ids (SO_PEERCRED)
	// a master accepts.
	AllowUIDs []uint32
	// OnRefuse, if set, is told of every refused channel, on the goroutine
	// polling the socket. It must not block.
	OnRefuse func(*ProtocolError)
}

// Guard defaults.
const (
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultMaxPending       = 16
)

func (g GuardConfig) withDefaults() GuardConfig {
	if g.HandshakeTimeout <= 0 {
		g.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if g.MaxPending <= 0 {
		g.MaxPending = DefaultMaxPending
	}
	g.AllowUIDs = slices.Clone(g.AllowUIDs)
	return g
}

// ProtocolError says why the guard closed a peer's control channel. It
// matches ErrProto with errors.Is.
type ProtocolError struct {
	Peer   string // "slave" (it connected to our master) or "master"
	FD     int
	Msg    string // the message type, or "" when no message was involved
	Reason string
}

func (e *ProtocolError) Error() string {
	m := ""
	if e.Msg != "" {
		m = " " + e.Msg
	}
	return fmt.Sprintf("memif: control channel %d: %s peer%s refused: %s", e.FD, e.Peer, m, e.Reason)
}

func (e *ProtocolError) Is(target error) bool { return target == ErrProto }

// GuardStats counts what the guard refused, by cause.
type GuardStats struct {
	Accepted  uint64 // channels that reached the connected state
	Malformed uint64 // bad size, state, field or fd: the channel was closed
	TimedOut  uint64 // no connection within HandshakeTimeout
	OverCap   uint64 // beyond MaxPending channels
	Denied    uint64 // peer uid not in AllowUIDs
	// Unsealed counts peer regions whose memfd could not be sealed against
	// shrinking (not created with MFD_ALLOW_SEALING): the peer could still
	// shrink them and fault us on access. libmemif's, for one, are sealed.
	Unsealed uint64
}

type guardCounters struct {
	accepted, malformed, timedOut, overCap, denied, unsealed atomic.Uint64
}

// GuardStats returns the guard's counters. Safe from any goroutine.
func (s *Socket) GuardStats() GuardStats {
	if s == nil {
		return GuardStats{}
	}
	c := &s.gstats
	return GuardStats{Accepted: c.accepted.Load(), Malformed: c.malformed.Load(),
		TimedOut: c.timedOut.Load(), OverCap: c.overCap.Load(), Denied: c.denied.Load(),
		Unsealed: c.unsealed.Load()}
}

// memif.h wire format.
const (
	msgSize       = 128
	msgAck        = 1
	msgHello      = 2
	msgInit       = 3
	msgAddRegion  = 4
	msgAddRing    = 5
	msgConnect    = 6
	msgConnected  = 7
	msgDisconnect = 8

	protoVersion  = 2<<8 | 0
	maxRegions    = 256 // region index is checked against 255 by libmemif
	maxRings      = 255 // per direction: a master offers libmemif's 255 (conn.go)
	ringFlagS2M   = 1
	descSize      = 16
	maxRegionSize = 1 << 32 // descriptor offsets are 32-bit
)

var msgNames = [...]string{"NONE", "ACK", "HELLO", "INIT", "ADD_REGION", "ADD_RING", "CONNECT", "CONNECTED", "DISCONNECT"}

func msgName(t uint16) string {
	if int(t) < len(msgNames) {
		return msgNames[t]
	}
	return fmt.Sprintf("type %d", t)
}

// ringHeaderSize is memif_ring_t before its descriptors: three cache-line
// marks, the last one where the descriptors start (memif.h). The cache
// line is libmemif's MEMIF_CACHELINE_SIZE for the architecture.
func ringHeaderSize() uint64 {
	if runtime.GOARCH == "arm64" {
		return 2 * 128
	}
	return 2 * 64
}

type guardState uint8

const (
	gsAwaitInit  guardState = iota // master side: nothing but INIT
	gsInit                         // master side: regions, rings, CONNECT
	gsAwaitHello                   // slave side: HELLO
	gsHello                        // slave side: ACKs, CONNECTED
	gsConnected                    // DISCONNECT only
	gsClosed                       // refused: shut down, waiting for libmemif's clean-up
)

// channelGuard follows one control channel's handshake.
type channelGuard struct {
	s        *Socket
	fd       int
	master   bool // we are the master: the peer is a slave
	state    guardState
	deadline time.Time
	regions  []uint64 // sizes of regions declared so far
	rings    [2]int   // rings declared so far: S2M, M2S
	pending  bool     // counted in Socket.pending
}

// newChannelGuard starts guarding a new control channel. It runs inside
// libmemif's on_control_fd_update, so a refusal here only shuts the
// channel down; libmemif's handler cleans up when the fd reads end-of-file.
func (s *Socket) newChannelGuard(fd int) *channelGuard {
	g := &channelGuard{s: s, fd: fd, deadline: time.Now().Add(s.guard.HandshakeTimeout)}
	s.fdt.fds[fd].guard = g // refuse checks that the table still holds it
	// Accepted on our listener: it has the listener's address. Our slaves'
	// sockets have none, or an autobound one when the master passes
	// credentials.
	g.master = s.fdt.listenName != "" && sockName(fd) == s.fdt.listenName
	g.state = gsAwaitHello
	if g.master {
		g.state = gsAwaitInit
		if len(s.guard.AllowUIDs) > 0 {
			cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
			if err != nil || !slices.Contains(s.guard.AllowUIDs, cred.Uid) {
				s.gstats.denied.Add(1)
				uid := "unknown"
				if err == nil {
					uid = fmt.Sprint(cred.Uid)
				}
				g.refuse("", "peer uid "+uid+" is not allowed")
				return g
			}
		}
		if s.pending >= s.guard.MaxPending {
			s.gstats.overCap.Add(1)
			g.refuse("", fmt.Sprintf("%d channels are already handshaking", s.pending))
			return g
		}
	}
	g.pending = true
	s.pending++
	return g
}

func (g *channelGuard) peer() string {
	if g.master {
		return "slave"
	}
	return "master"
}

// settle takes the channel out of the pending count.
func (g *channelGuard) settle() {
	if g.pending {
		g.pending = false
		g.s.pending--
	}
}

// release is called when libmemif stops watching the fd.
func (g *channelGuard) release() {
	g.settle()
	g.state = gsClosed
}

// refuse shuts the channel down and reports why. Reading end-of-file next,
// libmemif disconnects (or drops the unauthenticated channel) itself.
func (g *channelGuard) refuse(msg, reason string) {
	if g.state != gsClosed && g.shut() {
		if cb := g.s.guard.OnRefuse; cb != nil {
			cb(&ProtocolError{Peer: g.peer(), FD: g.fd, Msg: msg, Reason: reason})
		}
	}
}

// shut closes the channel for good and shuts its socket down, if the fd is
// still the one libmemif reported (see fdTable.prune): never another file.
func (g *channelGuard) shut() bool {
	g.settle()
	g.state = gsClosed
	if w := g.s.fdt.fds[g.fd]; w == nil || w.guard != g || !w.same(g.fd) {
		return false
	}
	unix.Shutdown(g.fd, unix.SHUT_RDWR)
	return true
}

// admit runs before libmemif reads the channel: it checks the message
// waiting there, and on a violation shuts the channel and drains what the
// peer queued, so that libmemif reads end-of-file. It returns false when
// there is nothing for libmemif to read (a spurious wake-up).
func (g *channelGuard) admit() bool {
	if g.state != gsClosed {
		switch msg, reason, v := g.check(); v {
		case verdictRefuse:
			g.s.gstats.malformed.Add(1)
			g.refuse(msg, reason)
		case verdictHangup:
			// The peer reset the socket: the peek consumed the error, so
			// libmemif must read end-of-file, never a message queued
			// before the reset.
			g.shut()
		case verdictNothing:
			return false
		}
	}
	if g.state == gsClosed {
		drain(g.fd)
	}
	return true
}

type verdict uint8

const (
	verdictAdmit   verdict = iota // a valid message, or end-of-file: libmemif reads it
	verdictRefuse                 // a protocol violation
	verdictHangup                 // the socket failed
	verdictNothing                // nothing queued
)

// expire closes a channel whose handshake outlived its deadline.
func (g *channelGuard) expire(now time.Time) {
	if g.state != gsConnected && g.state != gsClosed && now.After(g.deadline) {
		g.s.gstats.timedOut.Add(1)
		g.refuse("", fmt.Sprintf("not connected within %v", g.s.guard.HandshakeTimeout))
	}
}

// guardTick closes channels past their handshake deadline and records the
// next deadline, which bounds the socket's poll waits. On the control path.
func (s *Socket) guardTick() {
	now := time.Now()
	var next time.Time
	for _, w := range s.fdt.fds {
		g := w.guard
		if g == nil {
			continue
		}
		g.expire(now)
		if g.state != gsConnected && g.state != gsClosed && (next.IsZero() || g.deadline.Before(next)) {
			next = g.deadline
		}
	}
	if next.IsZero() {
		s.wakeAt.Store(0)
	} else {
		s.wakeAt.Store(next.UnixNano())
	}
}

// guardDue reports a handshake deadline that has passed; any goroutine.
func (s *Socket) guardDue() bool {
	at := s.wakeAt.Load()
	return at != 0 && time.Now().UnixNano() >= at
}

// check peeks at the next message and validates it.
func (g *channelGuard) check() (msg, reason string, v verdict) {
	msg, reason, v = g.peek()
	if v == verdictAdmit && reason != "" {
		v = verdictRefuse
	}
	return msg, reason, v
}

func (g *channelGuard) peek() (msg, reason string, v verdict) {
	var buf [msgSize + 1]byte
	oob := make([]byte, oobSize)
	n, oobn, flags, _, err := unix.Recvmsg(g.fd, buf[:], oob, unix.MSG_PEEK|unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
	switch {
	case errors.Is(err, unix.EAGAIN):
		return "", "", verdictNothing
	case err != nil:
		// ECONNRESET (the peer closed with our messages unread) and the
		// like: the peek consumed the error, and libmemif would read the
		// message queued behind it.
		return "", "", verdictHangup
	case n == 0 && oobn == 0:
		return "", "", verdictAdmit // end-of-file: libmemif's own clean-up
	}
	fds := peekedFDs(oob[:oobn])
	defer func() {
		for _, fd := range fds {
			unix.Close(fd) // the peek installed copies: ours to close
		}
	}()
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || n != msgSize {
		return "", fmt.Sprintf("message of %d bytes (flags %#x), memif messages are %d", n, flags, msgSize), verdictAdmit
	}
	typ := binary.LittleEndian.Uint16(buf[0:])
	body := buf[2:msgSize]
	msg = msgName(typ)
	wantFD := typ == msgAddRegion || typ == msgAddRing
	if len(fds) > 1 || (len(fds) == 1) != wantFD {
		return msg, fmt.Sprintf("carries %d fds", len(fds)), verdictAdmit
	}
	if !g.allowed(typ) {
		return msg, "not allowed in this state of the handshake", verdictAdmit
	}
	switch typ {
	case msgInit:
		reason = g.checkInit(body)
	case msgHello:
		reason = cstr(body[0:32], "name")
	case msgAddRegion:
		reason = g.checkRegion(body, fds[0])
	case msgAddRing:
		reason = g.checkRing(body)
	case msgConnect, msgConnected:
		reason = cstr(body[0:32], "interface name")
		if reason == "" && typ == msgConnect && (len(g.regions) == 0 || g.rings[0] == 0 || g.rings[1] == 0) {
			reason = fmt.Sprintf("connect with %d regions, %d s2m and %d m2s rings", len(g.regions), g.rings[0], g.rings[1])
		}
	case msgDisconnect:
		reason = cstr(body[4:100], "reason")
	}
	if reason == "" {
		g.advance(typ)
	}
	return msg, reason, verdictAdmit
}

// allowed is the handshake's state machine, seen from the peer's side.
func (g *channelGuard) allowed(typ uint16) bool {
	switch g.state {
	case gsAwaitInit:
		return typ == msgInit
	case gsInit:
		return typ == msgAddRegion || typ == msgAddRing || typ == msgConnect || typ == msgDisconnect
	case gsAwaitHello:
		return typ == msgHello || typ == msgDisconnect
	case gsHello:
		return typ == msgAck || typ == msgConnected || typ == msgDisconnect
	case gsConnected:
		return typ == msgDisconnect
	}
	return false
}

func (g *channelGuard) advance(typ uint16) {
	switch typ {
	case msgInit:
		g.state = gsInit
	case msgHello:
		g.state = gsHello
	case msgConnect, msgConnected:
		g.state = gsConnected
		g.settle()
		g.s.gstats.accepted.Add(1)
	}
}

func (g *channelGuard) checkInit(b []byte) string {
	if v := binary.LittleEndian.Uint16(b[0:]); v != protoVersion {
		return "" // libmemif answers a version mismatch itself, safely
	}
	// The secret is compared with strncmp over its 24 bytes, which never
	// reads past the field; the name is copied with strlcpy.
	return cstr(b[31:63], "name")
}

func (g *channelGuard) checkRegion(b []byte, fd int) string {
	idx := binary.LittleEndian.Uint16(b[0:])
	size := binary.LittleEndian.Uint64(b[2:])
	if int(idx) != len(g.regions) || len(g.regions) >= maxRegions {
		return fmt.Sprintf("region index %d, expected %d", idx, len(g.regions))
	}
	if size == 0 || size > maxRegionSize {
		return fmt.Sprintf("region size %d is outside 1..%d", size, uint64(maxRegionSize))
	}
	// Seal the size before checking it: a peer could otherwise shrink its
	// memfd afterwards and fault us (SIGBUS) on access. libmemif seals its
	// own regions so; a memfd that cannot be sealed is counted.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK); err != nil {
		if seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0); err != nil || seals&unix.F_SEAL_SHRINK == 0 {
			g.s.gstats.unsealed.Add(1)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "region fd: " + err.Error()
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Sprintf("region fd is not a memory file (mode %#o)", st.Mode)
	}
	if uint64(st.Size) < size {
		return fmt.Sprintf("region of %d bytes declared on a %d-byte file", size, st.Size)
	}
	g.regions = append(g.regions, size)
	return ""
}

func (g *channelGuard) checkRing(b []byte) string {
	flags := binary.LittleEndian.Uint16(b[0:])
	idx := binary.LittleEndian.Uint16(b[2:])
	region := binary.LittleEndian.Uint16(b[4:])
	off := uint64(binary.LittleEndian.Uint32(b[6:]))
	log2 := b[10]
	priv := binary.LittleEndian.Uint16(b[11:])
	dir := 1
	if flags&ringFlagS2M != 0 {
		dir = 0
	}
	switch {
	case int(idx) != g.rings[dir] || g.rings[dir] >= maxRings:
		return fmt.Sprintf("ring index %d, expected %d", idx, g.rings[dir])
	case int(region) >= len(g.regions):
		return fmt.Sprintf("ring in region %d, %d declared", region, len(g.regions))
	case log2 == 0 || log2 > MaxLog2RingSize:
		return fmt.Sprintf("log2 ring size %d is outside 1..%d", log2, MaxLog2RingSize)
	case priv != 0:
		return fmt.Sprintf("private header of %d bytes", priv)
	case off%8 != 0:
		return fmt.Sprintf("ring offset %d is not 8-byte aligned", off)
	}
	if end := off + ringHeaderSize() + descSize<<log2; end > g.regions[region] {
		return fmt.Sprintf("ring [%d, %d) outside its %d-byte region %d", off, end, g.regions[region], region)
	}
	g.rings[dir]++
	return ""
}

// cstr checks a fixed-size string field that libmemif copies with strlcpy,
// which reads until the NUL.
func cstr(b []byte, what string) string {
	if bytes.IndexByte(b, 0) < 0 {
		return what + " is not NUL-terminated"
	}
	return ""
}

// oobSize holds what a memif message may carry: credentials (the listener
// sets SO_PASSCRED) and, from a misbehaving peer, several fds.
var oobSize = unix.CmsgSpace(unix.SizeofUcred) + unix.CmsgSpace(4*8)

func peekedFDs(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range msgs {
		if r, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, r...)
		}
	}
	return fds
}

// drain discards what a refused peer queued (closing any fds it sent), so
// that libmemif's next read is end-of-file.
func drain(fd int) {
	var buf [msgSize]byte
	oob := make([]byte, oobSize)
	for i := 0; i < 1024; i++ {
		n, oobn, _, _, err := unix.Recvmsg(fd, buf[:], oob, unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
		for _, f := range peekedFDs(oob[:oobn]) {
			unix.Close(f)
		}
		// A socket error (ECONNRESET) is reported once, ahead of what is
		// still queued: read on until nothing is left or end-of-file.
		if errors.Is(err, unix.EAGAIN) || (err == nil && n == 0 && oobn == 0) {
			return
		}
	}
}
