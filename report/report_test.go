package report

import (
	"bytes"
	"encoding/json"
	"errors"
	stdhtml "html"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const fixture = "testdata/quickstart"

// copyRun copies the fixture run into a temp dir, leaving out the files named in skip.
func copyRun(t *testing.T, skip ...string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(fixture, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(fixture, p)
		for _, s := range skip {
			if rel == s && d.IsDir() {
				return filepath.SkipDir
			}
			if rel == s {
				return nil
			}
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func render(t *testing.T, dir string) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestWriteShowsEverySection(t *testing.T) {
	now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC) }
	defer func() { now = time.Now }()
	page := render(t, fixture)
	html := stdhtml.UnescapeString(page)
	for _, want := range []string{
		"quickstart-8494bb1ebe",
		`<span class="word">adopt</span>`,
		"8 eval examples: the 95% interval +28.4..+66.9 chrF lies above 0",
		"+28.4 … +66.9",                // chrf interval
		"judge: the adapter wins 75%",  // judge summary
		"the base model does not stop", // does_not_stop
		"small_dataset",                // data-check warning
		`id="loss-chart"`, "<svg",      // inline chart
		"selected (green): adapter at step 76",
		"learning_rate: 2.0e-2", // config.yaml
		"python:score: ValueError: could not parse <answer>",
		"2026-01-02 03:04 UTC",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, bad := range []string{`src="http`, `href="http`, "url(", "@import", "<link", "<iframe", "<object"} {
		if strings.Contains(page, bad) {
			t.Errorf("report references the network: %q", bad)
		}
	}
}

// The fixture's generations hold markup and script in a prompt, an answer and a judge
// reason: they must arrive as text.
func TestWriteEscapesRunText(t *testing.T) {
	html := render(t, fixture)
	for _, raw := range []string{`<script>alert("xss")</script>`, `<img src=x onerror=alert(2)>`,
		`</textarea><script>document.title="pwned"</script>`, "<b>safer</b>"} {
		if strings.Contains(html, raw) {
			t.Errorf("unescaped run text in the report: %s", raw)
		}
	}
	if n := strings.Count(html, "<script"); n != 1 {
		t.Errorf("%d <script> elements, want only the report's own", n)
	}
	if !strings.Contains(html, "&lt;script&gt;alert(&#34;xss&#34;)&lt;/script&gt;") {
		t.Error("the hostile answer is not shown as text")
	}
}

func TestWriteHostileRunID(t *testing.T) {
	dir := copyRun(t)
	p := filepath.Join(dir, "manifest.json")
	var m map[string]any
	b, _ := os.ReadFile(p)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["run_id"] = `x"><script>alert(1)</script>`
	b, _ = json.Marshal(m)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if html := render(t, dir); strings.Contains(html, "<script>alert(1)") {
		t.Error("run id reached the page unescaped")
	}
}

func TestWorseRowsFirst(t *testing.T) {
	r, err := Load(fixture)
	if err != nil {
		t.Fatal(err)
	}
	_, rows := genRows(r)
	if len(rows) != 8 {
		t.Fatalf("%d rows, want 8", len(rows))
	}
	if rows[0].Index != 10 || rows[0].Class != "worse" {
		t.Errorf("first row is example %d (%s), want 10, the one where the adapter's chrf fell", rows[0].Index, rows[0].Class)
	}
	for i := 2; i < len(rows); i++ {
		if rows[i].Class == "worse" {
			t.Errorf("row %d (example %d) is worse but not first", i, rows[i].Index)
		}
	}
}

func TestWriteDegradesWithoutOptionalFiles(t *testing.T) {
	tests := []struct {
		name string
		skip []string
		want []string
	}{
		{"no eval", []string{"eval"}, []string{"no task evaluation: eval/summary.json is not in the run directory",
			"no generations: eval/generations.jsonl", `<span class="word">adopt</span>`, "decided by the eval loss"}},
		{"no events", []string{"events.jsonl"}, []string{"no training curves: events.jsonl is not in the run directory",
			"no loss curve to draw"}},
		{"no config", []string{"config.yaml", "resolved.json"}, []string{"neither config.yaml nor resolved.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			html := render(t, copyRun(t, tt.skip...))
			for _, w := range tt.want {
				if !strings.Contains(html, w) {
					t.Errorf("report lacks %q", w)
				}
			}
		})
	}
}

func TestWriteNeedsManifest(t *testing.T) {
	err := Write(copyRun(t, "manifest.json"), &bytes.Buffer{})
	var ie *InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "not a run directory") {
		t.Fatalf("err = %v, want an InputError naming the missing manifest", err)
	}
}

func TestSelectEventMarksCheckpoint(t *testing.T) {
	dir := copyRun(t)
	f, err := os.OpenFile(filepath.Join(dir, "events.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"type":"select","time":"2026-12-04T17:43:30Z","checkpoint":"checkpoint-50","by":"eval_loss","value":2.1}` + "\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Curves.Selected != "checkpoint-50" || r.Curves.SelectedStep != 50 || r.Curves.SelectedBy != "eval_loss" {
		t.Fatalf("selected = %+v", r.Curves)
	}
	html := render(t, dir)
	if !strings.Contains(html, "selected: checkpoint-50") || !strings.Contains(html, "checkpoint-50 (best eval_loss 2.1)") {
		t.Error("the selected checkpoint is not marked")
	}
}

func TestCurvesFromEvents(t *testing.T) {
	r, err := Load(fixture)
	if err != nil {
		t.Fatal(err)
	}
	c := r.Curves
	if len(c.TrainLoss) == 0 || c.TrainLoss[0].Step != 1 || c.TrainLoss[len(c.TrainLoss)-1].Step != 75 {
		t.Errorf("train loss steps = %v", c.TrainLoss)
	}
	if len(c.EvalLoss) != 3 || c.EvalLoss[0].Step != 0 || c.EvalLoss[2].Step != 76 {
		t.Errorf("eval loss = %v, want before, during, after", c.EvalLoss)
	}
	if len(c.TrainAccuracy) != len(c.TrainLoss) || len(c.EvalAccuracy) != 2 {
		t.Errorf("accuracy curves: %d train, %d eval", len(c.TrainAccuracy), len(c.EvalAccuracy))
	}
}

func TestWriteFiles(t *testing.T) {
	dir := copyRun(t)
	if err := WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, ReportFile)); err != nil || !bytes.HasPrefix(b, []byte("<!DOCTYPE html>")) {
		t.Fatalf("report.html: %v", err)
	}
	f, err := os.Open(filepath.Join(dir, LossPNGFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 600 || b.Dy() < 300 {
		t.Errorf("loss.png is %v", b)
	}
	if v := variance(img); v < 100 {
		t.Errorf("loss.png is blank (variance %.1f)", v)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".report.html.*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestThinKeepsSpikes(t *testing.T) {
	ps := make([]Point, 10000)
	for i := range ps {
		ps[i] = Point{Step: i + 1, Value: 1}
	}
	ps[4321].Value = 9 // a loss spike
	got := thin(ps, 2000)
	if len(got) > 2000 || len(got) < 1000 {
		t.Fatalf("%d points", len(got))
	}
	spike := false
	for i, p := range got {
		if i > 0 && p.Step <= got[i-1].Step {
			t.Fatalf("steps out of order at %d", i)
		}
		spike = spike || p.Value == 9
	}
	if !spike {
		t.Error("the spike was thinned away")
	}
	if short := ps[:50]; len(thin(short, 2000)) != 50 {
		t.Error("a short curve was thinned")
	}
}
