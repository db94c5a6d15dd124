//go:build !race

package memif

const raceEnabled = false
