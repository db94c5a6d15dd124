//go:build !linux || !cgo

package memif

// memif-go is a cgo binding of libmemif, which runs on Linux only. Building
// without cgo (CGO_ENABLED=0) or for another OS stops here with this name:
var _ = memif_go_needs_linux_and_cgo_with_libmemif_installed__see_README
