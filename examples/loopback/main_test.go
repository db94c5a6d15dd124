package main

import (
	"os/exec"
	"regexp"
	"testing"

	"github.com/memif-go/memif/internal/proctest"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { proctest.Main(m) }

// TestLoopbackRuns builds the demo and runs it as a user would.
func TestLoopbackRuns(t *testing.T) {
	bin := proctest.Self(t)
	for _, args := range [][]string{
		{"-count", "200000", "-queues", "2", "-burst", "32"},
		{"-count", "50000", "-size", "1500", "-copy"},
	} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		require.NoError(t, err, "%v: %s", args, out)
		m := regexp.MustCompile(`packets sent (\d+) received (\d+) .* drops 0, reordered 0, corrupt 0`).FindStringSubmatch(string(out))
		require.NotNil(t, m, "%v: %s", args, out)
		want := map[string]string{"200000": "400000", "50000": "50000"}[args[1]]
		require.Equal(t, want, m[1], "sent")
		require.Equal(t, want, m[2], "received")
	}
	out, err := exec.Command(bin, "-size", "8").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "-size 8 is outside")
}
