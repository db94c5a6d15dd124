//go:build linux && cgo

package memif

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// listenBacklog bounds connections waiting for accept; libmemif uses 1,
// which makes a second slave's connect fail while the first handshakes.
const listenBacklog = 16

// listen opens the master's listening socket the way libmemif would
// (SOCK_SEQPACKET, SO_PASSCRED), but with the file mode set between bind and
// listen, so nobody can connect before the permission holds, and with a
// stale socket file (a master killed with -9) replaced instead of failing.
func (s *Socket) listen() (int, error) {
	op := "listen " + s.path
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, &Error{Op: op, Err: syscallErr(err)}
	}
	fail := func(err error) (int, error) {
		unix.Close(fd)
		return -1, &Error{Op: op, Err: err}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		return fail(syscallErr(err))
	}
	abstract := s.path[0] == '@'
	if !abstract {
		if err := removeStaleSocket(s.path); err != nil {
			return fail(err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: s.path}); err != nil {
		return fail(syscallErr(err))
	}
	if !abstract {
		if err := os.Chmod(s.path, s.mode); err != nil {
			os.Remove(s.path)
			return fail(err)
		}
	}
	if err := unix.Listen(fd, listenBacklog); err != nil {
		return fail(syscallErr(err))
	}
	return fd, nil
}

// ErrSocketInUse reports a socket path another process listens on.
var ErrSocketInUse = errors.New("memif: another process listens on this socket path")

// removeStaleSocket removes a socket file nobody listens on. Anything else
// at the path is left alone and reported.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return &ArgError{Arg: "socket path", Reason: path + " exists and is not a socket"}
	}
	probe, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return syscallErr(err)
	}
	defer unix.Close(probe)
	switch err := unix.Connect(probe, &unix.SockaddrUnix{Name: path}); {
	case err == nil:
		return ErrSocketInUse
	case errors.Is(err, unix.ECONNREFUSED):
		return os.Remove(path) // stale: its listener is gone
	default:
		return syscallErr(err)
	}
}

// checkListener accepts only a listening AF_UNIX SOCK_SEQPACKET socket, the
// kind libmemif's listener handler can accept memif connections on.
func checkListener(fd int) error {
	if fd < 0 {
		return &ArgError{Arg: "fd", Reason: "negative"}
	}
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return &ArgError{Arg: "fd", Reason: "not a socket: " + err.Error()}
	}
	typ, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	acc, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if dom != unix.AF_UNIX || typ != unix.SOCK_SEQPACKET || acc != 1 {
		return &ArgError{Arg: "fd", Reason: "not a listening AF_UNIX SOCK_SEQPACKET socket"}
	}
	return nil
}
