package report

import (
	"bytes"
	"fmt"
	"image/color"
	"io"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Point is one value of a curve at a training step.
type Point struct {
	Step  int     `json:"step"`
	Value float64 `json:"value"`
}

// Series is one curve of a chart.
type Series struct {
	Name   string
	Points []Point
	// Color indexes the palette; two series of one run share a colour, told apart by
	// Dashed (eval curves are dashed, train curves solid).
	Color  int
	Dashed bool
	// Dots marks each point: eval curves have few points, each one an evaluation.
	Dots bool
}

// Marker is a vertical line at a step: a checkpoint, or the selected one.
type Marker struct {
	Step     int
	Label    string
	Selected bool
}

// Chart is a line chart of curves against the training step. It is drawn with
// gonum.org/v1/plot, once as inline SVG for the HTML report and once as PNG (loss.png),
// so both pictures come from one description.
type Chart struct {
	Title, YLabel string
	Series        []Series
	Markers       []Marker
	// Rising curves (accuracy) keep their legend at the bottom right, falling ones
	// (loss) at the top right: the corner the curves leave empty.
	Rising bool
}

// palette is colour-blind friendly (Okabe-Ito), dark enough on white.
var palette = []color.RGBA{
	{0x00, 0x72, 0xB2, 0xff}, // blue
	{0xD5, 0x5E, 0x00, 0xff}, // vermillion
	{0x00, 0x9E, 0x73, 0xff}, // green
	{0xCC, 0x79, 0xA7, 0xff}, // purple
	{0xE6, 0x9F, 0x00, 0xff}, // orange
	{0x56, 0xB4, 0xE9, 0xff}, // sky
}

var (
	gridColor     = color.RGBA{0xe3, 0xe6, 0xea, 0xff}
	markerColor   = color.RGBA{0x9a, 0xa3, 0xad, 0xff}
	selectedColor = color.RGBA{0x1a, 0x7f, 0x37, 0xff}
)

// Empty reports whether the chart has no point to draw.
func (c *Chart) Empty() bool {
	for _, s := range c.Series {
		if len(s.Points) > 0 {
			return false
		}
	}
	return true
}

// The plots use a sans-serif face (gonum's default is a serif one); gonum reads the
// default when a plot is made, so it is set once here.
func init() { plot.DefaultFont = font.Font{Typeface: "Liberation", Variant: "Sans"} }

func (c *Chart) plot() (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = c.Title
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.X.Label.Text = "step"
	p.Y.Label.Text = c.YLabel
	p.Legend.Top = !c.Rising
	p.Legend.Padding = vg.Points(2)
	p.Legend.TextStyle.Font.Size = vg.Points(10)
	p.Legend.XOffs = -vg.Points(8)
	p.Add(&plotter.Grid{Vertical: draw.LineStyle{Color: gridColor, Width: vg.Points(0.5)},
		Horizontal: draw.LineStyle{Color: gridColor, Width: vg.Points(0.5)}})

	lo, hi := math.Inf(1), math.Inf(-1)
	maxStep := 0
	for _, s := range c.Series {
		for _, pt := range s.Points {
			lo, hi = math.Min(lo, pt.Value), math.Max(hi, pt.Value)
			maxStep = max(maxStep, pt.Step)
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 0, 1
	}
	if hi-lo < 1e-9 {
		lo, hi = lo-0.5, hi+0.5
	}
	// Room on the legend's side keeps it off the curves.
	span := hi - lo
	if c.Rising {
		lo, hi = lo-span*0.32, hi+span*0.04
	} else {
		lo, hi = lo-span*0.04, hi+span*0.28
	}

	for _, m := range c.Markers {
		l, err := plotter.NewLine(plotter.XYs{{X: float64(m.Step), Y: lo}, {X: float64(m.Step), Y: hi}})
		if err != nil {
			return nil, err
		}
		l.Color, l.Width, l.Dashes = markerColor, vg.Points(0.8), []vg.Length{vg.Points(2), vg.Points(3)}
		if m.Selected {
			l.Color, l.Width, l.Dashes = selectedColor, vg.Points(1.6), nil
			p.Legend.Add(m.Label, l)
		}
		p.Add(l)
		maxStep = max(maxStep, m.Step)
	}
	if hasPlain(c.Markers) {
		l, _ := plotter.NewLine(plotter.XYs{{X: 0, Y: lo}, {X: 0, Y: lo}})
		l.Color, l.Width, l.Dashes = markerColor, vg.Points(0.8), []vg.Length{vg.Points(2), vg.Points(3)}
		p.Legend.Add("checkpoint", l)
	}

	for _, s := range c.Series {
		if len(s.Points) == 0 {
			continue
		}
		pts := thin(s.Points, maxDrawn)
		xys := make(plotter.XYs, len(pts))
		for i, pt := range pts {
			xys[i] = plotter.XY{X: float64(pt.Step), Y: pt.Value}
		}
		col := palette[s.Color%len(palette)]
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("series %s: %w", s.Name, err)
		}
		l.Color, l.Width = col, vg.Points(1.8)
		if s.Dashed {
			l.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
		}
		p.Add(l)
		if s.Dots {
			sc, err := plotter.NewScatter(xys)
			if err != nil {
				return nil, err
			}
			sc.GlyphStyle = draw.GlyphStyle{Color: col, Radius: vg.Points(2.6), Shape: draw.CircleGlyph{}}
			p.Add(sc)
			p.Legend.Add(s.Name, l, sc)
		} else {
			p.Legend.Add(s.Name, l)
		}
	}
	p.X.Min, p.X.Max = 0, float64(max(maxStep, 1))*1.02
	p.X.Tick.Marker = stepTicks{}
	p.Y.Min, p.Y.Max = lo, hi
	return p, nil
}

// maxDrawn bounds the points drawn per curve: a chart is under 1,000 pixels wide, and
// a 100,000-step run logged every step would otherwise make a report of megabytes.
const maxDrawn = 2000

// thin keeps at most about n points of ps (sorted by step): each of n/2 buckets of
// consecutive points keeps its lowest and its highest, in step order, so a spike
// stays visible.
func thin(ps []Point, n int) []Point {
	if len(ps) <= n {
		return ps
	}
	buckets := n / 2
	out := make([]Point, 0, n+1)
	for b := range buckets {
		lo, hi := b*len(ps)/buckets, (b+1)*len(ps)/buckets
		mn, mx := lo, lo
		for i := lo; i < hi; i++ {
			if ps[i].Value < ps[mn].Value {
				mn = i
			}
			if ps[i].Value > ps[mx].Value {
				mx = i
			}
		}
		out = append(out, ps[min(mn, mx)])
		if mn != mx {
			out = append(out, ps[max(mn, mx)])
		}
	}
	return out
}

// stepTicks labels the step axis with whole numbers ("25", not "25.00").
type stepTicks struct{}

func (stepTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i, t := range ts {
		if t.Label == "" {
			continue
		}
		if t.Value != math.Trunc(t.Value) {
			ts[i].Label = ""
			continue
		}
		ts[i].Label = strconv.Itoa(int(t.Value))
	}
	return ts
}

func hasPlain(ms []Marker) bool {
	for _, m := range ms {
		if !m.Selected {
			return true
		}
	}
	return false
}

// Chart sizes: wide enough for a long run's curve, short enough to see beside the table.
const (
	chartWidth  = 9 * vg.Inch
	chartHeight = 4 * vg.Inch
)

// SVG renders the chart as an inline <svg> element (no XML prolog). Text in it is
// escaped by the renderer.
func (c *Chart) SVG() ([]byte, error) {
	p, err := c.plot()
	if err != nil {
		return nil, err
	}
	cv := vgsvg.New(chartWidth, chartHeight)
	p.Draw(draw.New(cv))
	var buf bytes.Buffer
	if _, err := cv.WriteTo(&buf); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	if i := bytes.Index(b, []byte("<svg")); i >= 0 {
		b = b[i:]
	}
	return b, nil
}

// PNG renders the chart as a PNG image at 110 dpi.
func (c *Chart) PNG(w io.Writer) error {
	p, err := c.plot()
	if err != nil {
		return err
	}
	cv := vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(chartWidth, chartHeight), vgimg.UseDPI(110))}
	p.Draw(draw.New(cv))
	_, err = cv.WriteTo(w)
	return err
}
