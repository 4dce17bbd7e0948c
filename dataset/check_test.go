package dataset

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// example returns a distinct valid example: question i with a system prompt (none if "").
func example(i int, system string) string {
	var m []string
	if system != "" {
		m = append(m, fmt.Sprintf(`{"role": "system", "content": %q}`, system))
	}
	m = append(m, fmt.Sprintf(`{"role": "user", "content": "question number %d about adapters"}`, i),
		fmt.Sprintf(`{"role": "assistant", "content": "answer number %d: use a rank of %d"}`, i, i%64))
	return msgs(m...)
}

func examples(from, n int, system string) []string {
	var out []string
	for i := from; i < from+n; i++ {
		out = append(out, example(i, system))
	}
	return out
}

func writeLines(t *testing.T, name string, lines []string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func check(t *testing.T, opts Options) *Report {
	t.Helper()
	r, err := Check(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func warningCodes(r *Report) []string {
	var out []string
	for _, w := range r.Warnings {
		code := w.Code
		if w.File != "" {
			code += "@eval"
		}
		out = append(out, code)
	}
	return out
}

func errorCodes(r *Report) []string {
	var out []string
	for _, e := range r.Errors {
		out = append(out, fmt.Sprintf("%d:%s", e.Line, e.Code))
	}
	return out
}

const prod = "You are the ACME support assistant."

// ps is the production system prompt as a message.
var ps = fmt.Sprintf(`{"role": "system", "content": %q}`, prod)

// TestCheckWarnings has one case per dataset-level warning code (the per-line ones are
// covered by TestLineCheckerValid and counted here once).
func TestCheckWarnings(t *testing.T) {
	base := examples(0, 600, prod)
	tests := []struct {
		name  string
		train []string
		eval  []string
		opts  Options
		want  string // the warning expected (code, with @eval for the eval file)
		count int
		lines []int
		msg   string
	}{
		{name: "too few examples", train: examples(0, 20, prod), want: CodeTooFewExamples, count: 1, msg: "few-shot"},
		{name: "small dataset", train: examples(0, 100, prod), want: CodeSmallDataset, count: 1, msg: "modest gains"},
		{name: "no eval set", train: base, opts: Options{}, want: CodeNoEvalSet, count: 1, msg: "evaluation"},
		{name: "duplicate after whitespace normalisation", train: append(slices.Clone(base), strings.Replace(base[3], "question number", "question   \\n number", 1), base[7]),
			want: CodeDuplicateExample, count: 2, lines: []int{601, 602}, msg: "line 601 = line 4"},
		{name: "eval example equal to a train example", train: base, eval: append(examples(1000, 5, prod), base[10]),
			want: CodeTrainEvalOverlap + "@eval", count: 1, lines: []int{6}, msg: "eval line 6 ~ train line 11"},
		{name: "eval prompt equal to a train prompt", train: base, eval: append(examples(1000, 5, prod), strings.Replace(base[20], "answer number", "another answer", 1)),
			want: CodeTrainEvalOverlap + "@eval", count: 1, lines: []int{6}},
		{name: "several system prompts", train: append(slices.Clone(base), examples(600, 3, "Be brief.")...),
			want: CodeInconsistentSystemPrompt, count: 3, lines: []int{601, 602, 603}, msg: "2 distinct system prompts"},
		{name: "some without system prompt", train: append(slices.Clone(base), examples(600, 2, "")...),
			want: CodeInconsistentSystemPrompt, count: 2, lines: []int{601, 602}, msg: "600 examples have a system prompt and 2 have none"},
		{name: "system prompt differs from production", train: append(slices.Clone(base), examples(600, 2, "Be brief.")...), opts: Options{SystemPrompt: "  You are the ACME\nsupport assistant. "},
			want: CodeSystemPromptMismatch, count: 2, lines: []int{601, 602}},
		{name: "exceeds max length (estimated)", train: append(slices.Clone(base), msgs(ps, u, `{"role": "assistant", "content": "`+strings.Repeat("word ", 300)+`"}`)), opts: Options{MaxLength: 256},
			want: CodeExceedsMaxLength, count: 1, lines: []int{601}, msg: "estimated"},
		{name: "labels truncated away (estimated)", train: append(slices.Clone(base), msgs(ps, `{"role": "user", "content": "`+strings.Repeat("word ", 300)+`"}`, a)), opts: Options{MaxLength: 256},
			want: CodeLabelsTruncatedAway, count: 1, lines: []int{601}, msg: "train nothing"},
		{name: "last message not assistant", train: append(slices.Clone(base), msgs(ps, u, a, u)), want: CodeLastMessageNotAssistant, count: 1, lines: []int{601}},
		{name: "consecutive same role", train: append(slices.Clone(base), msgs(ps, u, u, a)), want: CodeConsecutiveSameRole, count: 1, lines: []int{601}},
		{name: "system not first", train: append(slices.Clone(base), msgs(ps, u, sys, a)), want: CodeSystemNotFirst, count: 1, lines: []int{601}},
		{name: "empty user content", train: append(slices.Clone(base), msgs(ps, `{"role": "user", "content": ""}`, a)), want: CodeEmptyUserContent, count: 1, lines: []int{601}},
		{name: "small eval file", train: base, eval: examples(1000, 12, prod), want: CodeSmallEvalSet + "@eval", count: 12, msg: "cannot be told from noise"},
		{name: "small eval split", train: examples(0, 100, prod), opts: Options{EvalSplit: 0.1}, want: CodeSmallEvalSet, count: 10, msg: "data.eval_split"},
		{name: "eval multi-turn, train single-turn", train: base, eval: append(examples(1000, 25, prod), msgs(ps, u, a, u, a)), want: CodeEvalMultiTurn + "@eval", count: 1, lines: []int{26}, msg: "never trained on"},
		{name: "warnings in the eval file", train: base, eval: append(examples(1000, 5, prod), msgs(ps, u, a, u)), want: CodeLastMessageNotAssistant + "@eval", count: 1, lines: []int{6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.Train = writeLines(t, "train.jsonl", tt.train)
			if tt.eval != nil {
				opts.Eval = writeLines(t, "eval.jsonl", tt.eval)
			} else if tt.want != CodeNoEvalSet {
				opts.EvalSplit = 0.1
			}
			r := check(t, opts)
			if r.HasErrors() {
				t.Fatalf("unexpected errors %v", errorCodes(r))
			}
			codes := warningCodes(r)
			i := slices.Index(codes, tt.want)
			if i < 0 {
				t.Fatalf("no %s warning; got %v", tt.want, codes)
			}
			w := r.Warnings[i]
			if w.Count != tt.count {
				t.Errorf("count %d, want %d (%s)", w.Count, tt.count, w.Message)
			}
			if tt.lines != nil && !slices.Equal(w.Lines, tt.lines) {
				t.Errorf("lines %v, want %v", w.Lines, tt.lines)
			}
			if !strings.Contains(w.Message, tt.msg) {
				t.Errorf("message %q does not mention %q", w.Message, tt.msg)
			}
			// Only the warning under test (and what the data implies) is raised.
			for _, c := range codes {
				if c != tt.want && !slices.Contains([]string{CodeTooFewExamples, CodeSmallDataset, CodeNoEvalSet, CodeSmallEvalSet, CodeSmallEvalSet + "@eval"}, c) && !(tt.want == CodeSystemPromptMismatch && c == CodeInconsistentSystemPrompt) &&
					!(tt.want == CodeLabelsTruncatedAway && c == CodeExceedsMaxLength) {
					t.Errorf("unexpected warning %s", c)
				}
			}
		})
	}
}

func TestCheckCleanData(t *testing.T) {
	train := writeLines(t, "train.jsonl", examples(0, 600, prod))
	eval := writeLines(t, "eval.jsonl", examples(600, 60, prod))
	r := check(t, Options{Train: train, Eval: eval, SystemPrompt: prod, MaxLength: 2048, Epochs: 3})
	if r.HasErrors() || len(r.Warnings) != 0 {
		t.Fatalf("clean data: errors %v warnings %v", errorCodes(r), warningCodes(r))
	}
	s := r.Stats
	if s.Examples != 600 || s.ValidExamples != 600 || s.Eval == nil || s.Eval.Examples != 60 {
		t.Errorf("counts: %+v", s)
	}
	if s.Roles["system"] != 600 || s.Roles["user"] != 600 || s.Roles["assistant"] != 600 || s.Roles["tool"] != 0 {
		t.Errorf("roles %v", s.Roles)
	}
	if s.MessagesPerExample != (Distribution{Min: 3, Mean: 3, Max: 3}) {
		t.Errorf("messages per example %+v", s.MessagesPerExample)
	}
	if s.SystemPrompts.Distinct != 1 || s.SystemPrompts.Without != 0 || s.SystemPrompts.Top[0].Preview != prod || s.SystemPrompts.Top[0].Count != 600 {
		t.Errorf("system prompts %+v", s.SystemPrompts)
	}
	tk := s.Tokens
	if !tk.Estimated || tk.Method != "estimate" || tk.PerExample.P50 <= 0 || tk.PerExample.P50 > tk.PerExample.P95 || tk.PerExample.P95 > tk.PerExample.Max {
		t.Errorf("tokens %+v", tk)
	}
	if tk.Total != 3*tk.PerEpoch || tk.AssistantPerEpoch <= 0 || tk.AssistantPerEpoch >= tk.PerEpoch {
		t.Errorf("token totals %+v", tk)
	}
}

func TestCheckErrors(t *testing.T) {
	t.Run("too few examples is an error under 10", func(t *testing.T) {
		r := check(t, Options{Train: writeLines(t, "t.jsonl", examples(0, 9, prod)), EvalSplit: 0.1})
		if got := errorCodes(r); !slices.Equal(got, []string{"0:" + CodeTooFewExamples}) {
			t.Errorf("errors %v", got)
		}
	})
	t.Run("mixed faults", func(t *testing.T) {
		lines := examples(0, 60, prod)
		lines[4] = `{"messages": [` + u
		lines[9] = msgs(u, `{"role": "asistant", "content": "x"}`)
		lines[19] = ""
		lines[29] = msgs(u, `{"role": "assistant", "content": 3, "extra": 1}`)
		lines[39] = `["not", "an", "object"]`
		lines[49] = msgs(u, u)
		lines = append(lines, "", "  ", "") // trailing blank lines are fine
		r := check(t, Options{Train: writeLines(t, "t.jsonl", lines), EvalSplit: 0.1})
		want := []string{"5:invalid_json", "10:unrecognized_role", "30:content_not_string", "30:message_unrecognized_key", "40:not_an_object", "50:missing_assistant_message"}
		if got := errorCodes(r); !slices.Equal(got, want) {
			t.Errorf("errors\n got %v\nwant %v", got, want)
		}
		// A blank line inside the file is skipped by the trainer: a warning.
		if w := r.Warning(CodeBlankLines); w == nil || !slices.Equal(w.Lines, []int{20}) {
			t.Errorf("blank_lines %+v", w)
		}
		if r.ErrorsTotal != len(want) || r.Examples != 59 || r.Stats.ValidExamples != 54 {
			t.Errorf("total %d, examples %d, valid %d", r.ErrorsTotal, r.Examples, r.Stats.ValidExamples)
		}
	})
	t.Run("the listing is capped, the count is not", func(t *testing.T) {
		lines := examples(0, 100, prod)
		for i := 0; i < 100; i += 2 {
			lines[i] = "{"
		}
		r := check(t, Options{Train: writeLines(t, "t.jsonl", lines), EvalSplit: 0.1, MaxListed: 7})
		if len(r.Errors) != 7 || r.ErrorsTotal != 50 || r.Errors[6].Line != 13 {
			t.Errorf("listed %d (last line %d), total %d", len(r.Errors), r.Errors[len(r.Errors)-1].Line, r.ErrorsTotal)
		}
	})
	t.Run("errors in the eval file name it", func(t *testing.T) {
		eval := writeLines(t, "eval.jsonl", append(examples(1000, 3, prod), "nope"))
		r := check(t, Options{Train: writeLines(t, "t.jsonl", examples(0, 60, prod)), Eval: eval})
		if len(r.Errors) != 1 || r.Errors[0].File != eval || r.Errors[0].Line != 4 || r.Errors[0].Code != CodeInvalidJSON {
			t.Errorf("errors %+v", r.Errors)
		}
	})
}

func TestCheckFileForms(t *testing.T) {
	lines := examples(0, 60, prod)
	tests := []struct {
		name    string
		content []byte
		opts    Options
		errors  []string
		valid   int
	}{
		{"CRLF line endings", []byte(strings.Join(lines, "\r\n") + "\r\n"), Options{}, nil, 60},
		{"CRLF, no final newline", []byte(strings.Join(lines, "\r\n")), Options{}, nil, 60},
		{"byte order mark", append([]byte("\xef\xbb\xbf"), strings.Join(lines, "\n")...), Options{}, nil, 60},
		{"byte order mark later is an error", []byte(strings.Join(lines[:30], "\n") + "\n\xef\xbb\xbf" + strings.Join(lines[30:], "\n")), Options{}, []string{"31:invalid_json"}, 59},
		{"empty file", nil, Options{}, []string{"0:too_few_examples"}, 0},
		{"only blank lines", []byte("\n\n  \n"), Options{}, []string{"0:too_few_examples"}, 0},
		{"line over the limit", []byte(strings.Join(lines, "\n") + "\n" + msgs(u, `{"role": "assistant", "content": "`+strings.Repeat("x", 5000)+`"}`) + "\n"), Options{MaxLineBytes: 4096}, []string{"61:line_too_long"}, 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "t.jsonl")
			if err := os.WriteFile(p, tt.content, 0o644); err != nil {
				t.Fatal(err)
			}
			opts := tt.opts
			opts.Train, opts.EvalSplit = p, 0.1
			r := check(t, opts)
			if got := errorCodes(r); !slices.Equal(got, tt.errors) {
				t.Errorf("errors %v, want %v", got, tt.errors)
			}
			if r.Stats.ValidExamples != tt.valid {
				t.Errorf("valid %d, want %d", r.Stats.ValidExamples, tt.valid)
			}
		})
	}
}

// TestCheckHugeLine: a 50 MB line is refused by the default limit without being held in
// memory, and checked normally under a raised limit; the lines after it still count.
func TestCheckHugeLine(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 50 MB file")
	}
	var b bytes.Buffer
	lines := examples(0, 60, prod)
	b.WriteString(strings.Join(lines[:30], "\n") + "\n")
	b.WriteString(`{"messages": [` + u + `, {"role": "assistant", "content": "`)
	b.WriteString(strings.Repeat("long answer ", 50<<20/12))
	b.WriteString(`"}]}` + "\n")
	b.WriteString(strings.Join(lines[30:], "\n") + "\n")
	p := filepath.Join(t.TempDir(), "huge.jsonl")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	b = bytes.Buffer{}

	r := check(t, Options{Train: p, EvalSplit: 0.1})
	if got := errorCodes(r); !slices.Equal(got, []string{"31:line_too_long"}) || r.Stats.ValidExamples != 60 {
		t.Fatalf("default limit: errors %v, valid %d", got, r.Stats.ValidExamples)
	}
	if !strings.Contains(r.Errors[0].Message, "5242") {
		t.Errorf("message should give the line's size: %s", r.Errors[0].Message)
	}
	r = check(t, Options{Train: p, EvalSplit: 0.1, MaxLineBytes: 64 << 20, MaxLength: 2048})
	if r.HasErrors() || r.Stats.ValidExamples != 61 {
		t.Fatalf("raised limit: errors %v, valid %d", errorCodes(r), r.Stats.ValidExamples)
	}
	if w := r.Warning(CodeExceedsMaxLength); w == nil || !slices.Equal(w.Lines, []int{31}) {
		t.Errorf("the huge example should exceed max length: %+v", w)
	}
}

func TestCheckInputErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		opts Options
		msg  string
	}{
		{"missing file", Options{Train: filepath.Join(dir, "nope.jsonl")}, "no such file"},
		{"directory", Options{Train: dir}, "is a directory"},
		{"missing eval file", Options{Train: writeLines(t, "t.jsonl", examples(0, 10, "")), Eval: filepath.Join(dir, "nope.jsonl")}, "nope.jsonl: no such file"},
		{"no train file", Options{}, "no train file"},
		{"negative max length", Options{Train: "x", MaxLength: -1}, "max length"},
		{"eval split of 1", Options{Train: "x", EvalSplit: 1}, "eval split"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Check(context.Background(), tt.opts)
			if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %v, want ErrInput mentioning %q", err, tt.msg)
			}
		})
	}
}

func TestCheckCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Check(ctx, Options{Train: writeLines(t, "t.jsonl", examples(0, 10, ""))})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v", err)
	}
}

// TestReportJSONShape pins the --json shape the issue specifies.
func TestReportJSONShape(t *testing.T) {
	lines := append(examples(0, 20, prod), "{")
	r := check(t, Options{Train: writeLines(t, "t.jsonl", lines)})
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	keys := func(m map[string]json.RawMessage) []string {
		var k []string
		for key := range m {
			k = append(k, key)
		}
		slices.Sort(k)
		return k
	}
	if got := keys(top); !slices.Equal(got, []string{"errors", "errors_total", "examples", "file", "stats", "warnings"}) {
		t.Errorf("top-level keys %v", got)
	}
	var errs []map[string]json.RawMessage
	var warns []map[string]json.RawMessage
	if err := json.Unmarshal(top["errors"], &errs); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(top["warnings"], &warns); err != nil {
		t.Fatal(err)
	}
	if got := keys(errs[0]); !slices.Equal(got, []string{"code", "line", "message", "path"}) {
		t.Errorf("error keys %v", got)
	}
	if got := keys(warns[0]); !slices.Equal(got, []string{"code", "count", "lines", "message"}) {
		t.Errorf("warning keys %v", got)
	}
	var stats map[string]json.RawMessage
	if err := json.Unmarshal(top["stats"], &stats); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"examples", "messages_per_example", "tokens", "roles", "system_prompts"} {
		if _, ok := stats[k]; !ok {
			t.Errorf("stats lacks %q", k)
		}
	}
}

// TestCheckRefusesInputs: inputs the check cannot vouch for are usage errors.
func TestCheckRefusesInputs(t *testing.T) {
	train := writeLines(t, "train.jsonl", examples(0, 60, prod))
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "same.jsonl")
	if err := os.Symlink(train, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts Options
		msg  string
	}{
		{"a pipe", Options{Train: fifo}, "not a regular file"},
		{"eval file and eval split", Options{Train: train, Eval: train + ".x", EvalSplit: 0.1}, "not both"},
		{"eval is train", Options{Train: train, Eval: link}, "the eval file is the train file"},
		{"NaN split", Options{Train: train, EvalSplit: math.NaN()}, "must be numbers"},
		{"infinite epochs", Options{Train: train, Epochs: math.Inf(1)}, "must be numbers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Check(context.Background(), tt.opts)
			if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, want ErrInput mentioning %q", err, tt.msg)
			}
		})
	}
}

// TestDatasetLevelErrors: an eval file without a valid example, and too few distinct
// examples however many lines repeat them.
func TestDatasetLevelErrors(t *testing.T) {
	train := writeLines(t, "train.jsonl", examples(0, 60, prod))
	empty := writeLines(t, "eval.jsonl", nil)
	r := check(t, Options{Train: train, Eval: empty})
	if got := errorCodes(r); !slices.Equal(got, []string{"0:" + CodeNoEvalExamples}) || r.Errors[0].File != empty {
		t.Errorf("empty eval file: %+v", r.Errors)
	}
	same := make([]string, 200)
	for i := range same {
		same[i] = examples(0, 1, prod)[0]
	}
	r = check(t, Options{Train: writeLines(t, "dups.jsonl", same), EvalSplit: 0.1})
	if got := errorCodes(r); !slices.Equal(got, []string{"0:" + CodeTooFewExamples}) || !strings.Contains(r.Errors[0].Message, "1 distinct valid examples") {
		t.Errorf("200 copies of one example: %+v", r.Errors)
	}
}

// TestEnoughEvalExamplesNoWarning: the small-eval warning starts under FewEvalExamples.
func TestEnoughEvalExamplesNoWarning(t *testing.T) {
	opts := Options{
		Train: writeLines(t, "train.jsonl", examples(0, 600, prod)),
		Eval:  writeLines(t, "eval.jsonl", examples(1000, FewEvalExamples, prod)),
	}
	if codes := warningCodes(check(t, opts)); slices.Contains(codes, CodeSmallEvalSet+"@eval") {
		t.Errorf("%d eval examples warned %v", FewEvalExamples, codes)
	}
}

// TestSmallEvalSplitRoundsUp: the trainer's split (datasets' train_test_split) rounds the
// eval part up, so 30 examples × 0.02 is an eval set of one example: the warning must
// fire (it counted none and said nothing).
func TestSmallEvalSplitRoundsUp(t *testing.T) {
	r := check(t, Options{Train: writeLines(t, "train.jsonl", examples(0, 30, prod)), EvalSplit: 0.02})
	i := slices.Index(warningCodes(r), CodeSmallEvalSet)
	if i < 0 {
		t.Fatalf("no %s warning; got %v", CodeSmallEvalSet, warningCodes(r))
	}
	if w := r.Warnings[i]; w.Count != 1 || !strings.HasPrefix(w.Message, "1 eval example") {
		t.Errorf("count %d: %s", w.Count, w.Message)
	}
}
