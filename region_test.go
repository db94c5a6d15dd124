//go:build linux && cgo

package memif

import (
	"errors"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// memfdRegion provides packet-buffer regions from Go: memfds it creates
// (slave) or maps (master).
type memfdRegion struct {
	mu                sync.Mutex
	adds, addrs, dels int
	maps              map[unsafe.Pointer][]byte
	fds               map[int]bool
}

func newMemfdRegion() *memfdRegion {
	return &memfdRegion{maps: map[unsafe.Pointer][]byte{}, fds: map[int]bool{}}
}

func (r *memfdRegion) mapFD(fd int, size uint32) (unsafe.Pointer, error) {
	b, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	p := unsafe.Pointer(&b[0])
	r.maps[p] = b
	r.fds[fd] = true
	return p, nil
}

func (r *memfdRegion) AddRegion(c *Conn, size uint32) (unsafe.Pointer, int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.adds++
	fd, err := unix.MemfdCreate("memif-go external region", unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, -1, err
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, -1, err
	}
	p, err := r.mapFD(fd, size)
	if err != nil {
		unix.Close(fd)
		return nil, -1, err
	}
	return p, fd, nil
}

func (r *memfdRegion) RegionAddr(c *Conn, size uint32, fd int) (unsafe.Pointer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addrs++
	return r.mapFD(fd, size)
}

func (r *memfdRegion) DelRegion(c *Conn, addr unsafe.Pointer, size uint32, fd int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dels++
	b, ok := r.maps[addr]
	if !ok {
		return errors.New("DelRegion of an address this region never gave")
	}
	delete(r.maps, addr)
	delete(r.fds, fd)
	unix.Close(fd)
	return unix.Munmap(b)
}

func TestExternalRegion(t *testing.T) {
	fdsBefore := openFDs(t)
	reg := newMemfdRegion()
	d := newDriver(t, &SocketArgs{Path: testSocketPath(t)})
	var rerr error
	d.do(func() { rerr = d.s.RegisterExternalRegion(reg) })
	require.NoError(t, rerr)
	p := &pair{d: d, mev: newEvents(), sev: newEvents()}
	var err error
	p.master, err = d.create(p.mev.wire(ConnArgs{IsMaster: true, Log2RingSize: 8}))
	require.NoError(t, err)
	p.slave, err = d.create(p.sev.wire(ConnArgs{Log2RingSize: 8}))
	require.NoError(t, err)
	waitConn(t, p.mev.connected, "master OnConnect", 20*time.Second)
	waitConn(t, p.sev.connected, "slave OnConnect", 20*time.Second)

	reg.mu.Lock()
	assert.Equal(t, 1, reg.adds, "slave created the buffer region through Go")
	assert.Equal(t, 1, reg.addrs, "master mapped it through Go")
	reg.mu.Unlock()
	var sd *Details
	d.do(func() { sd, err = p.slave.Details() })
	require.NoError(t, err)
	require.Len(t, sd.Regions, 2)
	assert.False(t, sd.Regions[0].IsExternal, "rings stay in libmemif's region")
	assert.True(t, sd.Regions[1].IsExternal)
	reg.mu.Lock()
	_, ours := reg.maps[sd.Regions[1].Addr]
	reg.mu.Unlock()
	assert.True(t, ours, "buffers live in the Go-created mapping")

	const count = 10_000
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	size := func(s uint64) int { return 64 + int(s%1000) }
	wg.Add(4)
	go func() { defer wg.Done(); errs <- sendStream(p.master, 0, 1, count, size, 2048, 32, stop) }()
	go func() { defer wg.Done(); errs <- recvStream(p.slave, 0, 1, count, stop) }()
	go func() { defer wg.Done(); errs <- sendStream(p.slave, 0, 2, count, size, 2048, 32, stop) }()
	go func() { defer wg.Done(); errs <- recvStream(p.master, 0, 2, count, stop) }()
	waitAll(t, &wg, stop, 60*time.Second)
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}

	require.NoError(t, d.deleteConn(p.slave))
	waitConn(t, p.mev.disconnected, "master OnDisconnect", 20*time.Second)
	d.do(func() {})
	reg.mu.Lock()
	assert.Equal(t, 2, reg.dels, "both sides released the region")
	assert.Empty(t, reg.maps)
	reg.mu.Unlock()
	require.NoError(t, d.deleteConn(p.master))
	d.close()
	assert.Equal(t, fdsBefore, openFDs(t))
}
