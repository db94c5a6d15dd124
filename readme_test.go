//go:build linux && cgo

package memif

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestREADMEProgram copies the README's loopback program into a new module,
// as a user would, and runs it.
func TestREADMEProgram(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a separate module; skipped in -short")
	}
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(readme), "```go\n")
	require.True(t, ok, "README has a Go program")
	prog, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	root, err := os.Getwd()
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(prog), 0o644))
	gomod := "module example.com/readme\n\ngo 1.24\n\nrequire github.com/memif-go/memif v0.0.0\n\nreplace github.com/memif-go/memif => " + root + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644))
	run := func(args ...string) string {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %v: %s", args, out)
		return string(out)
	}
	run("mod", "tidy")
	out := run("run", ".")
	require.Contains(t, out, `received 32 packets, first: "packet 0"`)
}
