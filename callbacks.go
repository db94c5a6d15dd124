//go:build linux && cgo

package memif

// This file holds only the //export trampolines libmemif calls (through the
// adapters in cgo_helpers.h) and their handle plumbing: Go forbids C
// definitions in the preamble of a file with exports.

/*
#include <stdint.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime/cgo"
	"runtime/debug"
	"unsafe"

	"golang.org/x/sys/unix"
)

// errCallbackCode is what a failed callback returns to libmemif.
const errCallbackCode = C.int(ErrCBFDUpdate)

func connOf(h C.uintptr_t) *Conn { return cgo.Handle(h).Value().(*Conn) }

// runCallback runs a user callback on the control-path goroutine. A panic is
// recovered here, before it can unwind through C frames, and kept (with an
// error the callback returned) for the control call in progress to return.
func (s *Socket) runCallback(name string, fn func() error) (code C.int) {
	prev := s.cbTID.Swap(int64(unix.Gettid()))
	defer func() {
		s.cbTID.Store(prev)
		if p := recover(); p != nil {
			s.keepCallbackErr(&CallbackError{Callback: name, Panic: p, Stack: debug.Stack()})
			code = errCallbackCode
		}
	}()
	if err := fn(); err != nil {
		s.keepCallbackErr(&CallbackError{Callback: name, Err: err})
		return errCallbackCode
	}
	return 0
}

func (s *Socket) keepCallbackErr(err error) {
	if s.cbErr == nil {
		s.cbErr = err
	}
}

//export memifGoOnConnect
func memifGoOnConnect(h C.uintptr_t) C.int {
	c := connOf(h)
	return c.sock.runCallback("OnConnect", func() error {
		d, code := c.details()
		if code != 0 {
			return fmt.Errorf("reading negotiated queues: %w", Errno(code))
		}
		l := &link{rx: make([]queue, len(d.RxQueues)), tx: make([]queue, len(d.TxQueues)),
			bufferSize: negotiatedBufferSize(d), master: c.args.IsMaster}
		for _, q := range d.TxQueues {
			l.txRingSize = append(l.txRingSize, q.RingSize)
		}
		g, err := newGuard(d, c.args.IsMaster, l.bufferSize, uint32(l.masterSegment()))
		if err != nil {
			return fmt.Errorf("building the descriptor guard: %w", err)
		}
		c.guardEventFDs(g)
		l.h = handleArg(c)
		l.attachGuard(g)
		c.link.Store(l)
		for qid := range l.rx {
			if err := c.RefillQueue(uint16(qid), RefillAll, c.args.RxHeadroom); err != nil {
				return err
			}
		}
		if c.args.OnConnect != nil {
			return c.args.OnConnect(c)
		}
		return nil
	})
}

//export memifGoOnDisconnect
func memifGoOnDisconnect(h C.uintptr_t) C.int {
	c := connOf(h)
	return c.sock.runCallback("OnDisconnect", func() error {
		// libmemif also calls on_disconnect for failed handshakes and for
		// Delete of an unconnected interface: pass on only real link downs.
		l := c.downLink()
		if l == nil {
			return nil
		}
		// Wake whoever parks on an rx eventfd (an RxReader): libmemif
		// closes them after this returns, and every burst now fails.
		guardKick(l.guard)
		// libmemif unmaps the regions as soon as this returns: from then on
		// Buffers.Data returns nil for this session (even if OnDisconnect
		// panics).
		defer l.unmapped.Store(true)
		if c.args.OnDisconnect == nil {
			return nil
		}
		return c.args.OnDisconnect(c)
	})
}

//export memifGoOnInterrupt
func memifGoOnInterrupt(h C.uintptr_t, qid C.uint16_t) C.int {
	c := connOf(h)
	return c.sock.runCallback("OnInterrupt", func() error {
		if err := c.args.OnInterrupt(c, uint16(qid)); err != nil {
			return err
		}
		c.rearmRx(uint16(qid))
		return nil
	})
}

//export memifGoOnControlFDUpdate
func memifGoOnControlFDUpdate(h C.uintptr_t, fd C.int, typ C.uint32_t, data unsafe.Pointer) C.int {
	s := cgo.Handle(h).Value().(*Socket)
	return s.runCallback("OnControlFDUpdate", func() error {
		ev := FDEvent{FD: int(fd), Type: FDEventType(typ), data: data}
		if err := s.fdt.update(s, ev); err != nil {
			return err
		}
		if s.onFD != nil {
			return s.onFD(ev)
		}
		return nil
	})
}

var errNoRegion = errors.New("external region callback returned no address")

//export memifGoAddExtRegion
func memifGoAddExtRegion(h C.uintptr_t, size C.uint32_t, addr *unsafe.Pointer, fd *C.int) C.int {
	c := connOf(h)
	return c.sock.runCallback("ExternalRegion.AddRegion", func() error {
		p, f, err := c.sock.ext.AddRegion(c, uint32(size))
		if err == nil && p == nil {
			err = errNoRegion
		}
		if err != nil {
			*addr, *fd = nil, -1
			return err
		}
		*addr, *fd = p, C.int(f)
		return nil
	})
}

//export memifGoGetExtRegionAddr
func memifGoGetExtRegionAddr(h C.uintptr_t, size C.uint32_t, fd C.int) unsafe.Pointer {
	c := connOf(h)
	var p unsafe.Pointer
	c.sock.runCallback("ExternalRegion.RegionAddr", func() error {
		var err error
		p, err = c.sock.ext.RegionAddr(c, uint32(size), int(fd))
		if err == nil && p == nil {
			err = errNoRegion
		}
		return err
	})
	return p
}

//export memifGoDelExtRegion
func memifGoDelExtRegion(h C.uintptr_t, addr unsafe.Pointer, size C.uint32_t, fd C.int) C.int {
	c := connOf(h)
	return c.sock.runCallback("ExternalRegion.DelRegion", func() error {
		return c.sock.ext.DelRegion(c, addr, uint32(size), int(fd))
	})
}

//export memifGoGetExtBufferOffset
func memifGoGetExtBufferOffset(h C.uintptr_t) (off C.uint32_t) {
	// Runs per buffer inside bursts, on the queue's goroutine, not the
	// control path: recover here without touching socket state.
	defer func() {
		if recover() != nil {
			off = 0
		}
	}()
	c := connOf(h)
	return C.uint32_t(c.sock.ext.(ExternalBufferOffsetter).BufferOffset(c))
}
