//go:build linux && cgo

package memif

/*
#include "cgo_helpers.h"
*/
import "C"

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Errno is a libmemif error code (memif_err_t). Every code has an exported
// value below, so callers test with errors.Is(err, memif.ErrNoConn).
type Errno int

// One value per memif_err_t, in libmemif's order.
const (
	errSuccess          Errno = C.MEMIF_ERR_SUCCESS
	ErrSyscall          Errno = C.MEMIF_ERR_SYSCALL
	ErrConnRefused      Errno = C.MEMIF_ERR_CONNREFUSED
	ErrAccess           Errno = C.MEMIF_ERR_ACCES
	ErrNoFile           Errno = C.MEMIF_ERR_NO_FILE
	ErrFileLimit        Errno = C.MEMIF_ERR_FILE_LIMIT
	ErrProcFileLimit    Errno = C.MEMIF_ERR_PROC_FILE_LIMIT
	ErrAlready          Errno = C.MEMIF_ERR_ALREADY
	ErrAgain            Errno = C.MEMIF_ERR_AGAIN
	ErrBadFD            Errno = C.MEMIF_ERR_BAD_FD
	ErrNoMem            Errno = C.MEMIF_ERR_NOMEM
	ErrInvalArg         Errno = C.MEMIF_ERR_INVAL_ARG
	ErrNoConn           Errno = C.MEMIF_ERR_NOCONN
	ErrConn             Errno = C.MEMIF_ERR_CONN
	ErrCBFDUpdate       Errno = C.MEMIF_ERR_CB_FDUPDATE
	ErrFileNotSock      Errno = C.MEMIF_ERR_FILE_NOT_SOCK
	ErrNoShmFD          Errno = C.MEMIF_ERR_NO_SHMFD
	ErrCookie           Errno = C.MEMIF_ERR_COOKIE
	ErrNoBufRing        Errno = C.MEMIF_ERR_NOBUF_RING
	ErrNoBuf            Errno = C.MEMIF_ERR_NOBUF
	ErrNoBufDet         Errno = C.MEMIF_ERR_NOBUF_DET
	ErrIntWrite         Errno = C.MEMIF_ERR_INT_WRITE
	ErrMalformedMsg     Errno = C.MEMIF_ERR_MFMSG
	ErrQID              Errno = C.MEMIF_ERR_QID
	ErrProto            Errno = C.MEMIF_ERR_PROTO
	ErrID               Errno = C.MEMIF_ERR_ID
	ErrAccSlave         Errno = C.MEMIF_ERR_ACCSLAVE
	ErrAlreadyConnected Errno = C.MEMIF_ERR_ALRCONN
	ErrMode             Errno = C.MEMIF_ERR_MODE
	ErrSecret           Errno = C.MEMIF_ERR_SECRET
	ErrNoSecret         Errno = C.MEMIF_ERR_NOSECRET
	ErrMaxRegion        Errno = C.MEMIF_ERR_MAXREG
	ErrMaxRing          Errno = C.MEMIF_ERR_MAXRING
	ErrNoIntFD          Errno = C.MEMIF_ERR_NO_INTFD
	ErrDisconnect       Errno = C.MEMIF_ERR_DISCONNECT
	ErrDisconnected     Errno = C.MEMIF_ERR_DISCONNECTED
	ErrUnknownMsg       Errno = C.MEMIF_ERR_UNKNOWN_MSG
	ErrPollCancel       Errno = C.MEMIF_ERR_POLL_CANCEL
	ErrMaxRingSize      Errno = C.MEMIF_ERR_MAX_RING
	ErrPrivHdr          Errno = C.MEMIF_ERR_PRIVHDR
	errMax                    = ErrPrivHdr
)

// errText holds memif_strerror's text for every code, read once: libmemif
// formats into one static buffer, so calling it from concurrent goroutines
// would race.
var errText = func() [errMax + 2]string {
	var t [errMax + 2]string
	for i := range t {
		t[i] = C.GoString(C.memif_strerror(C.int(i)))
	}
	return t
}()

// StrError wraps memif_strerror: the text libmemif gives for code.
func StrError(code int) string {
	if code < 0 || code > int(errMax) {
		return errText[errMax+1] // libmemif's "undefined error"
	}
	return errText[code]
}

// Error returns memif_strerror's text for the code.
func (e Errno) Error() string { return StrError(int(e)) }

// Error is a failed operation: the libmemif call (or binding method) and why.
type Error struct {
	Op  string // the C call or method, e.g. "memif_create"
	Err error  // an Errno, *ArgError, ErrDeleted, ...
}

func (e *Error) Error() string { return "memif: " + e.Op + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// ArgError is an argument the binding rejected before it reached C. It
// matches ErrInvalArg with errors.Is.
type ArgError struct {
	Arg    string
	Reason string
}

func (e *ArgError) Error() string        { return "invalid " + e.Arg + ": " + e.Reason }
func (e *ArgError) Is(target error) bool { return target == ErrInvalArg }

// ErrDeleted is returned by every method of a Socket or Conn after Delete.
var ErrDeleted = errors.New("memif: use of deleted socket or connection")

// CallbackError reports a user callback that panicked or returned an error.
// The panic was recovered before it could unwind through C; the method that
// ran the callback (PollEvent, ControlFDHandler, Create, Delete...) returns it.
type CallbackError struct {
	Callback string // "OnConnect", "OnDisconnect", "OnInterrupt", ...
	Panic    any    // the recovered value, nil if the callback returned Err
	Err      error  // the callback's error, or nil for a panic
	Stack    []byte // stack of the panic
}

func (e *CallbackError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("memif: %s callback: %v", e.Callback, e.Err)
	}
	return fmt.Sprintf("memif: %s callback panicked: %v", e.Callback, e.Panic)
}

func (e *CallbackError) Unwrap() error { return e.Err }

// codeErr turns a libmemif return code into nil or an *Error.
func codeErr(op string, code C.int) error {
	if code == 0 {
		return nil
	}
	return &Error{Op: op, Err: Errno(code)}
}

// SyscallError is a failed system call with its errno, which libmemif's
// MEMIF_ERR_SYSCALL drops. It matches ErrSyscall and the errno with
// errors.Is.
type SyscallError struct {
	Errno unix.Errno
}

func (e *SyscallError) Error() string        { return ErrSyscall.Error() + ": " + e.Errno.Error() }
func (e *SyscallError) Is(target error) bool { return target == ErrSyscall }
func (e *SyscallError) Unwrap() error        { return e.Errno }

// codeErrno is codeErr keeping the errno of a libmemif syscall failure.
func codeErrno(op string, code C.int, errno error) error {
	var en unix.Errno
	if Errno(code) == ErrSyscall && errors.As(errno, &en) && en != 0 {
		return &Error{Op: op, Err: &SyscallError{Errno: en}}
	}
	return codeErr(op, code)
}

func nilErr(op, what string) error {
	return &Error{Op: op, Err: &ArgError{Arg: what, Reason: "nil"}}
}

func argErr(op, arg, format string, a ...any) error {
	return &Error{Op: op, Err: &ArgError{Arg: arg, Reason: fmt.Sprintf(format, a...)}}
}
