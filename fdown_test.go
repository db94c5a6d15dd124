//go:build linux && cgo

package memif

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConcurrentSocketsOwnTheirFDs: sockets created and deleted
// concurrently each close exactly the fds libmemif opened for them (it
// reports every one), so 300 concurrent pairs leave the fd table as it was
// and no socket closes another's fd (which would break its peer's link).
func TestConcurrentSocketsOwnTheirFDs(t *testing.T) {
	before := openFDs(t)
	const pairs = 300
	var wg sync.WaitGroup
	errs := make(chan error, pairs)
	dir := t.TempDir()
	for i := 0; i < pairs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- socketCycle(fmt.Sprintf("%s/s%d.sock", dir, i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, before, openFDs(t), "open fds after %d concurrent socket cycles", pairs)
}

// socketCycle makes a socket with a listener (a master) and a request
// timer, checks they are its own, and deletes it.
func socketCycle(path string) error {
	s, err := CreateSocket(&SocketArgs{Path: path, ConnectionRequestTimer: time.Second})
	if err != nil {
		return err
	}
	c, err := Create(&ConnArgs{Socket: s, IsMaster: true})
	if err != nil {
		return err
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != DefaultFileMode {
		return fmt.Errorf("%s: socket file %v, %v", path, fi, err)
	}
	if err := c.Delete(); err != nil {
		return err
	}
	if err := s.Delete(); err != nil {
		return err
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		return fmt.Errorf("%s: socket file left behind: %v", path, err)
	}
	return nil
}
