//go:build race

package memif

const raceEnabled = true
