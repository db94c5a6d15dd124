//go:build linux && cgo

package memifpacket

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// TestMain checks that the tests closed what they opened: no goroutine
// and no fd outlives the suite.
func TestMain(m *testing.M) {
	// A pipe starts Go's netpoller (its epoll fd and eventfd live as long
	// as the process) before the first count, as the Loop would later.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	fds := openFDs()
	goroutines := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second) // goroutines of ended tests may still unwind
		for (runtime.NumGoroutine() > goroutines || len(openFDs()) > len(fds)) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > goroutines {
			buf := make([]byte, 1<<20)
			fmt.Fprintf(os.Stderr, "leak check: %d goroutines after the suite, %d before\n%s\n", n, goroutines, buf[:runtime.Stack(buf, true)])
			code = 1
		}
		for fd, target := range openFDs() {
			if _, ok := fds[fd]; !ok {
				fmt.Fprintf(os.Stderr, "leak check: fd %s (%s) is still open after the suite\n", fd, target)
				code = 1
			}
		}
	}
	os.Exit(code)
}

func openFDs() map[string]string {
	dir, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil
	}
	defer dir.Close()
	names, _ := dir.Readdirnames(-1)
	fds := map[string]string{}
	for _, n := range names {
		fds[n], _ = os.Readlink("/proc/self/fd/" + n)
	}
	delete(fds, strconv.Itoa(int(dir.Fd())))
	return fds
}
