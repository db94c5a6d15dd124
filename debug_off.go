//go:build linux && cgo && !memifdebug

package memif

// debugViews is set by the memifdebug build tag (debug_on.go).
const debugViews = false
