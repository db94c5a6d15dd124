//go:build linux && cgo

package memif

import (
	"os"
	"strconv"
)

// openFDSet lists the process's open fds (tests only: the binding itself
// learns its fds from libmemif), less the one it reads the list through.
func openFDSet() map[int]bool {
	dir, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil
	}
	set := make(map[int]bool, len(names))
	for _, n := range names {
		if fd, err := strconv.Atoi(n); err == nil {
			set[fd] = true
		}
	}
	delete(set, int(dir.Fd()))
	return set
}

func fdKindName(fd int) string {
	target, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	return target
}
