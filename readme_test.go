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
// as a user would, runs it, and checks which modules that user pulls in.
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

	// What an importer pulls in. Built: the binding and golang.org/x/sys,
	// nothing else.
	built := strings.Fields(run("list", "-deps", "-f", "{{with .Module}}{{.Path}}{{end}}", "."))
	require.ElementsMatch(t, []string{"example.com/readme", "github.com/memif-go/memif", "golang.org/x/sys"}, unique(built))
	// In the module graph: those, plus the binding's test-only requirements.
	// Graph pruning keeps every requirement of a dependency's go.mod (never
	// their own dependencies), so these are listed but never built (above).
	// The examples' gopacket and gonum plot must not appear: they live in
	// the examples module.
	allowed := map[string]string{
		"example.com/readme":          "the importer",
		"github.com/memif-go/memif":   "the binding",
		"golang.org/x/sys":            "the binding's one build dependency",
		"github.com/stretchr/testify": "the binding's tests",
		"go.uber.org/goleak":          "the binding's tests (goroutine leak check)",
		"go.yaml.in/yaml/v3":          "testify's, listed in the binding's go.mod",
	}
	for _, line := range strings.Split(strings.TrimSpace(run("list", "-m", "all")), "\n") {
		mod := strings.Fields(line)[0]
		_, ok := allowed[mod]
		require.True(t, ok, "a module importing only memif pulls in %s: move what needs it out of the root module", line)
	}
}

func unique(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
