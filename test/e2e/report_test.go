package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReportAndCompare trains two short CPU runs that differ in learning rate (each
// with the default task evaluation), then renders a report and compares them (with each other, and one with an OpenAI results
// CSV) through the real binary.
func TestReportAndCompare(t *testing.T) {
	f := newFixture(t, "")
	var ids []string
	for _, lr := range []string{"1.0e-2", "2.0e-3"} {
		r := f.loractl(t, "train", f.config, "--json", "--set", "train.max_steps=6", "--set", "train.learning_rate="+lr)
		_, final := jsonLines(t, r.stdout)
		id, _ := final["run_id"].(string)
		if r.code != 0 || id == "" {
			t.Fatalf("train exit %d\n%s", r.code, r.stderr)
		}
		ids = append(ids, id)
	}

	r := f.loractl(t, "report", ids[0])
	dir := filepath.Join(f.runs, ids[0])
	if r.code != 0 || strings.TrimSpace(r.stdout) != filepath.Join(dir, "report.html") {
		t.Fatalf("report exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{ids[0], `id="loss-chart"`, `id="verdict"`, `id="generations"`, "learning_rate"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "loss.png")); err != nil || fi.Size() < 1000 {
		t.Errorf("loss.png: %v", err)
	}

	out := filepath.Join(f.dir, "compare.html")
	r = f.loractl(t, "compare", ids[0], ids[1], "-o", out)
	if r.code != 0 {
		t.Fatalf("compare exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"eval set  same", "paired by index", "train.learning_rate", "0.01", "0.002", "eval loss after", "A TRAIN"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("compare output lacks %q:\n%s", want, r.stdout)
		}
	}
	if b, err := os.ReadFile(out); err != nil || !strings.Contains(string(b), "B train loss") {
		t.Errorf("compare -o: %v", err)
	}

	csv := filepath.Join(repoRoot(), "report", "testdata", "openai_results.csv")
	if r = f.loractl(t, "compare", ids[1], "--openai-results", csv); r.code != 0 || !strings.Contains(r.stdout, "train accuracy final") {
		t.Errorf("compare --openai-results exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	bad := filepath.Join(f.dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n1,0.5,0.2,,\n2,oops,0.3,,\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r = f.loractl(t, "compare", ids[1], "--openai-results", bad); r.code != 2 || !strings.Contains(r.stderr, "bad.csv:3:3") {
		t.Errorf("bad CSV: exit %d, %s", r.code, r.stderr)
	}
	if r = f.loractl(t, "report", "no-such-run"); r.code != 2 {
		t.Errorf("report of an unknown run: exit %d", r.code)
	}
}
