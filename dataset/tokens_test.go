package dataset

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/loractl/loractl/internal/pyenv"
)

// fakeCounter is a TokenCounter with canned answers per (file, line).
type fakeCounter struct {
	info    *TemplateInfo
	results []ExampleTokens
	err     error
	req     TokenRequest
}

func (f *fakeCounter) CountTokens(_ context.Context, req TokenRequest, each func(ExampleTokens) error) (*TemplateInfo, error) {
	f.req = req
	for _, r := range f.results {
		if err := each(r); err != nil {
			return nil, err
		}
	}
	return f.info, f.err
}

func TestCheckWithTokenCounter(t *testing.T) {
	train := writeLines(t, "train.jsonl", append(examples(0, 59, prod), "{broken"))
	eval := writeLines(t, "eval.jsonl", examples(100, 3, prod))
	okInfo := &TemplateInfo{Tokenizer: "tok", GenerationMarkers: true, EOSToken: "</s>", EndsWithEOS: true}
	var results []ExampleTokens
	for line := 1; line <= 59; line++ {
		results = append(results, ExampleTokens{File: 0, Line: line, Total: 100, Assistant: 40, AssistantKept: 40})
	}
	results[4] = ExampleTokens{File: 0, Line: 5, Total: 300, Assistant: 40, AssistantKept: 10}            // truncated
	results[5] = ExampleTokens{File: 0, Line: 6, Total: 400, Assistant: 40, AssistantKept: 0}             // labels gone
	results[6] = ExampleTokens{File: 0, Line: 7, Error: "System role not supported"}                      // template raises
	results = append(results, ExampleTokens{File: 0, Line: 60, Total: 5, Assistant: 1, AssistantKept: 1}, // a broken line: ignored
		ExampleTokens{File: 1, Line: 2, Total: 500, Assistant: 40, AssistantKept: 40})

	fc := &fakeCounter{info: okInfo, results: results}
	r := check(t, Options{Train: train, Eval: eval, MaxLength: 256, Epochs: 2, Tokenizer: fc, MaxLineBytes: 1234})
	if !slices.Equal(fc.req.Files, []string{train, eval}) || fc.req.MaxLength != 256 || fc.req.MaxLineBytes != 1234 {
		t.Errorf("request %+v", fc.req)
	}
	if got := errorCodes(r); !slices.Equal(got, []string{"7:" + CodeChatTemplateError, "60:" + CodeInvalidJSON}) {
		t.Errorf("errors %v", got)
	}
	if w := r.Warning(CodeExceedsMaxLength); w == nil || !slices.Equal(w.Lines, []int{5, 6}) || strings.Contains(w.Message, "estimated") {
		t.Errorf("exceeds_max_length %+v", w)
	}
	if w := r.Warning(CodeLabelsTruncatedAway); w == nil || !slices.Equal(w.Lines, []int{6}) {
		t.Errorf("labels_truncated_away %+v", w)
	}
	if !slices.Contains(warningCodes(r), CodeExceedsMaxLength+"@eval") {
		t.Errorf("the eval file's long example is not reported: %v", warningCodes(r))
	}
	tk := r.Stats.Tokens
	// 56 examples of 100 tokens, 256 + 256 after truncation.
	if tk.Method != "tokenizer" || tk.Estimated || tk.PerEpoch != 56*100+256+256 || tk.Total != 2*tk.PerEpoch || tk.PerExample.Max != 400 || tk.PerExample.P50 != 100 {
		t.Errorf("tokens %+v", tk)
	}
	if tk.AssistantPerEpoch != 56*40+10 || tk.Template != okInfo || !strings.Contains(tk.Note, "1 valid examples could not be counted") {
		t.Errorf("tokens %+v", tk)
	}

	t.Run("missing EOS in the template", func(t *testing.T) {
		bad := *okInfo
		bad.EndsWithEOS, bad.Problem = false, "the chat template does not end assistant turns with an end token"
		r := check(t, Options{Train: train, Eval: eval, Tokenizer: &fakeCounter{info: &bad}})
		if w := r.Warning(CodeMissingEOSInTemplate); w == nil || w.Message != bad.Problem {
			t.Errorf("missing_eos_in_template %+v", w)
		}
	})
	t.Run("a failing counter fails the check", func(t *testing.T) {
		_, err := Check(context.Background(), Options{Train: train, Tokenizer: &fakeCounter{err: errors.New("boom")}})
		if err == nil || !strings.Contains(err.Error(), "boom") {
			t.Errorf("got %v", err)
		}
	})
}

// testPython returns the trainer's interpreter, or skips: the Python stack is an optional
// tool for the Go tests, except where LORACTL_REQUIRE_E2E says it must be there (CI).
func testPython(t *testing.T) string {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("LORACTL_REQUIRE_E2E") != "" {
		skip = t.Fatalf
	}
	py, _, err := pyenv.Find("")
	if err != nil {
		skip("no Python environment for the trainer (%v)", err)
	}
	if exec.Command(py, "-c", "import transformers").Run() != nil {
		skip("%s cannot import transformers", py)
	}
	return py
}

// buildTokenizer builds a tiny word-level tokenizer with python/make_tiny_model.py.
func buildTokenizer(t *testing.T, py string, data string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "model")
	args := []string{filepath.Join("..", "python", "make_tiny_model.py"), dir, "--data", data}
	if out, err := exec.Command(py, args...).CombinedOutput(); err != nil {
		t.Fatalf("make_tiny_model: %v\n%s", err, out)
	}
	return dir
}

// TestPythonTokenCounter runs the embedded token_stats.py with a real tokenizer, end to
// end. The helper's own cases (templates without markers or end token, template errors)
// are in python/tests/test_token_stats.py.
func TestPythonTokenCounter(t *testing.T) {
	py := testPython(t)
	lines := examples(0, 60, prod)
	lines[2] = msgs(ps, `{"role": "user", "content": "`+strings.Repeat("question ", 40)+`"}`, a) // long prompt
	lines[3] = "not json"
	train := writeLines(t, "train.jsonl", lines)
	vocab := writeLines(t, "vocab.jsonl", examples(0, 60, prod))
	tok := buildTokenizer(t, py, vocab)

	r := check(t, Options{Train: train, EvalSplit: 0.1, MaxLength: 24, Tokenizer: &PythonTokenCounter{Python: py, Dir: tok}})
	tk := r.Stats.Tokens
	if tk.Method != "tokenizer" || tk.Template == nil || !tk.Template.GenerationMarkers || !tk.Template.EndsWithEOS || tk.Template.EOSToken != "<|end|>" {
		t.Fatalf("tokens %+v template %+v", tk, tk.Template)
	}
	// "<|system|> You are the ACME support assistant . <|end|>" + user + assistant turns.
	if tk.PerExample.P50 < 20 || tk.PerExample.Max < 40 {
		t.Errorf("per example %+v", tk.PerExample)
	}
	if w := r.Warning(CodeLabelsTruncatedAway); w == nil || !slices.Equal(w.Lines, []int{3}) {
		t.Errorf("labels_truncated_away %+v", w)
	}
	if got := errorCodes(r); !slices.Equal(got, []string{"4:" + CodeInvalidJSON}) {
		t.Errorf("errors %v", got)
	}
}

// TestPythonTokenCounterFailures drives PythonTokenCounter with stand-in interpreters: how
// each way the helper can fail reaches the caller.
func TestPythonTokenCounterFailures(t *testing.T) {
	train := writeLines(t, "train.jsonl", examples(0, 20, prod))
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, python string
		tokDir       string
		input        bool // wraps ErrInput (exit 2)
		msg          string
	}{
		{"tokenizer cannot load", script("exit2", `echo "token_stats: cannot load the tokenizer in X" >&2; exit 2`), dir, true, "cannot load the tokenizer"},
		{"tokenizer is not a directory", script("unused", "exit 0"), filepath.Join(dir, "nope"), true, "not a directory"},
		{"helper crashes", script("crash", `echo "Traceback: boom" >&2; exit 1`), dir, false, "Traceback: boom"},
		{"garbage on stdout", script("garbage", `echo "not json"`), dir, false, "bad output line"},
		{"no template record", script("silent", "exit 0"), dir, false, "no template record"},
		{"interpreter missing", filepath.Join(dir, "no-python"), dir, false, "starting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Check(context.Background(), Options{Train: train, Tokenizer: &PythonTokenCounter{Python: tt.python, Dir: tt.tokDir}})
			if err == nil || errors.Is(err, ErrInput) != tt.input || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %v, want ErrInput=%v mentioning %q", err, tt.input, tt.msg)
			}
		})
	}
}

// TestEveryLabelTruncatedIsAnError: when the tokenizer says every example of a file
// loses all its labels, the run would learn (or measure) nothing: an error, not a
// warning. One example that keeps a label leaves it a warning.
func TestEveryLabelTruncatedIsAnError(t *testing.T) {
	train := writeLines(t, "train.jsonl", examples(0, 60, prod))
	okInfo := &TemplateInfo{Tokenizer: "tok", GenerationMarkers: true, EOSToken: "</s>", EndsWithEOS: true}
	counts := func(keepLine int) []ExampleTokens {
		var rs []ExampleTokens
		for line := 1; line <= 60; line++ {
			kept := 0
			if line == keepLine {
				kept = 3
			}
			rs = append(rs, ExampleTokens{File: 0, Line: line, Total: 300, Assistant: 40, AssistantKept: kept})
		}
		return rs
	}
	for _, tt := range []struct {
		name     string
		keepLine int
		isError  bool
	}{
		{"all truncated", 0, true},
		{"one keeps a label", 17, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := check(t, Options{Train: train, EvalSplit: 0.1, MaxLength: 64, Tokenizer: &fakeCounter{info: okInfo, results: counts(tt.keepLine)}})
			gotErr := slices.Contains(errorCodes(r), "0:"+CodeLabelsTruncatedAway)
			gotWarn := r.Warning(CodeLabelsTruncatedAway) != nil
			if gotErr != tt.isError || gotWarn == tt.isError {
				t.Errorf("error %v, warning %v; want error %v\n%+v", gotErr, gotWarn, tt.isError, r.Errors)
			}
		})
	}
}
