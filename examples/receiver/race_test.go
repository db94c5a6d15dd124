//go:build race

package main

// Under -race, the children are race-checked too.
func init() { buildFlags = append(buildFlags, "-race") }
