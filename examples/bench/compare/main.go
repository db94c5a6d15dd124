// Command compare runs the Go bench and its C twin alternately (Go, C, Go,
// C, ...) on the same scenarios, prints median against median, and writes
// every run to a JSON file for the plot program. ./build.sh bench runs it.
// Optional implementations with the same flags and JSON run in the same
// rounds (extra.go): -cchecks, the C twin calling the binding's C layer per
// burst (bin/memif_bench_c_checks), which splits each Go/C ratio into
// Go/(C+checks) and (C+checks)/C; -gomemif, a driver of GoVPP's pure-Go
// gomemif.
//
//	compare -go bin/bench -c bin/memif_bench_c -cchecks bin/memif_bench_c_checks -pairs 5 -duration 2s -out bench/results.json
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

type scenario struct {
	Name   string   `json:"name"`
	Args   []string `json:"args"`
	Metric string   `json:"metric"` // mpps, or p50 for pingpong (ns)
	Target float64  `json:"target"` // Go/C ratio to reach (mpps: at least; p50: at most)
}

type outcome struct {
	scenario
	Go       []map[string]any `json:"go"`
	C        []map[string]any `json:"c"`
	GoMedian float64          `json:"go_median"`
	CMedian  float64          `json:"c_median"`
	Ratio    float64          `json:"ratio"` // Go/C
	Met      bool             `json:"met"`
	// Per CPU second of the worker threads: what other load barely moves.
	GoPerCPU float64 `json:"go_mpps_per_cpu_median,omitempty"`
	CPerCPU  float64 `json:"c_mpps_per_cpu_median,omitempty"`
	GoP99    float64 `json:"go_p99,omitempty"`
	CP99     float64 `json:"c_p99,omitempty"`
	// The optional implementations: JSON keys of their own (MarshalJSON).
	Gomemif extra `json:"-"`
	CChecks extra `json:"-"`
}

type point struct {
	X  int     `json:"x"`
	Go float64 `json:"go"`
	C  float64 `json:"c"`
	// Gomemif is gomemif's median Mpps; absent where it did not run.
	Gomemif float64 `json:"gomemif,omitempty"`
}

type results struct {
	Machine  map[string]string `json:"machine"`
	Command  string            `json:"command"`
	Pairs    int               `json:"pairs"`
	Duration string            `json:"duration"`
	// The sweeps' own pairs and run length.
	SweepPairs    int                `json:"sweep_pairs"`
	SweepDuration string             `json:"sweep_duration"`
	Scenarios     []outcome          `json:"scenarios"`
	Sweeps        map[string][]point `json:"sweeps"` // "size" and "burst": median Mpps
	// Gomemif is the -gomemif driver's path, empty when it did not run.
	Gomemif string `json:"gomemif_driver,omitempty"`
	// CChecks is the -cchecks binary's path, empty when it did not run.
	CChecks string `json:"cchecks_binary,omitempty"`
}

func main() {
	goBin := flag.String("go", "bin/bench", "the Go bench binary")
	cBin := flag.String("c", "bin/memif_bench_c", "the C twin binary")
	pairs := flag.Int("pairs", 7, "Go/C pairs per scenario")
	dur := flag.Duration("duration", 2*time.Second, "duration of each run")
	sweepPairs := flag.Int("sweep-pairs", 3, "Go/C pairs per sweep point (0: no sweeps)")
	sweepDur := flag.Duration("sweep-duration", time.Second, "duration of each sweep run")
	cpus := flag.String("cpus", defaultCPUs(), "CPUs for the two worker threads in 2-thread scenarios; 1-thread runs use the last (bench -cpus)")
	out := flag.String("out", "bench/results.json", "write all runs here")
	gmBin := flag.String("gomemif", "", "also run this gomemif driver (same flags and JSON) in every round it supports")
	ccBin := flag.String("cchecks", "", "also run this C twin built with the binding's checks (memif_bench_c_checks) in every round it supports")
	only := flag.String("run", "", "only the scenarios whose name matches this regular expression (short checks; ./build.sh bench runs all)")
	flag.Parse()
	onlyRE, err := regexp.Compile(*only)
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare: -run:", err)
		os.Exit(2)
	}

	common := []string{"-json", "-duration", dur.String()}
	// Two busy threads are pinned apart (unpinned, a loaded box may run both
	// on one CPU). One thread is pinned too, to the last of those CPUs: left
	// to the kernel, it moved between CPUs and this VM's 1-thread rates went
	// bimodal (C: 21.5 to 28.5 Mpps across runs, 27.4 to 28.5 pinned).
	pinned := func(args ...string) []string {
		if *cpus != "" {
			args = append(args, "-cpus", *cpus)
		}
		return args
	}
	one := func(args ...string) []string {
		if *cpus != "" {
			all := strings.Split(*cpus, ",")
			args = append(args, "-cpus", all[len(all)-1])
		}
		return args
	}
	scen := []scenario{
		{"64B zerocopy, burst 64, 1 thread", one("-size", "64", "-burst", "64", "-threads", "1"), "mpps", 0.95},
		{"64B zerocopy, burst 256, 1 thread", one("-size", "64", "-burst", "256", "-threads", "1"), "mpps", 0.99},
		{"64B zerocopy, burst 64, 2 threads", pinned("-size", "64", "-burst", "64", "-threads", "2"), "mpps", 0.95},
		{"64B zerocopy, burst 256, 2 threads", pinned("-size", "64", "-burst", "256", "-threads", "2"), "mpps", 0.99},
		{"1500B copy, burst 64, 1 thread", one("-size", "1500", "-burst", "64", "-threads", "1", "-workload", "copy"), "mpps", 0.98},
		{"64B forward, burst 64, 1 thread", one("-size", "64", "-burst", "64", "-threads", "1", "-workload", "forward"), "mpps", 0.9},
		{"1500B forward, burst 64, 1 thread", one("-size", "1500", "-burst", "64", "-threads", "1", "-workload", "forward"), "mpps", 0.9},
		{"64B pingpong p50 latency (ns)", pinned("-size", "64", "-pingpong"), "p50", 1.1},
	}
	res := results{Machine: machine(*goBin), Command: "./build.sh bench", Pairs: *pairs, Duration: dur.String(),
		SweepPairs: *sweepPairs, SweepDuration: sweepDur.String(), Sweeps: map[string][]point{}, Gomemif: *gmBin, CChecks: *ccBin}
	for _, s := range scen {
		if !onlyRE.MatchString(s.Name) {
			continue
		}
		o := outcome{scenario: s, Gomemif: newGomemif(), CChecks: newCChecks()}
		for i := 0; i < *pairs; i++ {
			for _, bin := range []string{*goBin, *cBin} { // A B A B ...
				r, err := runOne(bin, append(slices.Clone(common), s.Args...))
				if err != nil {
					fmt.Fprintf(os.Stderr, "compare: %s: %v\n", s.Name, err)
					os.Exit(1)
				}
				if bin == *goBin {
					o.Go = append(o.Go, r)
				} else {
					o.C = append(o.C, r)
				}
			}
			if *ccBin != "" { // A B K (G) A B K (G) ...
				o.CChecks.run(*ccBin, append(slices.Clone(common), s.Args...), s.Name)
			}
			if *gmBin != "" {
				o.Gomemif.run(*gmBin, append(slices.Clone(common), s.Args...), s.Name)
			}
			status("%s: %d/%d pairs", s.Name, i+1, *pairs)
		}
		o.GoMedian, o.CMedian = median(o.Go, s.Metric), median(o.C, s.Metric)
		o.Ratio = ratio(o.GoMedian, o.CMedian)
		if s.Metric == "p50" {
			o.Met = o.Ratio <= s.Target
			o.GoP99, o.CP99 = median(o.Go, "p99"), median(o.C, "p99")
		} else {
			o.Met = o.Ratio >= s.Target
			o.GoPerCPU, o.CPerCPU = median(o.Go, "mpps_per_cpu"), median(o.C, "mpps_per_cpu")
		}
		o.CChecks.summarize(s.Metric, o.GoMedian, o.CMedian)
		o.Gomemif.summarize(s.Metric, o.GoMedian, o.CMedian)
		res.Scenarios = append(res.Scenarios, o)
	}
	if *sweepPairs > 0 {
		sc := one("-json", "-duration", sweepDur.String(), "-threads", "1")
		for _, sw := range []struct {
			name, flag string
			xs         []int
			fixed      []string
		}{
			{"size", "-size", []int{64, 128, 256, 512, 1024, 1500, 2048, 4096, 9000}, []string{"-burst", "64"}},
			{"burst", "-burst", []int{1, 2, 4, 8, 16, 32, 64, 128, 256}, []string{"-size", "64"}},
		} {
			for _, x := range sw.xs {
				args := append(append(slices.Clone(sc), sw.fixed...), sw.flag, fmt.Sprint(x))
				var g, c []map[string]any
				gm := newGomemif()
				for i := 0; i < *sweepPairs; i++ {
					rg, err := runOne(*goBin, args)
					if err == nil {
						g = append(g, rg)
						var rc map[string]any
						if rc, err = runOne(*cBin, args); err == nil {
							c = append(c, rc)
						}
					}
					if err != nil {
						fmt.Fprintf(os.Stderr, "compare: sweep %s=%d: %v\n", sw.name, x, err)
						os.Exit(1)
					}
					if *gmBin != "" {
						gm.run(*gmBin, args, fmt.Sprintf("sweep %s=%d", sw.name, x))
					}
				}
				gm.summarize("mpps", median(g, "mpps"), median(c, "mpps"))
				res.Sweeps[sw.name] = append(res.Sweeps[sw.name], point{X: x, Go: median(g, "mpps"), C: median(c, "mpps"), Gomemif: gm.Median})
				status("sweep %s %d", sw.name, x)
			}
		}
	}
	status("")
	printTable(res)
	buf, err := json.MarshalIndent(res, "", "  ")
	if err == nil {
		err = os.WriteFile(*out, append(buf, '\n'), 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
	fmt.Printf("\nall runs: %s\n", *out)
}

var tty = func() bool {
	_, err := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS)
	return err == nil
}()

// status shows progress on a terminal's last line.
func status(format string, a ...any) {
	if tty {
		fmt.Fprintf(os.Stderr, "\r\033[K"+format, a...)
	}
}

// defaultCPUs pins the two worker threads apart when there are two CPUs or
// more: unpinned busy pollers on a small box can land on one CPU.
func defaultCPUs() string {
	if runtime.NumCPU() >= 2 {
		return "0,1"
	}
	return ""
}

func runOne(bin string, args []string) (map[string]any, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == exitUnsupported {
			err = errUnsupported
		}
		return nil, &runError{cmd: bin + " " + strings.Join(args, " "), err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	var r map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("%s: output is not one JSON object: %v", bin, err)
	}
	return r, nil
}

// runError is a run that failed, with what it said on stderr.
type runError struct {
	cmd, stderr string
	err         error
}

func (e *runError) Error() string { return fmt.Sprintf("%s: %v: %s", e.cmd, e.err, e.stderr) }
func (e *runError) Unwrap() error { return e.err }

func value(r map[string]any, metric string) float64 {
	if metric == "mpps" || metric == "mpps_per_cpu" || metric == "lost" || metric == "bad" {
		v, _ := r[metric].(float64)
		return v
	}
	lat, _ := r["latency_ns"].(map[string]any)
	v, _ := lat[metric].(float64)
	return v
}

// ratio is a/b, or 0 when b is 0 (a pingpong shorter than its warm-up has
// no latency): JSON has no NaN or Inf, and one would lose every run.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func median(runs []map[string]any, metric string) float64 {
	var v []float64
	for _, r := range runs {
		v = append(v, value(r, metric))
	}
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func printTable(res results) {
	gm, cc := res.Gomemif != "", res.CChecks != ""
	also := ""
	switch {
	case gm && cc:
		also = ", each pair followed by a C+checks and a gomemif run"
	case cc:
		also = ", each pair followed by a C+checks run"
	case gm:
		also = ", each pair followed by a gomemif run"
	}
	fmt.Printf("%d Go/C pairs of %s each, alternating%s; medians. Per CPU: Mpps per second of worker-thread CPU time.\n\n",
		res.Pairs, res.Duration, also)
	// extras are the optional columns after a row's own: C+checks, then
	// gomemif, each only when it ran.
	extras := func(o *outcome, f func(e *extra) string) string {
		var b strings.Builder
		if cc {
			b.WriteString(f(&o.CChecks))
		}
		if gm {
			b.WriteString(f(&o.Gomemif))
		}
		return b.String()
	}
	head := outcome{Gomemif: newGomemif(), CChecks: newCChecks()}
	fmt.Printf("| %-36s | %11s | %11s | %6s | %-14s | %-21s |%s\n", "scenario", "Go", "C", "Go/C", "target", "per CPU: Go, C, Go/C",
		extras(&head, (*extra).titles))
	fmt.Printf("|%s|%s|%s|%s|%s|%s|%s\n", strings.Repeat("-", 38), strings.Repeat("-", 13), strings.Repeat("-", 13),
		strings.Repeat("-", 8), strings.Repeat("-", 16), strings.Repeat("-", 23), extras(&head, func(*extra) string { return extraRule() }))
	for _, o := range res.Scenarios {
		tgt := fmt.Sprintf(">= %.2f", o.Target)
		if o.Metric == "p50" {
			tgt = fmt.Sprintf("<= %.2f", o.Target)
		}
		mark := "met"
		if !o.Met {
			mark = "MISSED"
		}
		perCPU := ""
		if o.CPerCPU > 0 {
			perCPU = fmt.Sprintf("%.1f, %.1f, %.3f", o.GoPerCPU, o.CPerCPU, o.GoPerCPU/o.CPerCPU)
		}
		fmt.Printf("| %-36s | %11s | %11s | %6.3f | %-7s %-6s | %-21s |%s\n", o.Name, unit(o.GoMedian, o.Metric),
			unit(o.CMedian, o.Metric), o.Ratio, tgt, mark, perCPU, extras(&o, func(e *extra) string { return e.cells(o.Metric, o.GoMedian) }))
		if o.Metric == "p50" {
			fmt.Printf("| %-36s | %11s | %11s | %6.3f | %-14s | %-21s |%s\n", "64B pingpong p99 latency (ns)",
				unit(o.GoP99, "p99"), unit(o.CP99, "p99"), o.GoP99/o.CP99, "(none)", "",
				extras(&o, func(*extra) string { return fmt.Sprintf(extraHeader, "n/a", "", "", "") }))
		}
	}
	if len(res.Sweeps) > 0 {
		sw := ""
		if gm {
			sw = " / gomemif (-: n/a)"
		}
		fmt.Printf("\nsweeps (1 thread, zerocopy, median Mpps Go / C%s):\n", sw)
		for _, name := range []string{"size", "burst"} {
			var parts []string
			for _, p := range res.Sweeps[name] {
				g := ""
				if gm && p.Gomemif > 0 {
					g = fmt.Sprintf("/%.2f", p.Gomemif)
				} else if gm {
					g = "/-"
				}
				parts = append(parts, fmt.Sprintf("%d: %.2f/%.2f%s", p.X, p.Go, p.C, g))
			}
			fmt.Printf("  %-5s %s\n", name, strings.Join(parts, "  "))
		}
	}
}

func unit(v float64, metric string) string {
	if metric == "mpps" {
		return fmt.Sprintf("%.2f Mpps", v)
	}
	return fmt.Sprintf("%.0f ns", v)
}

func machine(goBin string) map[string]string {
	m := map[string]string{"nproc": fmt.Sprint(runtime.NumCPU()), "go": runtime.Version(),
		"date": time.Now().UTC().Format(time.RFC3339)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := exec.Command("uname", "-r").Output(); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	if b, err := exec.Command("cc", "--version").Output(); err == nil {
		m["cc"] = strings.SplitN(string(b), "\n", 2)[0]
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m["loadavg_at_start"] = strings.TrimSpace(string(b))
	}
	m["libmemif"] = "4.0"
	return m
}
