package runner

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/taskeval"
)

func generations(n int, base, adapter func(i int) float64) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"index":%d,"messages":[{"role":"user","content":"q"}],"reference":"r",`+
			`"base":{"text":"b","tokens":3,"stopped":"eos","scores":{"exact":%g}},`+
			`"adapter":{"text":"a","tokens":3,"stopped":"eos","scores":{"exact":%g}}}`+"\n", i, base(i), adapter(i))
	}
	return b.String()
}

// A completed run with generations: the bootstrap verdict is recorded beside the eval
// loss, improved follows it (the loss fell, but the task got worse), summary.json is
// written, and the report hook runs once.
func TestCompletedRunGetsTaskVerdict(t *testing.T) {
	cases := []struct {
		name     string
		adapter  func(i int) float64
		verdict  string
		improved bool
	}{
		{"better", func(i int) float64 { return 1 }, taskeval.Adopt, true},
		{"worse", func(i int) float64 { return 0 }, taskeval.DoNotAdopt, false},
		{"noise", func(i int) float64 { return float64((i + 1) % 2) }, taskeval.Inconclusive, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			store, _ := run.NewStore(filepath.Join(dir, "runs"))
			p := prepared(t, dir, cfgYAML+"eval:\n  metrics: [exact]\n")
			// The loss fell: the old rule would adopt.
			events := append(append([]string(nil), completedEvents[:2]...),
				`{"type":"end","time":"2026-01-01T00:00:02Z","status":"completed","step":1,"eval_loss_before":2.5,"eval_loss_after":2.0,"adapter_path":"/x/adapter"}`)
			gens := generations(30, func(i int) float64 { return float64(i % 2) }, tc.adapter)
			if tc.name == "worse" {
				gens = generations(30, func(i int) float64 { return 1 }, tc.adapter)
			}
			var reported []string
			WriteReport = func(runDir string) error { reported = append(reported, runDir); return nil }
			defer func() { WriteReport = nil }()
			out, err := launchAndWait(t, store, p, &fakeDriver{events: events, files: map[string]string{"eval/generations.jsonl": gens}}, LaunchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			m, _ := store.Manifest(p.RunID)
			r := m.Result
			if r.Verdict != tc.verdict || r.Improved == nil || *r.Improved != tc.improved || r.VerdictReason == "" {
				t.Fatalf("result %+v (improved %v)", r, *r.Improved)
			}
			if out.Eval == nil || out.Eval.Verdict != tc.verdict || out.EvalErr != nil {
				t.Fatalf("outcome eval %+v, err %v", out.Eval, out.EvalErr)
			}
			if _, ok := r.EvalMetrics["exact"]; !ok {
				t.Fatalf("eval metrics %v", r.EvalMetrics)
			}
			if _, err := taskeval.ReadSummary(filepath.Join(store.Dir(p.RunID), taskeval.Dir)); err != nil {
				t.Fatal(err)
			}
			if len(reported) != 1 || reported[0] != store.Dir(p.RunID) {
				t.Fatalf("report hook calls: %v", reported)
			}
		})
	}
}

// A run whose generations are unreadable keeps the eval-loss verdict and says why.
func TestBrokenGenerationsKeepLossVerdict(t *testing.T) {
	dir := t.TempDir()
	store, _ := run.NewStore(filepath.Join(dir, "runs"))
	p := prepared(t, dir, cfgYAML)
	out, err := launchAndWait(t, store, p, &fakeDriver{events: completedEvents, files: map[string]string{"eval/generations.jsonl": "{not json\n"}}, LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := store.Manifest(p.RunID)
	if out.EvalErr == nil || m.Result.Verdict != "" || m.Result.Improved == nil || *m.Result.Improved {
		t.Fatalf("eval err %v, result %+v", out.EvalErr, m.Result)
	}
	if _, err := os.Stat(filepath.Join(store.Dir(p.RunID), "eval", "summary.json")); err == nil {
		t.Fatal("a summary was written from unreadable generations")
	}
}
