//go:build linux && cgo

package memif

import (
	"os"
	"strconv"
	"strings"
)

// libmemif v26.06's memif_delete_socket closes only its epoll fd: the poll
// cancel eventfd, the connection-request timerfd and the listener stay open
// (one fd or more per socket, forever). The binding closes them itself. It
// learns the epoll fd when the socket is created (the one new epoll fd that
// watches a new eventfd) and, at Delete, closes every fd that epoll still
// watches: with every connection deleted, those are exactly the leaked ones.

// openFDSet lists the open fds, less the one it reads the list through
// (its number is free again, and likely reused, once it returns).
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

func fdKind(fd int) string {
	target, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	return target
}

// epollTargets lists the fds an epoll fd watches, from its fdinfo.
func epollTargets(epfd int) []int {
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(epfd))
	if err != nil {
		return nil
	}
	var fds []int
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "tfd:" {
			if fd, err := strconv.Atoi(f[1]); err == nil {
				fds = append(fds, fd)
			}
		}
	}
	return fds
}

// findSocketEpoll returns the epoll fd memif_create_socket opened, or -1.
func findSocketEpoll(before map[int]bool) int {
	if before == nil {
		return -1
	}
	for fd := range openFDSet() {
		if before[fd] || fdKind(fd) != "anon_inode:[eventpoll]" {
			continue
		}
		for _, t := range epollTargets(fd) {
			if !before[t] && fdKind(t) == "anon_inode:[eventfd]" {
				return fd
			}
		}
	}
	return -1
}
