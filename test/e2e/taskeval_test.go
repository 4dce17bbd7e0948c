package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loractl/loractl/llm"
	"github.com/loractl/loractl/llm/llmtest"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/taskeval"
)

// requireTaskEval skips until the trainer side of the task evaluation (generations
// at the end of training, python/eval_task.py) is in this tree.
func requireTaskEval(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(repoRoot(), "python", taskeval.ScriptFile)); err != nil {
		t.Skipf("python/%s is not in this tree: the trainer does not generate yet", taskeval.ScriptFile)
	}
}

// lastSummary parses `loractl eval --json`'s last line.
func lastSummary(t *testing.T, r result) *taskeval.Summary {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var s taskeval.Summary
	if r.code != 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &s) != nil {
		t.Fatalf("eval exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	return &s
}

// longerWins is a judge that prefers the longer answer: deterministic, and the same
// in both orders, so its verdicts are wins and losses rather than ties.
func longerWins(msgs []llm.Message) string {
	p := llmtest.LastUser(msgs)
	a := between(p, "[Answer A]\n", "\n[End of answer A]")
	b := between(p, "[Answer B]\n", "\n[End of answer B]")
	switch {
	case len(a) > len(b):
		return `{"winner": "A", "reason": "longer"}`
	case len(b) > len(a):
		return `{"winner": "B", "reason": "longer"}`
	}
	return `{"winner": "tie", "reason": "as long"}`
}

func between(s, from, to string) string {
	_, after, ok := strings.Cut(s, from)
	if !ok {
		return ""
	}
	before, _, _ := strings.Cut(after, to)
	return before
}

// TestTaskEvalEndToEnd trains the tiny model on the sample data with task metrics and
// checks the verdict of a run that learns the format, then evaluates on demand: another
// checkpoint and metric, a 3-example file, the LLM judge against a local
// OpenAI-compatible server that answers with 429 and 500 first, and bad input.
func TestTaskEvalEndToEnd(t *testing.T) {
	requireTaskEval(t)
	// An OpenAI-compatible judge that answers some requests with 429 or 500 first.
	srv, err := llmtest.New(llmtest.Options{Answer: longerWins, RetryAfter: "0", FaultFor: func(prompt string, attempt int) llmtest.Fault {
		switch {
		case attempt == 0 && len(prompt)%3 == 0:
			return llmtest.RateLimit
		case attempt == 0 && len(prompt)%3 == 1:
			return llmtest.ServerError
		}
		return llmtest.OK
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	scorer := filepath.Join(repoRoot(), "test", "e2e", "testdata", "first_word.py")
	f := newFixture(t, "eval:\n  max_new_tokens: 32\n  metrics:\n    - {python: \""+scorer+":score\"}\n    - chrf\n    - {python: \""+scorer+":fragile\"}\n"+
		"    - judge: {endpoint: \""+srv.URL+"\", model: judge-model}\n")
	r := f.loractl(t, "train", f.config, "--json")
	_, final := jsonLines(t, r.stdout)
	if r.code != 0 || final == nil {
		t.Fatalf("train exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	runID, _ := final["run_id"].(string)
	runDir := filepath.Join(f.runs, runID)
	s, err := taskeval.ReadSummary(filepath.Join(runDir, taskeval.Dir))
	if err != nil {
		t.Fatal(err)
	}
	// The primary metric: does the answer open like the support bot's answers do.
	fw, chrf, fragile := s.Metrics["python:score"], s.Metrics["chrf"], s.Metrics["python:fragile"]
	if s.N != 40 || s.Primary != "python:score" || fw == nil || fw.N != 40 || fw.Adapter <= fw.Base || chrf == nil || chrf.N != 40 {
		t.Fatalf("summary %+v first word %+v chrf %+v", s, fw, chrf)
	}
	// A scorer that raises: errors for those examples, never a silent 0.
	if fragile == nil || fragile.Errors == 0 || fragile.N+fragile.Errors != 40 || fragile.Base != 1 {
		t.Fatalf("fragile scorer %+v", fragile)
	}
	if s.Verdict != taskeval.Adopt || final["verdict"] != taskeval.Adopt || final["improved"] != true {
		t.Fatalf("a run that learns the format: verdict %s (%s), result %v", s.Verdict, s.Reason, final)
	}
	m, err := run.ReadManifest(runDir)
	if err != nil || m.Result.Verdict != taskeval.Adopt || m.Result.VerdictReason != s.Reason || m.Result.EvalMetrics["python:score"] != fw.Adapter {
		t.Fatalf("manifest result %v %+v", err, m.Result)
	}
	rows, err := taskeval.ReadGenerations(filepath.Join(runDir, taskeval.Dir, taskeval.GenerationsFile))
	if err != nil || len(rows) != 40 {
		t.Fatalf("generations: %v, %d rows", err, len(rows))
	}
	errored := 0
	for _, row := range rows {
		if _, ok := row.Adapter.Errors["python:fragile"]; ok {
			errored++
			if _, scored := row.Adapter.Scores["python:fragile"]; scored {
				t.Fatalf("row %d has both a score and an error", row.Index)
			}
		}
		for _, side := range []taskeval.Side{row.Base, row.Adapter} {
			if side.Tokens <= 0 || side.Tokens > 32 || (side.Stopped != taskeval.StoppedEOS && side.Stopped != taskeval.StoppedMaxTokens) {
				t.Fatalf("row %d side %+v", row.Index, side)
			}
		}
	}
	// The controller judged every example at the end of the run (the trainer skips
	// the judge): verdicts in the rows, the win rate in the summary.
	if j := s.Judge; j == nil || j.Wins+j.Losses+j.Ties != 40 || j.Errors != 0 {
		t.Fatalf("end-of-run judge %+v", s.Judge)
	}
	for _, row := range rows {
		if row.Judge == nil || row.Judge.Winner == "" {
			t.Fatalf("row %d not judged: %+v", row.Index, row.Judge)
		}
	}
	if srv.Total() < 80 {
		t.Fatalf("%d judge requests for 40 examples in both orders", srv.Total())
	}
	if errored != fragile.Errors {
		t.Fatalf("%d rows with the scorer's error, summary says %d", errored, fragile.Errors)
	}
	if out := f.loractl(t, "runs"); !strings.Contains(out.stdout, "adopt") {
		t.Errorf("runs does not show the verdict:\n%s", out.stdout)
	}

	// Another checkpoint with another metric: its own directory, the run's eval/ stays.
	cs := lastSummary(t, f.loractl(t, "eval", runID, "--checkpoint", "8", "--metric", "exact", "--max-examples", "12", "--json"))
	if cs.N != 12 || cs.Checkpoint != "checkpoint-8" || cs.Primary != "exact" || cs.Metrics["exact"] == nil {
		t.Fatalf("checkpoint summary %+v", cs)
	}
	if again, _ := taskeval.ReadSummary(filepath.Join(runDir, taskeval.Dir)); again.N != 40 || again.Verdict != s.Verdict {
		t.Fatalf("the training-time evaluation changed: %+v", again)
	}

	// Three examples are too few to decide.
	src, err := os.ReadFile(filepath.Join(repoRoot(), "examples", "data", "eval.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	three := filepath.Join(f.dir, "three.jsonl")
	if err := os.WriteFile(three, []byte(strings.Join(strings.SplitN(string(src), "\n", 4)[:3], "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := lastSummary(t, f.loractl(t, "eval", runID, "--data", three, "--json"))
	if ts.N != 3 || ts.Verdict != taskeval.Inconclusive {
		t.Fatalf("3 examples: %s (%s)", ts.Verdict, ts.Reason)
	}

	// The judge, through loractl's own calls on demand (429 and 500 faults as above).
	js := lastSummary(t, f.loractl(t, "eval", runID, "--max-examples", "10", "--json",
		"--metric", `{judge: {endpoint: "`+srv.URL+`", model: judge-model}}`))
	if j := js.Judge; j == nil || j.Wins+j.Losses+j.Ties != 10 || j.Errors != 0 || js.Primary != "judge" {
		t.Fatalf("judge summary %+v (%s)", js.Judge, js.Reason)
	}
	if srv.Total() < 80+20 {
		t.Fatalf("%d judge requests in all: want the run's 80 and 20 more", srv.Total())
	}

	// Against another model, as a user checks the local adapter against the OpenAI
	// fine-tune it replaces: a local OpenAI-compatible server with a key and faults.
	ft, err := llmtest.New(llmtest.Options{APIKey: "sk-ft-secret", RetryAfter: "0", FaultFor: func(prompt string, attempt int) llmtest.Fault {
		if attempt == 0 && len(prompt)%4 == 0 {
			return llmtest.RateLimit
		}
		return llmtest.OK
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer ft.Close()
	ft.KeepBodies()
	t.Setenv("FT_KEY", "sk-ft-secret")
	const other = "openai:ft:gpt-4o-mini-2024-07-18:acme::x1"
	as := lastSummary(t, f.loractl(t, "eval", runID, "--against", other, "--endpoint", ft.URL, "--api-key-env", "FT_KEY",
		"--max-examples", "12", "--metric", `{python: "`+scorer+`:score"}`, "--metric", `{judge: {endpoint: "`+srv.URL+`", model: judge-model}}`, "--json"))
	if as.Against != other || as.N != 12 || as.Primary != "python:score" || as.EvalLoss != nil || as.Judge == nil || as.Judge.Errors != 0 ||
		!strings.HasPrefix(as.Reason, "adapter vs "+other+": 12 eval examples") {
		t.Fatalf("--against summary %+v judge %+v", as, as.Judge)
	}
	if len(ft.RequestBodies()) < 12 || len(ft.AuthHeaders()) != 1 || ft.AuthHeaders()[0] != "Bearer sk-ft-secret" {
		t.Fatalf("%d requests to the fine-tune, auth %v", len(ft.RequestBodies()), ft.AuthHeaders())
	}
	var againstDir string
	entries, _ := os.ReadDir(runDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "eval-against-") {
			againstDir = filepath.Join(runDir, e.Name())
		}
	}
	arows, err := taskeval.ReadGenerations(filepath.Join(againstDir, taskeval.GenerationsFile))
	if err != nil || len(arows) != 12 {
		t.Fatalf("--against generations in %q: %v, %d rows", againstDir, err, len(arows))
	}
	for _, row := range arows {
		var msgs []llm.Message
		if err := json.Unmarshal(row.Messages, &msgs); err != nil {
			t.Fatal(err)
		}
		// The other model's reply in the base side, scored like the adapter's.
		if want := llmtest.CannedAnswer(msgs); row.Base.Text != want || row.Base.Stopped != taskeval.StoppedEOS || row.Judge == nil {
			t.Fatalf("row %d base %+v, want the fine-tune's %q", row.Index, row.Base, want)
		}
		if _, ok := row.Base.Scores["python:score"]; !ok {
			t.Fatalf("row %d: the fine-tune's reply is not scored: %+v", row.Index, row.Base)
		}
	}
	err = filepath.WalkDir(runDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(path); strings.Contains(string(b), "sk-ft-secret") {
				t.Errorf("the key is in %s", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := taskeval.ReadSummary(filepath.Join(runDir, taskeval.Dir)); again.N != 40 || again.Verdict != s.Verdict || again.Against != "" {
		t.Fatalf("the training-time evaluation changed: %+v", again)
	}
	if m2, _ := run.ReadManifest(runDir); m2.Result.VerdictReason != s.Reason {
		t.Fatalf("--against changed the run's verdict: %s", m2.Result.VerdictReason)
	}
	if err := os.Unsetenv("FT_KEY"); err != nil {
		t.Fatal(err)
	}
	if r := f.loractl(t, "eval", runID, "--against", other, "--endpoint", ft.URL, "--api-key-env", "FT_KEY"); r.code != 2 || !strings.Contains(r.stderr, "FT_KEY") {
		t.Errorf("--against without its key: exit %d\n%s", r.code, r.stderr)
	}

	// Bad input is refused with exit 2.
	for _, args := range [][]string{
		{"eval", runID, "--against", "ft:gpt-4o-mini"},
		{"eval", runID, "--endpoint", "http://127.0.0.1:1/v1"},
		{"eval", runID, "--metric", "bleu"},
		{"eval", runID, "--metric", "regex:(unclosed"},
		{"eval", runID, "--checkpoint", "7"},
		{"eval", "nope-0000000000"},
		{"eval", runID, "--data", filepath.Join(f.dir, "absent.jsonl")},
	} {
		if r := f.loractl(t, args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, r.code, r.stderr)
		}
	}
}

// TestTaskEvalWrongFormat trains on the sample answers rewritten into another format
// ("ANSWER: ..." in lower case) and evaluates on the original ones: the eval loss falls
// (the words are the same), which the old loss-only rule would adopt, but the answers
// do not open like the eval set's, and the verdict is do_not_adopt.
func TestTaskEvalWrongFormat(t *testing.T) {
	requireTaskEval(t)
	src, err := os.ReadFile(filepath.Join(repoRoot(), "examples", "data", "train.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(string(src)), "\n") {
		var ex struct {
			Messages []map[string]any `json:"messages"`
		}
		if err := json.Unmarshal([]byte(line), &ex); err != nil {
			t.Fatal(err)
		}
		last := ex.Messages[len(ex.Messages)-1]
		last["content"] = "ANSWER: " + strings.ToLower(last["content"].(string))
		b, _ := json.Marshal(ex)
		out.Write(append(b, '\n'))
	}
	scorer := filepath.Join(repoRoot(), "test", "e2e", "testdata", "first_word.py")
	f := newFixture(t, "eval:\n  max_new_tokens: 24\n  metrics:\n    - {python: \""+scorer+":score\"}\n")
	other := filepath.Join(f.dir, "other-format.jsonl")
	if err := os.WriteFile(other, []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r := f.loractl(t, "train", f.config, "--json", "--set", "data.train="+other)
	_, final := jsonLines(t, r.stdout)
	if r.code != 0 || final == nil {
		t.Fatalf("train exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	before, _ := final["eval_loss_before"].(float64)
	after, _ := final["eval_loss_after"].(float64)
	if !(after < before) {
		t.Fatalf("the eval loss did not fall (%v -> %v): the test no longer shows the proxy failing", before, after)
	}
	if final["verdict"] != taskeval.DoNotAdopt || final["improved"] != false {
		t.Fatalf("an adapter answering in another format: %v (%v)", final["verdict"], final["verdict_reason"])
	}
}
