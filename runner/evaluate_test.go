package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/llm"
	"github.com/loractl/loractl/llm/llmtest"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/taskeval"
)

func generations(n int, base, adapter func(i int) float64) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"index":%d,"messages":[{"role":"user","content":"q%d"}],"reference":"r",`+
			`"base":{"text":"b","tokens":3,"stopped":"eos","scores":{"exact":%g}},`+
			`"adapter":{"text":"a","tokens":3,"stopped":"eos","scores":{"exact":%g}}}`+"\n", i, i, base(i), adapter(i))
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

// A run with a judge metric: the controller asks the judge at the end of the run (a
// server that answers 500 first), stores each verdict in its row, and the judge's win
// rate decides when it is primary. A refresh from `runs` never calls it.
func TestJudgeAtEndOfRun(t *testing.T) {
	srv, err := llmtest.New(llmtest.Options{
		Answer: func([]llm.Message) string { return `{"winner": "A", "reason": "first"}` }, // pure position bias
		FaultFor: func(_ string, attempt int) llmtest.Fault {
			if attempt == 0 {
				return llmtest.ServerError
			}
			return llmtest.OK
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	JudgeOptions = taskeval.JudgeOptions{Timeout: 5 * time.Second}
	defer func() { JudgeOptions = taskeval.JudgeOptions{} }()
	dir := t.TempDir()
	store, _ := run.NewStore(filepath.Join(dir, "runs"))
	p := prepared(t, dir, cfgYAML+"eval:\n  metrics:\n    - judge: {endpoint: \""+srv.URL+"\", model: m}\n")
	gens := generations(12, func(i int) float64 { return 0 }, func(i int) float64 { return 1 })
	out, err := launchAndWait(t, store, p, &fakeDriver{events: completedEvents, files: map[string]string{"eval/generations.jsonl": gens}}, LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out.JudgeErr != nil || out.Eval == nil || out.Eval.Judge == nil || out.Eval.Judge.Ties != 12 {
		t.Fatalf("judge err %v, summary %+v", out.JudgeErr, out.Eval)
	}
	// Position bias alone: every example a tie, a win rate of exactly 0.5.
	if out.Eval.Verdict != taskeval.DoNotAdopt || srv.Total() != 12*2*2 {
		t.Fatalf("verdict %s (%s), %d requests", out.Eval.Verdict, out.Eval.Reason, srv.Total())
	}
	rows, _ := taskeval.ReadGenerations(filepath.Join(store.Dir(p.RunID), "eval", taskeval.GenerationsFile))
	if rows[0].Judge == nil || rows[0].Judge.Winner != taskeval.WinnerTie {
		t.Fatalf("row judge %+v", rows[0].Judge)
	}
}

// A detached run brought up to date by a refresh is summarised without the judge.
func TestRefreshDoesNotCallTheJudge(t *testing.T) {
	srv, err := llmtest.New(llmtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dir := t.TempDir()
	store, _ := run.NewStore(filepath.Join(dir, "runs"))
	p := prepared(t, dir, cfgYAML+"eval:\n  metrics:\n    - exact\n    - judge: {endpoint: \""+srv.URL+"\", model: m}\n")
	d := &fakeDriver{events: completedEvents, state: driver.StateRunning,
		files: map[string]string{"eval/generations.jsonl": generations(12, func(int) float64 { return 0 }, func(int) float64 { return 1 })}}
	a, err := Launch(context.Background(), store, p, LaunchOptions{Driver: d, Python: "python3", Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = a.Release()
	d.state = ""
	m, _ := store.Manifest(p.RunID)
	m, err = Refresh(context.Background(), store, m, d)
	if err != nil || m.State != run.StateCompleted || m.Result.Verdict != taskeval.Adopt || srv.Total() != 0 {
		t.Fatalf("refresh: %v %s %+v, %d judge requests", err, m.State, m.Result, srv.Total())
	}
}
