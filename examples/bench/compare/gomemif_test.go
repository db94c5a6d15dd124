package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

// The test binary doubles as a fake gomemif driver: FAKE_GOMEMIF selects
// what it does when run by runOne.
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

func TestThirdMedian(t *testing.T) {
	var th third
	for _, v := range []string{"2", "9", "4"} {
		t.Setenv("FAKE_GOMEMIF", v)
		th.run(os.Args[0], nil, "t")
	}
	th.summarize("mpps")
	if th.GomemifNote != "" || len(th.Gomemif) != 3 || th.GomemifMedian != 4 || th.GomemifPerCPU != 7 {
		t.Fatalf("got %+v, want 3 runs, median 4, per CPU 7, no note", th)
	}
}

func TestThirdUnsupportedStops(t *testing.T) {
	var th third
	t.Setenv("FAKE_GOMEMIF", "unsupported")
	th.run(os.Args[0], nil, "t")
	t.Setenv("FAKE_GOMEMIF", "5") // not run: the scenario is refused once for all
	th.run(os.Args[0], nil, "t")
	th.summarize("mpps")
	if th.GomemifNote != "unsupported: gomemif-bench: -pingpong: unsupported by gomemif" || len(th.Gomemif) != 0 || th.GomemifMedian != 0 {
		t.Fatalf("got %+v", th)
	}
}

func TestThirdFailuresHaveNoMedian(t *testing.T) {
	for _, mode := range []string{"crash", "lost"} {
		var th third
		t.Setenv("FAKE_GOMEMIF", "6")
		th.run(os.Args[0], nil, "t")
		t.Setenv("FAKE_GOMEMIF", mode)
		th.run(os.Args[0], nil, "t")
		th.summarize("mpps")
		if !strings.HasPrefix(th.GomemifNote, "failed: ") || th.GomemifMedian != 0 {
			t.Fatalf("%s: got %+v, want a failure note and no median", mode, th)
		}
		cells := gomemifCells(outcome{scenario: scenario{Metric: "mpps"}, CMedian: 1, GoMedian: 1, third: th})
		if !strings.Contains(cells, "failed") {
			t.Fatalf("%s: cells %q do not say failed", mode, cells)
		}
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
		third: third{GomemifMedian: 4, GomemifPerCPU: 5}}
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
}

// A scenario whose medians are 0 (a pingpong shorter than its warm-up)
// must still be written: JSON has no NaN.
func TestZeroMediansMarshal(t *testing.T) {
	o := outcome{scenario: scenario{Metric: "p50"}, Ratio: ratio(0, 0)}
	if _, err := json.Marshal(results{Scenarios: []outcome{o}}); err != nil {
		t.Fatal(err)
	}
}
