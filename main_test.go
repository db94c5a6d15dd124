//go:build linux && cgo

package memif

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks after the suite that every test closed what it opened: no
// goroutine (goleak) and no fd outlives the tests. goleak does not look at
// fds, and the binding's own fd bookkeeping (fds.go) is what is tested.
// Fuzzing (go test -fuzz) keeps its own signal goroutine and pipes to its
// workers: the checks are for test runs.
func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv("MEMIF_GO_TEST_FENCE") != "" { // TestOwnFenceFallback's child
		if !ownForceFence() {
			fmt.Fprintln(os.Stderr, "cannot force fence mode: a burst ran already")
			os.Exit(2)
		}
		fmt.Println("fence mode")
	}
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	fdsBefore := openFDSet()
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent(), goleak.Cleanup(func(code int) {
		if code == 0 && !testing.Short() {
			for fd := range openFDSet() {
				if !fdsBefore[fd] {
					fmt.Fprintf(os.Stderr, "leak check: fd %d (%s) is still open after the suite\n", fd, fdKindName(fd))
					code = 1
				}
			}
		}
		os.Exit(code)
	}))
}
