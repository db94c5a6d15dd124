package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Optional implementations run in the same rounds as Go and C, each with
// the same flags and JSON: the gomemif driver (GoVPP's pure-Go memif, built
// by hand outside this repository: the module proxy refuses go.fd.io/govpp)
// and the C twin built with the binding's C checks (memif_bench_c_checks).
// Either exits with exitUnsupported for a scenario it cannot run (gomemif:
// pingpong, chained frames, ...; C+checks: pingpong); compare then shows n/a.
const exitUnsupported = 3

var errUnsupported = errors.New("unsupported")

// extra is one optional implementation's share of an outcome. Its JSON
// keys carry its key as a prefix (outcome.MarshalJSON): "gomemif",
// "gomemif_median", ..., "cchecks", "cchecks_median", ...
type extra struct {
	key    string // JSON key prefix
	label  string // in messages and the table
	Runs   []map[string]any
	Median float64
	PerCPU float64
	// Note says why it has no runs or fewer runs than Go:
	// "unsupported: ..." or the error that stopped it.
	Note string
	// Ratios against C (Median/C) and Go (Go/Median), 0 without a median.
	OverC, GoOver float64
}

func newGomemif() extra { return extra{key: "gomemif", label: "gomemif"} }
func newCChecks() extra { return extra{key: "cchecks", label: "C+checks"} }

// run adds one run. After a refusal or a failure it runs no more for this
// scenario: an optional column's limits must not abort the Go/C run (a
// failure is reported on stderr and in the table).
func (t *extra) run(bin string, args []string, name string) {
	if t.Note != "" {
		return
	}
	r, err := runOne(bin, args)
	var re *runError
	switch {
	case errors.As(err, &re) && errors.Is(err, errUnsupported):
		t.Note = "unsupported: " + lastLine(re.stderr)
	case err != nil:
		t.Note = "failed: " + err.Error()
		fmt.Fprintf(os.Stderr, "compare: %s: %s %v\n", name, t.label, err)
	case value(r, "lost") != 0 || value(r, "bad") != 0:
		t.Note = fmt.Sprintf("failed: lost %v, bad %v", r["lost"], r["bad"])
		fmt.Fprintf(os.Stderr, "compare: %s: %s %s\n", name, t.label, t.Note)
		t.Runs = append(t.Runs, r)
	default:
		t.Runs = append(t.Runs, r)
	}
}

// summarize takes the medians of the runs that passed, and the ratios
// against the medians of Go and C.
func (t *extra) summarize(metric string, goMedian, cMedian float64) {
	if len(t.Runs) == 0 || strings.HasPrefix(t.Note, "failed") {
		return
	}
	t.Median = median(t.Runs, metric)
	if metric == "mpps" {
		t.PerCPU = median(t.Runs, "mpps_per_cpu")
	}
	t.OverC, t.GoOver = ratio(t.Median, cMedian), ratio(goMedian, t.Median)
}

// appendJSON adds t's keys to the JSON object b (omitting empty ones).
func (t *extra) appendJSON(b []byte) ([]byte, error) {
	for _, kv := range []struct {
		k  string
		v  any
		ok bool
	}{
		{t.key, t.Runs, len(t.Runs) > 0},
		{t.key + "_median", t.Median, t.Median != 0},
		{t.key + "_mpps_per_cpu_median", t.PerCPU, t.PerCPU != 0},
		{t.key + "_note", t.Note, t.Note != ""},
		{t.key + "_c_ratio", t.OverC, t.OverC != 0},
		{"go_" + t.key + "_ratio", t.GoOver, t.GoOver != 0},
	} {
		if !kv.ok {
			continue
		}
		v, err := json.Marshal(kv.v)
		if err != nil {
			return nil, err
		}
		b = append(b[:len(b)-1], fmt.Sprintf(",%q:%s}", kv.k, v)...)
	}
	return b, nil
}

// MarshalJSON writes an outcome's own fields, then each optional
// implementation's prefixed keys.
func (o outcome) MarshalJSON() ([]byte, error) {
	type plain outcome // no MarshalJSON: no recursion
	b, err := json.Marshal(plain(o))
	for _, e := range []*extra{&o.Gomemif, &o.CChecks} {
		if err == nil {
			b, err = e.appendJSON(b)
		}
	}
	return b, err
}

// extraHeader and extraCells are one optional implementation's columns:
// its median, its ratios and its rate per CPU.
const extraHeader = " %-11s | %10s | %10s | %-11s |"

func extraRule() string {
	return fmt.Sprintf("%s|%s|%s|%s|", strings.Repeat("-", 13), strings.Repeat("-", 12), strings.Repeat("-", 12), strings.Repeat("-", 13))
}

// extraTitles names the columns: gomemif's ratios are gm/C and gm/Go;
// C+checks' are Go/(C+chk) and (C+chk)/C, the split of Go/C.
func (t *extra) titles() string {
	if t.key == "cchecks" {
		return fmt.Sprintf(extraHeader, "C+checks", "Go/(C+chk)", "(C+chk)/C", "chk per CPU")
	}
	return fmt.Sprintf(extraHeader, "gomemif", "gm/C", "gm/Go", "gm per CPU")
}

func (t *extra) cells(metric string, goMedian float64) string {
	if t.Median == 0 {
		why := "n/a"
		if strings.HasPrefix(t.Note, "failed") {
			why = "failed"
		}
		return fmt.Sprintf(extraHeader, why, "", "", "")
	}
	perCPU := ""
	if t.PerCPU > 0 {
		perCPU = fmt.Sprintf("%.1f", t.PerCPU)
	}
	a, b := t.OverC, ratio(t.Median, goMedian) // gm/C, gm/Go
	if t.key == "cchecks" {
		a, b = t.GoOver, t.OverC // Go/(C+chk), (C+chk)/C
	}
	return fmt.Sprintf(extraHeader, unit(t.Median, metric), fmt.Sprintf("%.3f", a), fmt.Sprintf("%.3f", b), perCPU)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
