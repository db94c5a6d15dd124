//go:build linux && cgo

package memif

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// TestMain checks after the suite that every test closed what it opened:
// no fd and no goroutine outlives the tests.
func TestMain(m *testing.M) {
	fdsBefore := openFDSet()
	goBefore := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 && !testing.Short() {
		// Goroutines of finished tests may still be unwinding: give them a
		// bounded moment.
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > goBefore && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > goBefore {
			buf := make([]byte, 1<<20)
			fmt.Fprintf(os.Stderr, "leak check: %d goroutines after the suite, %d before\n%s\n", n, goBefore, buf[:runtime.Stack(buf, true)])
			code = 1
		}
		for fd := range openFDSet() {
			if !fdsBefore[fd] {
				fmt.Fprintf(os.Stderr, "leak check: fd %d (%s) is still open after the suite\n", fd, fdKindName(fd))
				code = 1
			}
		}
	}
	os.Exit(code)
}
