//go:build linux && cgo

package memif

import (
	"strconv"
	"strings"
)

// String methods for the typed constant sets, so that logs and %v show
// names instead of numbers. Unknown values print as Type(n).

// String returns the mode's name: "ethernet", "ip", "punt/inject" (the
// names VPP's "show memif" uses).
func (m InterfaceMode) String() string {
	switch m {
	case ModeEthernet:
		return "ethernet"
	case ModeIP:
		return "ip"
	case ModePuntInject:
		return "punt/inject"
	}
	return "InterfaceMode(" + strconv.Itoa(int(m)) + ")"
}

// String returns "interrupt" or "polling".
func (m RxMode) String() string {
	switch m {
	case RxModeInterrupt:
		return "interrupt"
	case RxModePolling:
		return "polling"
	}
	return "RxMode(" + strconv.Itoa(int(m)) + ")"
}

// fdEventNames are the bits of FDEventType in order.
var fdEventNames = [...]struct {
	bit  FDEventType
	name string
}{{FDEventRead, "read"}, {FDEventWrite, "write"}, {FDEventError, "error"}, {FDEventDel, "del"}, {FDEventMod, "mod"}}

// String names the bits set, joined by "|" (libmemif combines them, e.g.
// read|write, mod|read); unknown bits print as a hex remainder.
func (t FDEventType) String() string {
	if t == 0 {
		return "0"
	}
	var parts []string
	for _, e := range fdEventNames {
		if t&e.bit != 0 {
			parts = append(parts, e.name)
			t &^= e.bit
		}
	}
	if t != 0 {
		parts = append(parts, "0x"+strconv.FormatUint(uint64(t), 16))
	}
	return strings.Join(parts, "|")
}
