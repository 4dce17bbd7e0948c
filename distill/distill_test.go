package distill_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loractl/loractl/distill"
	"github.com/loractl/loractl/llm"
	"github.com/loractl/loractl/llm/llmtest"
)

const sysPrompt = "You are the support bot of Acme."

func server(t *testing.T, opts llmtest.Options) *llmtest.Server {
	t.Helper()
	s, err := llmtest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// promptsFile writes n plain-text prompts and returns the path and the prompts.
func promptsFile(t *testing.T, dir string, n int) (string, []string) {
	t.Helper()
	var ps []string
	var b strings.Builder
	for i := range n {
		p := fmt.Sprintf("question number %d?", i)
		ps = append(ps, p)
		b.WriteString(p + "\n")
	}
	path := filepath.Join(dir, "prompts.txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, ps
}

func baseOpts(s *llmtest.Server, prompts, out string) distill.Options {
	return distill.Options{Prompts: prompts, Out: out, BaseURL: s.URL, Teacher: s.URL, TeacherKind: "endpoint",
		Model: "teacher", SystemPrompt: sysPrompt, Concurrency: 8, MaxRetries: 5, Timeout: 2 * time.Second,
		BaseBackoff: time.Millisecond, RefusalPattern: distill.DefaultRefusalPattern, Version: "test"}
}

type row struct {
	Messages []llm.Message `json:"messages"`
}

func readRows(t *testing.T, path string) []row {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []row
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v in %q", path, err, sc.Text())
		}
		rows = append(rows, r)
	}
	return rows
}

// checkRows asserts every prompt appears exactly once with the canned answer and the
// system prompt.
func checkRows(t *testing.T, rows []row, prompts []string) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range rows {
		if len(r.Messages) != 3 || r.Messages[0].Role != "system" || r.Messages[0].Content != sysPrompt ||
			r.Messages[1].Role != "user" || r.Messages[2].Role != "assistant" {
			t.Fatalf("row shape: %+v", r.Messages)
		}
		q := r.Messages[1].Content
		if want := llmtest.CannedAnswer(r.Messages[:2]); r.Messages[2].Content != want {
			t.Errorf("answer to %q = %q, want %q", q, r.Messages[2].Content, want)
		}
		seen[q]++
	}
	for _, p := range prompts {
		if seen[p] != 1 {
			t.Errorf("prompt %q is in OUT %d times, want once", p, seen[p])
		}
	}
	if len(rows) != len(prompts) {
		t.Errorf("%d rows, want %d", len(rows), len(prompts))
	}
}

func TestEveryPromptAnsweredExactlyOnceThroughFaults(t *testing.T) {
	dir := t.TempDir()
	prompts, ps := promptsFile(t, dir, 60)
	kinds := [][]llmtest.Fault{
		{llmtest.RateLimit}, {llmtest.ServerError, llmtest.ServerError}, {llmtest.Slow},
		{llmtest.Malformed}, {llmtest.RateLimit, llmtest.Malformed, llmtest.ServerError}, nil,
	}
	sched := map[string][]llmtest.Fault{}
	for i, p := range ps {
		sched[p] = kinds[i%len(kinds)]
	}
	s := server(t, llmtest.Options{Schedule: sched, SlowDelay: 3 * time.Second, RetryAfter: "0.01"})
	out := filepath.Join(dir, "out.jsonl")
	opts := baseOpts(s, prompts, out)
	opts.Timeout = 300 * time.Millisecond
	res, err := distill.Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, readRows(t, out), ps)
	for _, p := range ps {
		if n := s.Answered(p); n != 1 {
			t.Errorf("%q answered %d times by the server, want 1", p, n)
		}
	}
	pv := res.Provenance
	if pv.Totals.OK != 60 || pv.LastRun.Failed != 0 || pv.LastRun.Retried != 50 || pv.Totals.Retries != 80 {
		t.Errorf("provenance counts = %+v / %+v", pv.Totals, pv.LastRun)
	}
	if pv.Totals.PromptTokens == 0 || pv.Totals.CompletionTokens == 0 {
		t.Errorf("tokens not counted: %+v", pv.Totals)
	}
	if _, err := os.Stat(distill.FailedPath(out)); !os.IsNotExist(err) {
		t.Errorf("failed file exists after a run where nothing failed: %v", err)
	}
	if res.Check == nil || res.Check.Examples != 60 {
		t.Errorf("data check = %+v", res.Check)
	}
}

func TestFiltersCountedByReason(t *testing.T) {
	dir := t.TempDir()
	lines := "good one\ncut short\nempty please\nrefuse me\n"
	prompts := filepath.Join(dir, "p.txt")
	if err := os.WriteFile(prompts, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	s := server(t, llmtest.Options{
		Schedule: map[string][]llmtest.Fault{"cut short": {llmtest.Length}, "empty please": {llmtest.Empty}},
		Answer: func(ms []llm.Message) string {
			if llmtest.LastUser(ms) == "refuse me" {
				return "I'm sorry, but I can't help with that."
			}
			return llmtest.CannedAnswer(ms)
		},
	})
	out := filepath.Join(dir, "out.jsonl")
	res, err := distill.Run(context.Background(), baseOpts(s, prompts, out))
	if err != nil {
		t.Fatal(err)
	}
	rows := readRows(t, out)
	if len(rows) != 1 || rows[0].Messages[1].Content != "good one" {
		t.Fatalf("rows = %+v, want only the good one", rows)
	}
	want := map[string]int{"length": 1, "empty": 1, "refusal": 1}
	if got := res.Provenance.Totals.Filtered; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("filtered = %v, want %v", got, want)
	}
}

func TestRequireJSONAndDuplicateSamples(t *testing.T) {
	dir := t.TempDir()
	prompts := filepath.Join(dir, "p.jsonl")
	if err := os.WriteFile(prompts, []byte(`{"messages":[{"role":"user","content":"json"}]}
{"messages":[{"role":"system","content":"old prompt"},{"role":"user","content":"prose"},{"role":"assistant","content":"to be replaced"}]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls := map[string]int{}
	s := server(t, llmtest.Options{Answer: func(ms []llm.Message) string {
		q := llmtest.LastUser(ms)
		mu.Lock()
		calls[q]++
		n := calls[q]
		mu.Unlock()
		if q == "json" {
			return fmt.Sprintf(`{"n": %d}`, n%2) // two distinct answers over three samples
		}
		return "plain words"
	}})
	out := filepath.Join(dir, "out.jsonl")
	opts := baseOpts(s, prompts, out)
	opts.Require = distill.RequireJSON
	opts.N = 3
	opts.Concurrency = 1
	res, err := distill.Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	rows := readRows(t, out)
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2 (two distinct JSON answers)", len(rows))
	}
	for _, r := range rows {
		if r.Messages[0].Content != sysPrompt || len(r.Messages) != 3 {
			t.Errorf("row %+v: want the production system prompt first and no old turns", r.Messages)
		}
	}
	want := map[string]int{"duplicate": 1, "invalid_json": 3}
	if got := res.Provenance.Totals.Filtered; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("filtered = %v, want %v", got, want)
	}
}

func TestFailuresThenRerunRetriesOnlyThem(t *testing.T) {
	dir := t.TempDir()
	prompts, ps := promptsFile(t, dir, 20)
	broken := map[string]bool{ps[3]: true, ps[11]: true}
	var mu sync.Mutex
	healthy := false
	s := server(t, llmtest.Options{FaultFor: func(p string, _ int) llmtest.Fault {
		mu.Lock()
		defer mu.Unlock()
		if broken[p] && !healthy {
			return llmtest.ServerError
		}
		return llmtest.OK
	}})
	out := filepath.Join(dir, "out.jsonl")
	opts := baseOpts(s, prompts, out)
	opts.MaxRetries = 2
	res, err := distill.Run(context.Background(), opts)
	if !errors.Is(err, distill.ErrFailed) {
		t.Fatalf("err = %v, want ErrFailed", err)
	}
	failed := readFailed(t, distill.FailedPath(out))
	if len(failed) != 2 || res.Provenance.LastRun.Failed != 2 {
		t.Fatalf("failed rows = %v", failed)
	}
	for _, f := range failed {
		if f["status"] != float64(500) || f["retries"] != float64(2) || !strings.Contains(f["error"].(string), "HTTP 500") {
			t.Errorf("failed row %v", f)
		}
	}
	mu.Lock()
	healthy = true
	mu.Unlock()
	before := s.Total()
	res, err = distill.Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if sent := s.Total() - before; sent != 2 {
		t.Errorf("rerun sent %d requests, want 2 (only the failed prompts)", sent)
	}
	checkRows(t, readRows(t, out), ps)
	if res.Provenance.LastRun.Resumed != 18 || res.Provenance.Totals.OK != 20 {
		t.Errorf("provenance after rerun: %+v %+v", res.Provenance.LastRun, res.Provenance.Totals)
	}
}

func readFailed(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func TestInterruptFinishesInFlightAndResumes(t *testing.T) {
	dir := t.TempDir()
	prompts, ps := promptsFile(t, dir, 100)
	s := server(t, llmtest.Options{Delay: 20 * time.Millisecond})
	out := filepath.Join(dir, "out.jsonl")
	opts := baseOpts(s, prompts, out)
	opts.Concurrency = 4
	ctx, cancel := context.WithCancel(context.Background())
	opts.Events = func(e distill.Event) {
		if e.Done >= 10 {
			cancel()
		}
	}
	opts.ProgressInterval = 10 * time.Millisecond
	_, err := distill.Run(ctx, opts)
	if !errors.Is(err, distill.ErrInterrupted) {
		t.Fatalf("err = %v, want ErrInterrupted", err)
	}
	first := readRows(t, out)
	if len(first) == 0 || len(first) == 100 {
		t.Fatalf("%d rows after the interrupt", len(first))
	}
	// Every request the server answered was written: none was in flight and dropped.
	if got := s.Total(); got != len(first) {
		t.Errorf("server answered %d, OUT has %d rows", got, len(first))
	}
	opts.Events = nil
	if _, err := distill.Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	checkRows(t, readRows(t, out), ps)
	if s.Total() != 100 {
		t.Errorf("server answered %d requests over both runs, want 100", s.Total())
	}
}

func TestResumeCutsRowWithoutStateLine(t *testing.T) {
	dir := t.TempDir()
	prompts, ps := promptsFile(t, dir, 10)
	s := server(t, llmtest.Options{})
	out := filepath.Join(dir, "out.jsonl")
	opts := baseOpts(s, prompts, out)
	if _, err := distill.Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	// A kill between a row's write and its state line: the row is in OUT only. And a
	// torn half row after it.
	state, _ := os.ReadFile(distill.StatePath(out))
	lines := strings.SplitAfter(string(state), "\n")
	// header + 7 of 10 entries
	if err := os.WriteFile(distill.StatePath(out), []byte(strings.Join(lines[:8], "")), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(out, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"messages":[{"role":"us`); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	before := s.Total()
	if _, err := distill.Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if sent := s.Total() - before; sent != 3 {
		t.Errorf("resume sent %d, want 3", sent)
	}
	checkRows(t, readRows(t, out), ps)
}

func TestDifferentCommandOnSameOutIsRefused(t *testing.T) {
	dir := t.TempDir()
	prompts, _ := promptsFile(t, dir, 3)
	s := server(t, llmtest.Options{})
	out := filepath.Join(dir, "out.jsonl")
	opts := baseOpts(s, prompts, out)
	if _, err := distill.Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	opts.Model = "another-teacher"
	mt := 99
	opts.MaxTokens = mt
	_, err := distill.Run(context.Background(), opts)
	if !errors.Is(err, distill.ErrInput) || !strings.Contains(err.Error(), "--model, --max-tokens differ") {
		t.Errorf("err = %v, want ErrInput naming --model and --max-tokens", err)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	s := server(t, llmtest.Options{})
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.txt", "hi\n")
	existing := write("exists.jsonl", `{"messages":[]}`+"\n")
	tests := []struct {
		name string
		mod  func(o *distill.Options)
		want string
	}{
		{"missing prompts", func(o *distill.Options) { o.Prompts = filepath.Join(dir, "nope.txt") }, "no such file"},
		{"no user turn", func(o *distill.Options) {
			o.Prompts = write("nouser.jsonl", `{"messages":[{"role":"user","content":"a"}]}`+"\n"+`{"messages":[{"role":"system","content":"s"}]}`+"\n")
		}, "nouser.jsonl:2: messages: the conversation has no user turn"},
		{"bad json", func(o *distill.Options) { o.Prompts = write("bad.jsonl", "{\"messages\": [\n") }, "bad.jsonl:1: invalid JSON"},
		{"tool role", func(o *distill.Options) {
			o.Prompts = write("tool.jsonl", `{"messages":[{"role":"tool","content":"a"},{"role":"user","content":"b"}]}`+"\n")
		}, `messages[0].role: "tool" is not supported`},
		{"empty prompts", func(o *distill.Options) { o.Prompts = write("empty.txt", "\n\n") }, "has no prompts"},
		{"unknown require", func(o *distill.Options) { o.Require = "yaml" }, `--require "yaml"`},
		{"bad refusal regex", func(o *distill.Options) { o.RefusalPattern = "(" }, "--refusal-regex"},
		{"eval fraction without out", func(o *distill.Options) { o.EvalFraction = 0.1 }, "--eval-out"},
		{"out from elsewhere", func(o *distill.Options) { o.Out = existing }, "exists and no"},
		{"key variable unset", func(o *distill.Options) { o.APIKeyEnv = "DISTILL_TEST_UNSET_KEY" }, "DISTILL_TEST_UNSET_KEY"},
		{"concurrency", func(o *distill.Options) { o.Concurrency = 0 }, "--concurrency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := baseOpts(s, good, filepath.Join(dir, tt.name+".out.jsonl"))
			tt.mod(&o)
			_, err := distill.Run(context.Background(), o)
			if !errors.Is(err, distill.ErrInput) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrInput containing %q", err, tt.want)
			}
		})
	}
	if s.Total() != 0 {
		t.Errorf("bad input sent %d requests", s.Total())
	}
}

func TestEvalSplitWithoutLeakageAndRerunIsNoop(t *testing.T) {
	dir := t.TempDir()
	prompts, ps := promptsFile(t, dir, 40)
	s := server(t, llmtest.Options{})
	out, evalOut := filepath.Join(dir, "train.jsonl"), filepath.Join(dir, "eval.jsonl")
	opts := baseOpts(s, prompts, out)
	opts.EvalFraction, opts.EvalOut = 0.25, evalOut
	res, err := distill.Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	train, eval := readRows(t, out), readRows(t, evalOut)
	if len(eval) != 10 || len(train) != 30 {
		t.Errorf("split %d/%d, want 30/10", len(train), len(eval))
	}
	checkRows(t, append(train, eval...), ps)
	inTrain := map[string]bool{}
	for _, r := range train {
		inTrain[r.Messages[1].Content] = true
	}
	for _, r := range eval {
		if inTrain[r.Messages[1].Content] {
			t.Errorf("prompt %q on both sides", r.Messages[1].Content)
		}
	}
	if res.Check == nil || res.Check.EvalFile == "" || res.Provenance.Split == nil {
		t.Errorf("check %+v / split %+v", res.Check, res.Provenance.Split)
	}
	before := s.Total()
	res, err = distill.Run(context.Background(), opts)
	if err != nil || !res.AlreadyComplete || s.Total() != before {
		t.Errorf("rerun after the split: %v complete=%v sent=%d", err, res.AlreadyComplete, s.Total()-before)
	}
}

func TestKeyInNoFile(t *testing.T) {
	const key = "sk-distill-secret-0042"
	t.Setenv("DISTILL_TEST_KEY", key)
	dir := t.TempDir()
	prompts, _ := promptsFile(t, dir, 10)
	s := server(t, llmtest.Options{APIKey: key, Schedule: map[string][]llmtest.Fault{"question number 1?": {llmtest.ServerError, llmtest.ServerError, llmtest.ServerError}}})
	out := filepath.Join(dir, "out.jsonl")
	opts := baseOpts(s, prompts, out)
	opts.APIKeyEnv = "DISTILL_TEST_KEY"
	opts.MaxRetries = 1
	opts.EvalFraction, opts.EvalOut = 0.2, filepath.Join(dir, "eval.jsonl")
	_, err := distill.Run(context.Background(), opts)
	if !errors.Is(err, distill.ErrFailed) {
		t.Fatalf("err = %v, want one failure", err)
	}
	if strings.Contains(err.Error(), key) {
		t.Error("the key is in the error")
	}
	if got := s.AuthHeaders(); len(got) != 1 || got[0] != "Bearer "+key {
		t.Errorf("auth headers %q", got)
	}
	files := 0
	err = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		files++
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), key) {
			t.Errorf("%s holds the key", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 4 {
		t.Errorf("only %d files written", files)
	}
}

func TestUnauthorizedStopsTheRun(t *testing.T) {
	t.Setenv("DISTILL_TEST_KEY", "wrong")
	dir := t.TempDir()
	prompts, _ := promptsFile(t, dir, 200)
	s := server(t, llmtest.Options{APIKey: "right"})
	opts := baseOpts(s, prompts, filepath.Join(dir, "out.jsonl"))
	opts.APIKeyEnv = "DISTILL_TEST_KEY"
	opts.Concurrency = 2
	_, err := distill.Run(context.Background(), opts)
	if !errors.Is(err, distill.ErrFailed) || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("err = %v", err)
	}
	if s.Total() > 10 {
		t.Errorf("%d requests after a 401, want the run stopped early", s.Total())
	}
}

// A kill during the split's two renames: the "split SIZE" marker tells the next run
// whether they happened (OUT's size changed) or not (split again).
func TestKillDuringSplitIsRecovered(t *testing.T) {
	dir := t.TempDir()
	prompts, ps := promptsFile(t, dir, 30)
	s := server(t, llmtest.Options{})
	out, evalOut := filepath.Join(dir, "train.jsonl"), filepath.Join(dir, "eval.jsonl")
	opts := baseOpts(s, prompts, out)
	opts.EvalFraction, opts.EvalOut = 0.2, evalOut
	if _, err := distill.Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	train, _ := os.ReadFile(out)
	eval, _ := os.ReadFile(evalOut)
	state, _ := os.ReadFile(distill.StatePath(out))
	if !strings.HasSuffix(string(state), "\ncomplete\n") || !strings.Contains(string(state), fmt.Sprintf("\nsplit %d\n", len(train)+len(eval))) {
		t.Fatalf("state tail: %q", string(state)[max(0, len(state)-80):])
	}
	noComplete := strings.TrimSuffix(string(state), "complete\n")
	sent := s.Total()

	// Killed after both renames, before "complete": the split is in place.
	if err := os.WriteFile(distill.StatePath(out), []byte(noComplete), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := distill.Run(context.Background(), opts)
	if err != nil || !res.AlreadyComplete || s.Total() != sent {
		t.Fatalf("after renames: %v complete=%v sent=%d", err, res != nil && res.AlreadyComplete, s.Total()-sent)
	}

	// Killed before the renames: OUT is still whole (the eval rows written back), the
	// eval file half there. The split is made again, the same, without asking anything.
	if err := os.WriteFile(out, append(append([]byte{}, train...), eval...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(evalOut, eval[:len(eval)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(distill.StatePath(out), []byte(noComplete), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err = distill.Run(context.Background(), opts)
	if err != nil || res.AlreadyComplete || res.Split == nil || s.Total() != sent {
		t.Fatalf("before renames: %v split=%v sent=%d", err, res != nil && res.Split != nil, s.Total()-sent)
	}
	train2, _ := os.ReadFile(out)
	eval2, _ := os.ReadFile(evalOut)
	if len(train2) != len(train) || string(eval2) != string(eval) {
		t.Errorf("the second split differs: train %d/%d bytes, eval equal %v", len(train2), len(train), string(eval2) == string(eval))
	}
	checkRows(t, append(readRows(t, out), readRows(t, evalOut)...), ps)
}

func TestSameEndpointSpelledDifferentlyResumes(t *testing.T) {
	dir := t.TempDir()
	prompts, _ := promptsFile(t, dir, 5)
	s := server(t, llmtest.Options{})
	opts := baseOpts(s, prompts, filepath.Join(dir, "out.jsonl"))
	if _, err := distill.Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	for _, spelling := range []string{s.URL + "/", strings.TrimSuffix(s.URL, "/v1"), s.URL + "/chat/completions"} {
		opts.Teacher, opts.BaseURL = spelling, spelling
		res, err := distill.Run(context.Background(), opts)
		if err != nil || res.Provenance.LastRun.Resumed != 5 || s.Total() != 5 {
			t.Errorf("%s: %v, resumed %d, %d requests in all", spelling, err, res.Provenance.LastRun.Resumed, s.Total())
		}
	}
}
