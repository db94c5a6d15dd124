//go:build linux && cgo && memifdebug

package memif

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// go test -tags memifdebug -run Debug .
func TestDebugStaleViews(t *testing.T) {
	p := hostilePair(t)
	s := newSender(t, p.master)
	s.send(100)
	require.Empty(t, s.bufs.Data(0), "a sent buffer's view is cleared")
	rx := newBufs(t, 4)
	n, _, err := p.slave.RxBurst(0, rx, 4)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoError(t, p.d.deleteConn(p.master))
	waitConn(t, p.sev.disconnected, "slave OnDisconnect", 20*time.Second)
	waitFor(t, 20*time.Second, "session unmapped", func() bool {
		l := p.slave.link.Load()
		return l == nil && rx.meta.session.unmapped.Load()
	})
	require.PanicsWithValue(t, "memif (memifdebug): Buffers.Data of a session that has ended: its shared memory is unmapped",
		func() { rx.Data(0) })
}
