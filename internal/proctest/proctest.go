// Package proctest runs programs as child processes for tests: build once,
// start, collect output, wait for a pattern with a bound, always reap.
package proctest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"
)

// Output collects a process's output and lets a test wait for a pattern.
type Output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	if o.changed != nil {
		close(o.changed)
		o.changed = nil
	}
	return len(p), nil
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// WaitFor waits until the output matches re, or timeout.
func (o *Output) WaitFor(re *regexp.Regexp, timeout time.Duration) bool {
	after := time.After(timeout)
	for {
		o.mu.Lock()
		if re.Match(o.buf.Bytes()) {
			o.mu.Unlock()
			return true
		}
		if o.changed == nil {
			o.changed = make(chan struct{})
		}
		ch := o.changed
		o.mu.Unlock()
		select {
		case <-ch:
		case <-after:
			return false
		}
	}
}

// Builder builds a package's binary once per test process.
type Builder struct {
	once sync.Once
	dir  string // our own temporary folder, removed by Clean
	bin  string
	err  error
}

// Build builds pkg (a path relative to the test's directory) with extra go
// build flags, once; later calls return the same binary.
func (b *Builder) Build(pkg string, flags ...string) (string, error) {
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "proctest")
		if b.err != nil {
			return
		}
		b.bin = filepath.Join(b.dir, "prog")
		args := append(append([]string{"build", "-o", b.bin}, flags...), pkg)
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v: %s", pkg, err, out)
		}
	})
	return b.bin, b.err
}

// Clean removes the built binary (call from TestMain).
func (b *Builder) Clean() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// Proc is a running child process.
type Proc struct {
	Cmd            *exec.Cmd
	Stdout, Stderr Output
	Exited         chan struct{} // closed when the process has been reaped
	Err            error         // the exit status, once Exited is closed
}

// Start runs bin with args; the test's cleanup kills and reaps it if it
// still runs.
func Start(t testing.TB, bin string, args ...string) *Proc {
	t.Helper()
	return StartWith(t, Options{}, bin, args...)
}

// Options tunes StartWith; the zero value is Start's behaviour.
type Options struct {
	Env []string // added to the test's environment
	// Stop is sent if the process still runs when the test ends (e.g.
	// SIGTERM, to let it remove its socket file), and SIGKILL Grace later.
	// Nil: SIGKILL at once.
	Stop  os.Signal
	Grace time.Duration
}

// StartWith runs bin with args and opt. os/exec stops the process at the
// test's end (CommandContext, Cancel, WaitDelay); the cleanup cancels and
// reaps.
func StartWith(t testing.TB, opt Options, bin string, args ...string) *Proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	if opt.Stop != nil {
		cmd.Cancel = func() error { return cmd.Process.Signal(opt.Stop) }
		cmd.WaitDelay = opt.Grace
	}
	if opt.Env != nil {
		cmd.Env = append(os.Environ(), opt.Env...)
	}
	p := &Proc{Cmd: cmd, Exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.Stdout, &p.Stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { p.Err = cmd.Wait(); close(p.Exited) }()
	t.Cleanup(func() {
		cancel()
		<-p.Exited
	})
	return p
}

// Alive is nil while the process runs, else an error with its exit status
// and output.
func (p *Proc) Alive() error {
	select {
	case <-p.Exited:
		return fmt.Errorf("exited (%v): %s", p.Err, p.String())
	default:
		return nil
	}
}

// String is everything the process printed, stdout then stderr.
func (p *Proc) String() string { return p.Stdout.String() + p.Stderr.String() }

// Wait waits for the process to exit, bounded: exited is false on timeout.
func (p *Proc) Wait(timeout time.Duration) (exited bool, err error) {
	select {
	case <-p.Exited:
		return true, p.Err
	case <-time.After(timeout):
		return false, nil
	}
}

// self builds the test's own package: see BuildSelf.
var self Builder

// BuildSelf builds the package in the test's directory ("."), once per test
// process; Main removes the binary.
func BuildSelf() (string, error) { return self.Build(".") }

// Self is BuildSelf's binary; a failed build fails t.
func Self(t testing.TB) string {
	t.Helper()
	bin, err := BuildSelf()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// StartSelf starts the test's own package (Self) with args.
func StartSelf(t testing.TB, args ...string) *Proc {
	t.Helper()
	return Start(t, Self(t), args...)
}

// Main is a TestMain for tests that use BuildSelf: it runs them, removes
// the binary and exits with their status.
func Main(m *testing.M) {
	code := m.Run()
	self.Clean()
	os.Exit(code)
}
