//go:build linux && cgo

package memif

import "github.com/memif-go/memif/internal/memifwire"

// The hostile tests' peer (internal/memifwire), under short names.
type (
	rawPeer = memifwire.Peer
	wireMsg = memifwire.Msg
)

var (
	newMsg        = memifwire.New
	initMsg       = memifwire.Init
	regionMsg     = memifwire.Region
	ringMsg       = memifwire.Ring
	connectMsg    = memifwire.Connect
	disconnectMsg = memifwire.Disconnect
	helloMsg      = memifwire.Hello
	dialRaw       = memifwire.Dial
	memFD         = memifwire.MemFD
	eventFD       = memifwire.EventFD
)
