package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

// The test binary doubles as a fake optional implementation (a gomemif
// driver, or memif_bench_c_checks): FAKE_GOMEMIF selects what it does when
// run by runOne.
func TestMain(m *testing.M) {
	switch os.Getenv("FAKE_GOMEMIF") {
	case "":
		os.Exit(m.Run())
	case "unsupported":
		fmt.Fprintln(os.Stderr, "gomemif-bench: -pingpong: unsupported by gomemif")
		os.Exit(exitUnsupported)
	case "crash":
		fmt.Fprintln(os.Stderr, "boom")
		os.Exit(1)
	case "lost":
		fmt.Println(`{"impl":"gomemif","mpps":3,"mpps_per_cpu":4,"lost":5,"bad":0}`)
	default: // a good run whose rate is the value
		fmt.Printf(`{"impl":"gomemif","mpps":%s,"mpps_per_cpu":7,"lost":0,"bad":0}`+"\n", os.Getenv("FAKE_GOMEMIF"))
	}
	os.Exit(0)
}

func TestExtraMedian(t *testing.T) {
	th := newGomemif()
	for _, v := range []string{"2", "9", "4"} {
		t.Setenv("FAKE_GOMEMIF", v)
		th.run(os.Args[0], nil, "t")
	}
	th.summarize("mpps", 8, 16)
	if th.Note != "" || len(th.Runs) != 3 || th.Median != 4 || th.PerCPU != 7 || th.OverC != 0.25 || th.GoOver != 2 {
		t.Fatalf("got %+v, want 3 runs, median 4, per CPU 7, ratios 0.25 and 2, no note", th)
	}
}

func TestExtraUnsupportedStops(t *testing.T) {
	th := newGomemif()
	t.Setenv("FAKE_GOMEMIF", "unsupported")
	th.run(os.Args[0], nil, "t")
	t.Setenv("FAKE_GOMEMIF", "5") // not run: the scenario is refused once for all
	th.run(os.Args[0], nil, "t")
	th.summarize("mpps", 1, 1)
	if th.Note != "unsupported: gomemif-bench: -pingpong: unsupported by gomemif" || len(th.Runs) != 0 || th.Median != 0 {
		t.Fatalf("got %+v", th)
	}
}

// A C+checks run that loses a packet or fails (a check dropping in a clean
// run exits 1) shows "failed", never a median.
func TestExtraFailuresHaveNoMedian(t *testing.T) {
	for _, mode := range []string{"crash", "lost"} {
		for _, th := range []extra{newGomemif(), newCChecks()} {
			t.Setenv("FAKE_GOMEMIF", "6")
			th.run(os.Args[0], nil, "t")
			t.Setenv("FAKE_GOMEMIF", mode)
			th.run(os.Args[0], nil, "t")
			th.summarize("mpps", 1, 1)
			if !strings.HasPrefix(th.Note, "failed: ") || th.Median != 0 {
				t.Fatalf("%s %s: got %+v, want a failure note and no median", th.key, mode, th)
			}
			if cells := th.cells("mpps", 1); !strings.Contains(cells, "failed") {
				t.Fatalf("%s %s: cells %q do not say failed", th.key, mode, cells)
			}
		}
	}
}

// results.json keeps gomemif's keys and gains C+checks' beside them.
func TestExtraJSONKeys(t *testing.T) {
	o := outcome{scenario: scenario{Name: "64B", Metric: "mpps"}, GoMedian: 6, CMedian: 10, Gomemif: newGomemif(), CChecks: newCChecks()}
	o.Gomemif.Runs, o.Gomemif.Median, o.Gomemif.Note = []map[string]any{{"mpps": 4.0}}, 4, ""
	o.CChecks.Runs = []map[string]any{{"mpps": 8.0}, {"mpps": 8.0}}
	o.CChecks.summarize("mpps", o.GoMedian, o.CMedian)
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	want := map[string]float64{"go_median": 6, "c_median": 10, "gomemif_median": 4, "cchecks_median": 8,
		"cchecks_c_ratio": 0.8, "go_cchecks_ratio": 0.75}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v in %s", k, m[k], v, b)
		}
	}
	if runs, _ := m["cchecks"].([]any); len(runs) != 2 {
		t.Errorf("cchecks runs: %v", m["cchecks"])
	}
	if _, ok := m["cchecks_note"]; ok {
		t.Errorf("empty note written: %s", b)
	}
}

// printed captures printTable's output.
func printed(t *testing.T, res results) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	printTable(res)
	os.Stdout = stdout
	w.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTableColumns(t *testing.T) {
	o := outcome{scenario: scenario{Name: "64B", Metric: "mpps", Target: 0.95}, GoMedian: 8, CMedian: 10, Ratio: 0.8,
		Gomemif: newGomemif(), CChecks: newCChecks()}
	o.Gomemif.Runs, o.Gomemif.Median, o.Gomemif.PerCPU, o.Gomemif.OverC = []map[string]any{{}}, 4, 5, 0.4
	o.CChecks.Runs, o.CChecks.Median, o.CChecks.PerCPU, o.CChecks.OverC, o.CChecks.GoOver = []map[string]any{{}}, 9, 11, 0.9, 8.0/9
	res := results{Pairs: 1, Duration: "1s", Scenarios: []outcome{o},
		Sweeps: map[string][]point{"size": {{X: 64, Go: 8, C: 10, Gomemif: 4}, {X: 4096, Go: 8, C: 10}}}}
	without := printed(t, res)
	if strings.Contains(without, "gomemif") || strings.Contains(without, "4.00 Mpps") || strings.Contains(without, "/4.00") {
		t.Fatalf("without -gomemif the table shows gomemif:\n%s", without)
	}
	res.Gomemif = "driver"
	with := printed(t, res)
	for _, want := range []string{"gm/C", "4.00 Mpps", "0.400", "0.500", "64: 8.00/10.00/4.00", "4096: 8.00/10.00/-"} {
		if !strings.Contains(with, want) {
			t.Fatalf("table lacks %q:\n%s", want, with)
		}
	}
	if strings.Contains(with, "C+chk") {
		t.Fatalf("without -cchecks the table shows C+checks:\n%s", with)
	}
	res.CChecks = "bin"
	both := printed(t, res)
	for _, want := range []string{"Go/(C+chk)", "(C+chk)/C", "9.00 Mpps", "0.889", "0.900", "11.0", "gm/C", "0.400"} {
		if !strings.Contains(both, want) {
			t.Fatalf("table lacks %q:\n%s", want, both)
		}
	}
	if i, j := strings.Index(both, "C+checks"), strings.Index(both, "| gomemif"); i < 0 || j < i {
		t.Fatalf("C+checks columns should come before gomemif's:\n%s", both)
	}
}

// A scenario whose medians are 0 (a pingpong shorter than its warm-up)
// must still be written: JSON has no NaN.
func TestZeroMediansMarshal(t *testing.T) {
	o := outcome{scenario: scenario{Metric: "p50"}, Ratio: ratio(0, 0)}
	if _, err := json.Marshal(results{Scenarios: []outcome{o}}); err != nil {
		t.Fatal(err)
	}
}
