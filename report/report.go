// Package report renders one run as a self-contained HTML page (report.html) and its
// loss curves as a PNG (loss.png), and compares two runs, or a run and an OpenAI
// fine-tuning job's results CSV (compare.go, openai.go).
//
// The HTML loads nothing from the network: its CSS, a few lines of JavaScript for
// filtering, and the charts (inline SVG) are all in the file, so it can be mailed,
// archived beside the adapter, or opened on a machine with no network. Every string
// that comes from a run's files goes through html/template, which escapes it for the
// context it lands in: a generation that holds markup shows as text.
package report

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io"
	"path/filepath"
	"time"

	"github.com/loractl/loractl/run"
)

//go:embed report.html.tmpl compare.html.tmpl style.css
var assets embed.FS

var (
	style = func() template.CSS {
		b, err := assets.ReadFile("style.css")
		if err != nil {
			panic(err)
		}
		return template.CSS(b)
	}()
	funcs    = template.FuncMap{"css": func() template.CSS { return style }}
	runTmpl  = template.Must(template.New("report.html.tmpl").Funcs(funcs).ParseFS(assets, "report.html.tmpl"))
	compTmpl = template.Must(template.New("compare.html.tmpl").Funcs(funcs).ParseFS(assets, "compare.html.tmpl"))
)

// now is the clock the report's "generated" line reads; tests fix it.
var now = time.Now

// Write renders the run in runDir as one self-contained HTML page. Only the manifest is
// required (an *InputError without it); a missing events file, task evaluation or
// config is said so in the page.
func Write(runDir string, w io.Writer) error {
	r, err := Load(runDir)
	if err != nil {
		return err
	}
	return r.WriteHTML(w)
}

// WriteHTML renders the loaded run as one self-contained HTML page.
func (r *Run) WriteHTML(w io.Writer) error {
	var lossSVG, accSVG []byte
	if c := r.LossChart(); !c.Empty() {
		var err error
		if lossSVG, err = c.SVG(); err != nil {
			return fmt.Errorf("loss chart: %w", err)
		}
	}
	if c := r.AccuracyChart(); !c.Empty() {
		var err error
		if accSVG, err = c.SVG(); err != nil {
			return fmt.Errorf("accuracy chart: %w", err)
		}
	}
	var buf bytes.Buffer
	if err := runTmpl.Execute(&buf, buildPage(r, lossSVG, accSVG, now())); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// LossChart is the run's train and eval loss against step, with its checkpoints and
// the selected one marked.
func (r *Run) LossChart() *Chart {
	c := &r.Curves
	ch := &Chart{Title: "loss", YLabel: "loss", Series: []Series{
		{Name: "train loss", Points: c.TrainLoss, Color: 0},
		{Name: "eval loss", Points: c.EvalLoss, Color: 1, Dashed: true, Dots: true},
	}}
	for _, s := range c.Checkpoints {
		if s != c.SelectedStep {
			ch.Markers = append(ch.Markers, Marker{Step: s})
		}
	}
	if c.Selected != "" && c.SelectedStep > 0 {
		ch.Markers = append(ch.Markers, Marker{Step: c.SelectedStep, Selected: true, Label: "selected: " + c.Selected})
	}
	return ch
}

// AccuracyChart is the run's mean token accuracy (train and eval) against step.
func (r *Run) AccuracyChart() *Chart {
	c := &r.Curves
	return &Chart{Title: "mean token accuracy", YLabel: "accuracy", Rising: true, Series: []Series{
		{Name: "train accuracy", Points: c.TrainAccuracy, Color: 0},
		{Name: "eval accuracy", Points: c.EvalAccuracy, Color: 1, Dashed: true, Dots: true},
	}}
}

// WriteFiles writes runDir/report.html and runDir/loss.png, each atomically (a reader
// never sees half a file). loss.png is written only when the run has a loss curve.
func WriteFiles(runDir string) error {
	r, err := Load(runDir)
	if err != nil {
		return err
	}
	var html bytes.Buffer
	if err := r.WriteHTML(&html); err != nil {
		return err
	}
	if c := r.LossChart(); !c.Empty() {
		var png bytes.Buffer
		if err := c.PNG(&png); err != nil {
			return fmt.Errorf("loss.png: %w", err)
		}
		if err := run.WriteFileAtomic(filepath.Join(runDir, LossPNGFile), png.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return run.WriteFileAtomic(filepath.Join(runDir, ReportFile), html.Bytes(), 0o644)
}
