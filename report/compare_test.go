package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// editGenerations rewrites a run copy's generations.jsonl through fn.
func editGenerations(t *testing.T, dir string, fn func(g map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, GenerationsFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var g map[string]any
		if err := json.Unmarshal(sc.Bytes(), &g); err != nil {
			t.Fatal(err)
		}
		fn(g)
		line, _ := json.Marshal(g)
		out.Write(append(line, '\n'))
	}
	if err := os.WriteFile(p, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// editJSON rewrites a JSON file of a run copy through fn.
func editJSON(t *testing.T, path string, fn func(m map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	b, _ = json.Marshal(m)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// runB is a copy of the fixture as another run: a lower learning rate, and an adapter
// whose chrF is 10 lower on every example.
func runB(t *testing.T) string {
	dir := copyRun(t)
	editJSON(t, filepath.Join(dir, "manifest.json"), func(m map[string]any) { m["run_id"] = "quickstart-b" })
	editJSON(t, filepath.Join(dir, "resolved.json"), func(m map[string]any) {
		m["train"].(map[string]any)["learning_rate"] = 0.005
	})
	editGenerations(t, dir, func(g map[string]any) {
		s := g["adapter"].(map[string]any)["scores"].(map[string]any)
		s["chrf"] = s["chrf"].(float64) - 10
		g["judge"] = map[string]any{"winner": "adapter", "reason": "better"}
	})
	return dir
}

func TestCompareSameEvalSet(t *testing.T) {
	c, err := Compare(fixture, runB(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.Paired != 8 || !strings.HasPrefix(c.EvalSet, "same: 8 examples") {
		t.Errorf("paired %d, eval set %q", c.Paired, c.EvalSet)
	}
	var chrf *MetricComparison
	for i := range c.Metrics {
		if c.Metrics[i].Name == "chrf" {
			chrf = &c.Metrics[i]
		}
	}
	if chrf == nil || math.Abs(chrf.Delta+10) > 1e-9 || math.Abs(chrf.CI95[0]+10) > 1e-9 || math.Abs(chrf.CI95[1]+10) > 1e-9 || chrf.Better != "a" {
		t.Fatalf("chrf comparison = %+v, want B − A = −10 exactly, A better", chrf)
	}
	// The fixture rows give A's adapter 6 wins and 2 ties of 8 (0.875); B wins all.
	if j := c.Metrics[len(c.Metrics)-1]; j.Name != judgeMetric || j.A != 0.875 || j.B != 1 || j.N != 8 {
		t.Errorf("judge comparison = %+v", j)
	}
	if len(c.Settings) != 1 || c.Settings[0] != (SettingDifference{Key: "train.learning_rate", A: "0.02", B: "0.005"}) {
		t.Errorf("settings = %+v, want only the learning rate", c.Settings)
	}
	var text bytes.Buffer
	if err := c.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"quickstart-b", "chrf", "-10", "A better", "train.learning_rate", "0.005", "A TRAIN", "eval loss after"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	var html bytes.Buffer
	if err := c.WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(html.String(), "<svg") || !strings.Contains(html.String(), "B eval loss") {
		t.Error("compare page lacks the shared chart")
	}
	if _, err := json.Marshal(c); err != nil {
		t.Fatal(err)
	}
}

func TestCompareRefusesDifferentEvalSets(t *testing.T) {
	tests := []struct {
		name string
		edit func(t *testing.T, dir string)
		want string
	}{
		{"reference differs", func(t *testing.T, dir string) {
			editGenerations(t, dir, func(g map[string]any) {
				if g["index"].(float64) == 15 {
					g["reference"] = "something else"
				}
			})
		}, "example 15's prompt or reference differs"},
		{"prompt differs", func(t *testing.T, dir string) {
			editGenerations(t, dir, func(g map[string]any) {
				g["messages"].([]any)[1].(map[string]any)["content"] = "another question"
			})
		}, "prompt or reference differs"},
		{"no shared index", func(t *testing.T, dir string) {
			editGenerations(t, dir, func(g map[string]any) { g["index"] = g["index"].(float64) + 1000 })
		}, "share no eval example index"},
		{"manifests differ, no generations", func(t *testing.T, dir string) {
			os.RemoveAll(filepath.Join(dir, "eval"))
			editJSON(t, filepath.Join(dir, "manifest.json"), func(m map[string]any) {
				m["data"].([]any)[1].(map[string]any)["sha256"] = "ffff0000ffff0000"
			})
		}, "different eval sets (eval data sha256 46b205201ac3 vs eval data sha256 ffff0000ffff)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := runB(t)
			tt.edit(t, dir)
			_, err := Compare(fixture, dir)
			var ie *InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want an InputError containing %q", err, tt.want)
			}
		})
	}
}

func TestCompareWithoutGenerations(t *testing.T) {
	dir := runB(t)
	os.RemoveAll(filepath.Join(dir, "eval"))
	c, err := Compare(fixture, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Metrics) != 0 || !strings.HasPrefix(c.EvalSet, "same eval data") ||
		len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "quickstart-b has no generations") {
		t.Errorf("eval set %q, metrics %v, notes %v", c.EvalSet, c.Metrics, c.Notes)
	}
}

// The interval of a known distribution: differences drawn from N(0.3, 1), n = 400,
// have a standard error of 0.05, so the 95% interval is about 0.3 ± 0.1.
func TestPairedIntervalKnownDistribution(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	d := make([]float64, 400)
	for i := range d {
		d[i] = 0.3 + rng.NormFloat64()
	}
	lo, hi := pairedInterval(d)
	m := mean(d)
	if !(lo < m && m < hi) || math.Abs((hi-lo)-2*1.96*0.05) > 0.03 {
		t.Errorf("interval %.3f..%.3f around mean %.3f, want width ≈ 0.196", lo, hi, m)
	}
	if lo2, hi2 := pairedInterval(d); lo2 != lo || hi2 != hi {
		t.Error("the interval is not reproducible")
	}
	if lo, hi := pairedInterval([]float64{2, 2, 2}); lo != 2 || hi != 2 {
		t.Errorf("constant differences: %v..%v", lo, hi)
	}
}

func TestSettingsRunDirReplaced(t *testing.T) {
	a, b := copyRun(t), copyRun(t)
	for _, d := range []string{a, b} {
		editJSON(t, filepath.Join(d, "resolved.json"), func(m map[string]any) {
			m["output_dir"] = filepath.Join(d, "adapter")
		})
	}
	ra, _ := Load(a)
	rb, _ := Load(b)
	if diff := diffSettings(ra, rb); len(diff) != 0 {
		t.Errorf("run dirs count as a difference: %+v", diff)
	}
	t.Chdir(a)
	rc, _ := Load(".")
	if got := flatSettings(rc)["train.learning_rate"]; got != "0.02" {
		t.Errorf("learning rate read as %q with the run dir \".\"", got)
	}
}
