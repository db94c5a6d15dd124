//go:build linux && cgo

package memif

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestEnumStrings(t *testing.T) {
	for v, want := range map[fmt.Stringer]string{
		ModeEthernet:                    "ethernet",
		ModeIP:                          "ip",
		ModePuntInject:                  "punt/inject",
		InterfaceMode(9):                "InterfaceMode(9)",
		RxModeInterrupt:                 "interrupt",
		RxModePolling:                   "polling",
		RxMode(-1):                      "RxMode(-1)",
		FDEventRead:                     "read",
		FDEventWrite:                    "write",
		FDEventError:                    "error",
		FDEventDel:                      "del",
		FDEventMod:                      "mod",
		FDEventRead | FDEventWrite:      "read|write",
		FDEventMod | FDEventRead | 0x40: "read|mod|0x40",
		FDEventType(0):                  "0",
	} {
		assert.Equal(t, want, v.String())
		assert.Equal(t, want, fmt.Sprint(v), "%%v uses String")
	}
}
