//go:build linux && cgo

package memif

/*
#include "cgo_helpers.h"
*/
import "C"

import "unsafe"

// The eventfd read skip (readskip.c, readskip.h): while an rx queue polls,
// libmemif's read() of its eventfd in every memif_rx_burst that finds the
// ring empty or empties it returns EAGAIN without a system call. The
// binding defines read() for the whole process to do it (the executable's
// read is the one libmemif binds to, as munmap in munmap.c); only fds it
// flagged are skipped, and a flag is cleared before its fd can close.
// Only with -tags memif_readskip (readskip_on.go): by default read() is
// left alone and libmemif reads in every burst, as in C.

// readSkipCompiled reports whether the skip is in this build: the
// memif_readskip tag, and not under AddressSanitizer (go test -asan).
func readSkipCompiled() bool { return C.memifgo_readskip_on() != 0 }

// setRxMode is memif_set_rx_mode with the skip flag of rx queue qid kept
// true (readskip.h), q's record of it with it. The caller holds q.mu.
func (c *Conn) setRxMode(q *queue, mode RxMode, qid uint16) C.int {
	var fd C.int
	code := C.memifgo_set_rx_mode(c.h, C.memif_rx_mode_t(mode), C.uint16_t(qid), &fd)
	if mode != RxModePolling || code == 0 {
		q.skipFD = int32(fd) + 1 // the C call cleared the flag or set it on fd
	}
	return code
}

// unpoll clears the skip flags the link's rx queues set: the only clear at
// link down, in downLink with every queue lock held once down is set (no
// SetRxMode can set one after), before libmemif closes the eventfds.
func (l *link) unpoll() {
	for i := range l.rx {
		if fd := l.rx[i].skipFD - 1; fd >= 0 {
			C.memifgo_readskip_set(C.int(fd), 0)
		}
		l.rx[i].skipFD = 0
	}
}

// readSkipPolled reports whether fd is flagged (tests).
func readSkipPolled(fd int) bool { return C.memifgo_readskip_polled(C.int(fd)) != 0 }

// readC reads fd through the process's read(), as libmemif or any C code
// would (tests).
func readC(fd int, p []byte) (int, error) {
	n, err := C.read(C.int(fd), unsafe.Pointer(unsafe.SliceData(p)), C.size_t(len(p)))
	if n < 0 {
		return -1, err
	}
	return int(n), nil
}
