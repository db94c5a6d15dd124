package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// The gomemif driver (GoVPP's pure-Go memif under our bench's flags and JSON)
// is built by hand outside this repository: the module proxy refuses
// go.fd.io/govpp. It exits with exitUnsupported for a scenario gomemif
// cannot run (pingpong, chained frames, ...); compare then shows n/a.
const exitUnsupported = 3

var errUnsupported = errors.New("unsupported")

// third is the optional third implementation's share of an outcome.
type third struct {
	Gomemif       []map[string]any `json:"gomemif,omitempty"`
	GomemifMedian float64          `json:"gomemif_median,omitempty"`
	GomemifPerCPU float64          `json:"gomemif_mpps_per_cpu_median,omitempty"`
	// GomemifNote says why gomemif has no runs or fewer runs than Go:
	// "unsupported: ..." or the error that stopped it.
	GomemifNote string `json:"gomemif_note,omitempty"`
}

// run adds one gomemif run. After a refusal or a failure it runs no more
// for this scenario: a third party's limits must not abort the Go/C run.
func (t *third) run(bin string, args []string, name string) {
	if t.GomemifNote != "" {
		return
	}
	r, err := runOne(bin, args)
	var re *runError
	switch {
	case errors.As(err, &re) && errors.Is(err, errUnsupported):
		t.GomemifNote = "unsupported: " + lastLine(re.stderr)
	case err != nil:
		t.GomemifNote = "failed: " + err.Error()
		fmt.Fprintf(os.Stderr, "compare: %s: gomemif %v\n", name, err)
	case value(r, "lost") != 0 || value(r, "bad") != 0:
		t.GomemifNote = fmt.Sprintf("failed: lost %v, bad %v", r["lost"], r["bad"])
		fmt.Fprintf(os.Stderr, "compare: %s: gomemif %s\n", name, t.GomemifNote)
		t.Gomemif = append(t.Gomemif, r)
	default:
		t.Gomemif = append(t.Gomemif, r)
	}
}

// summarize takes the medians of the runs that passed.
func (t *third) summarize(metric string) {
	if len(t.Gomemif) == 0 || strings.HasPrefix(t.GomemifNote, "failed") {
		return
	}
	t.GomemifMedian = median(t.Gomemif, metric)
	if metric == "mpps" {
		t.GomemifPerCPU = median(t.Gomemif, "mpps_per_cpu")
	}
}

// gomemifHeader and gomemifCells are the table's extra columns.
const gomemifHeader = " %-11s | %7s | %7s | %-11s |"

func gomemifRule() string {
	return fmt.Sprintf("%s|%s|%s|%s|", strings.Repeat("-", 13), strings.Repeat("-", 9), strings.Repeat("-", 9), strings.Repeat("-", 13))
}

func gomemifCells(o outcome) string {
	if o.GomemifMedian == 0 {
		why := "n/a"
		if strings.HasPrefix(o.GomemifNote, "failed") {
			why = "failed"
		}
		return fmt.Sprintf(gomemifHeader, why, "", "", "")
	}
	perCPU := ""
	if o.GomemifPerCPU > 0 {
		perCPU = fmt.Sprintf("%.1f", o.GomemifPerCPU)
	}
	return fmt.Sprintf(gomemifHeader, unit(o.GomemifMedian, o.Metric), fmt.Sprintf("%.3f", ratio(o.GomemifMedian, o.CMedian)),
		fmt.Sprintf("%.3f", ratio(o.GomemifMedian, o.GoMedian)), perCPU)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
