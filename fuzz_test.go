//go:build linux && cgo

package memif

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FuzzGuardMaster sends message sequences to a guarded master as a slave
// would: each record is one flag byte (bit 0: attach a memfd, bit 1: an
// eventfd, bit 2: send only the first 64 bytes) and up to 128 bytes of
// message. The master must survive every sequence, close or keep the
// channel as the protocol says, and be idle again once the peer hangs up.
// `./build.sh test` runs the seeds and a short fuzzing run; `./build.sh
// soak` a long one.
func FuzzGuardMaster(f *testing.F) {
	seq := func(msgs ...*wireMsg) []byte {
		var b []byte
		for i, m := range msgs {
			flag := byte(0)
			switch m.Type() {
			case msgAddRegion:
				flag = 1
			case msgAddRing:
				flag = 2
			}
			if i == len(msgs)-1 && len(msgs) > 3 {
				flag |= 4
			}
			b = append(append(b, flag), m[:]...)
		}
		return b
	}
	f.Add(seq(initMsg(0)))
	f.Add(seq(disconnectMsg()))
	f.Add(seq(initMsg(0), regionMsg(0, 4096)))
	f.Add(seq(initMsg(0), regionMsg(0, 1<<16), ringMsg(true, 0, 0, 0, 6), ringMsg(false, 0, 0, 4096, 6), connectMsg()))
	f.Add(seq(initMsg(0), regionMsg(0, 1<<16), ringMsg(true, 200, 0, 0, 6), disconnectMsg()))
	f.Add(seq(initMsg(7).Str(33, 32, "", true)))

	l, err := NewLoop(&LoopArgs{Socket: SocketArgs{Path: testSocketPath(f), Guard: GuardConfig{HandshakeTimeout: time.Second}}})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := Create(&ConnArgs{Socket: l.Socket(), IsMaster: true}); err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- l.Run(ctx) }()
	f.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			f.Error(err)
		}
	})
	path := l.Socket().Path()
	watched := func() (n int) {
		l.Do(func() error { n = len(l.Socket().fdt.fds); return nil })
		return n
	}
	idle := watched()

	f.Fuzz(func(t *testing.T, data []byte) {
		p := dialRaw(t, path)
		p.SendFlags = unix.MSG_DONTWAIT
		for len(data) > 0 {
			flag := data[0]
			data = data[1:]
			n := min(len(data), msgSize)
			if flag&4 != 0 {
				n = min(n, 64)
			}
			var fds []int
			if flag&1 != 0 {
				fds = append(fds, memFD(t, 1<<16))
			}
			if flag&2 != 0 {
				fds = append(fds, eventFD(t))
			}
			if p.Send(data[:n], fds...) != nil {
				break // the master closed the channel
			}
			data = data[n:]
		}
		p.Close()
		deadline := time.Now().Add(10 * time.Second)
		for watched() != idle {
			if time.Now().After(deadline) {
				l.Do(func() error {
					for fd, x := range l.Socket().fdt.fds {
						t.Logf("fd %d kind %d guard %+v", fd, x.kind, x.guard)
					}
					return nil
				})
				t.Fatalf("the master still watches %d fds (idle: %d) 10s after the peer hung up", watched(), idle)
			}
			time.Sleep(time.Millisecond)
		}
	})
}
