//go:build linux && cgo

package memif

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks after the suite that every test closed what it opened: no
// goroutine (goleak) and no fd outlives the tests. goleak does not look at
// fds, and the binding's own fd bookkeeping (fdleak.go) is what is tested.
func TestMain(m *testing.M) {
	fdsBefore := openFDSet()
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent(), goleak.Cleanup(func(code int) {
		if code == 0 && !testing.Short() {
			for fd := range openFDSet() {
				if !fdsBefore[fd] {
					fmt.Fprintf(os.Stderr, "leak check: fd %d (%s) is still open after the suite\n", fd, fdKind(fd))
					code = 1
				}
			}
		}
		os.Exit(code)
	}))
}
