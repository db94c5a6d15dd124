//go:build linux && cgo

package memifpacket

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUserModule builds a program that imports memifpacket from a new
// module, with the two replaces the README gives, as a user would.
func TestUserModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a separate module; skipped in -short")
	}
	here, err := os.Getwd()
	require.NoError(t, err)
	root := filepath.Dir(here)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	require.Contains(t, string(readme), "-replace github.com/memif-go/memif/memifpacket=/path/to/memif-go/memifpacket")

	dir := t.TempDir()
	prog := `package main

import (
	"fmt"

	"github.com/gopacket/gopacket"
	"github.com/memif-go/memif/memifpacket"
)

var (
	_ gopacket.PacketDataSource         = (*memifpacket.Handle)(nil)
	_ gopacket.ZeroCopyPacketDataSource = (*memifpacket.Handle)(nil)
)

func main() { fmt.Println(memifpacket.NewHandle != nil) }
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(prog), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/user\n\ngo 1.24\n"), 0o644))
	run := func(args ...string) string {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %s: %s", strings.Join(args, " "), out)
		return string(out)
	}
	run("mod", "edit", "-replace", "github.com/memif-go/memif="+root,
		"-replace", "github.com/memif-go/memif/memifpacket="+here)
	run("mod", "tidy")
	require.Equal(t, "true\n", run("run", "."))
}
