// Command plot draws the sweeps of a compare run (bench/results.json): Mpps
// against frame size and against burst, Go and C side by side, as one PNG.
//
//	plot -in bench/results.json -out docs/bench.png
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

type point struct {
	X  int     `json:"x"`
	Go float64 `json:"go"`
	C  float64 `json:"c"`
	// Gomemif is present when compare ran with -gomemif, 0 where gomemif could not run.
	Gomemif float64 `json:"gomemif,omitempty"`
}

type results struct {
	Machine       map[string]string  `json:"machine"`
	SweepPairs    int                `json:"sweep_pairs"`
	SweepDuration string             `json:"sweep_duration"`
	Sweeps        map[string][]point `json:"sweeps"`
	Gomemif       string             `json:"gomemif_driver"` // set when gomemif ran too
}

var (
	goColor = color.RGBA{R: 0, G: 125, B: 156, A: 255} // Go blue
	cColor  = color.RGBA{R: 200, G: 80, B: 40, A: 255}
	gmColor = color.RGBA{R: 110, G: 110, B: 110, A: 255}
)

func main() {
	in := flag.String("in", "bench/results.json", "results written by examples/bench/compare")
	out := flag.String("out", "docs/bench.png", "PNG to write")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
	fmt.Println("wrote", *out)
}

func run(in, out string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var r results
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	if len(r.Sweeps["size"]) == 0 || len(r.Sweeps["burst"]) == 0 {
		return fmt.Errorf("%s has no sweeps (run compare with -sweep-pairs > 0)", in)
	}
	sub := fmt.Sprintf("%s, %s CPUs", r.Machine["cpu"], r.Machine["nproc"])
	left, err := sweep(r.Sweeps["size"], "Mpps vs frame size (burst 64, 1 thread, zero-copy)", "frame size (bytes, log scale)", true)
	if err != nil {
		return err
	}
	right, err := sweep(r.Sweeps["burst"], "Mpps vs burst (64-byte frames, 1 thread, zero-copy)", "burst (packets, log scale)", true)
	if err != nil {
		return err
	}
	const w, h = 14 * vg.Inch, 5 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Inch / 3, PadY: vg.Inch / 4, PadTop: vg.Inch / 3}
	var canvases [][]draw.Canvas
	dc.SetColor(color.White) // behind and between the tiles
	dc.Fill(dc.Rectangle.Path())
	canvases = plot.Align([][]*plot.Plot{{left, right}}, tiles, dc)
	left.Draw(canvases[0][0])
	right.Draw(canvases[0][1])
	sty := text.Style{Color: color.Black, Font: font.From(plot.DefaultFont, 11), Handler: plot.DefaultTextHandler}
	who, also := "Go/C pairs", ""
	if r.Gomemif != "" {
		who, also = "Go/C/gomemif rounds", " and GoVPP's gomemif (it copies; no chained frames)"
	}
	dc.FillText(sty, vg.Point{X: vg.Inch / 4, Y: h - vg.Inch/5},
		fmt.Sprintf("memif-go vs C libmemif 4.0%s, in-process loopback; median of %d alternating %s of %s per point. %s",
			also, r.SweepPairs, who, r.SweepDuration, sub))
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = vgimg.PngCanvas{Canvas: img}.WriteTo(f)
	return err
}

func sweep(pts []point, title, xlabel string, logX bool) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	p.Y.Label.Text = "Mpps"
	p.Y.Min = 0
	if logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = ticks(pts)
	}
	p.Add(plotter.NewGrid())
	for _, s := range []struct {
		name     string
		col      color.Color
		get      func(point) float64
		optional bool // drawn only where it ran (0: did not)
	}{
		{"Go (memif-go)", goColor, func(q point) float64 { return q.Go }, false},
		{"C (libmemif)", cColor, func(q point) float64 { return q.C }, false},
		{"gomemif (GoVPP, pure Go)", gmColor, func(q point) float64 { return q.Gomemif }, true},
	} {
		var xy plotter.XYs
		for _, q := range pts {
			if v := s.get(q); v > 0 || !s.optional {
				xy = append(xy, plotter.XY{X: float64(q.X), Y: v})
			}
		}
		if len(xy) == 0 {
			continue // no gomemif in this run
		}
		line, points, err := plotter.NewLinePoints(xy)
		if err != nil {
			return nil, err
		}
		line.Color, points.Color = s.col, s.col
		line.Width = vg.Points(2)
		p.Add(line, points)
		p.Legend.Add(s.name, line, points)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(8), -vg.Points(4)
	top := 0.0
	for _, q := range pts {
		top = max(top, q.Go, q.C, q.Gomemif)
	}
	p.Y.Max = top * 1.2 // room for the legend
	return p, nil
}

// ticks labels exactly the measured x values.
func ticks(pts []point) plot.Ticker {
	var t plot.ConstantTicks
	for _, q := range pts {
		t = append(t, plot.Tick{Value: float64(q.X), Label: fmt.Sprint(q.X)})
	}
	return t
}
