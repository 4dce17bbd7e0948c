package distill

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/distill"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/iostreams"
	"github.com/loractl/loractl/llm/llmtest"
)

func factory() (*cmdutil.Factory, *bytes.Buffer, *bytes.Buffer) {
	io, _, out, errOut := iostreams.Test()
	l := zerolog.Nop()
	return &cmdutil.Factory{IO: io, Log: &l}, out, errOut
}

func TestFlags(t *testing.T) {
	f, _, _ := factory()
	var got *Options
	cmd := NewCmdDistill(f, func(o *Options) error { got = o; return nil })
	cmd.SetArgs([]string{"p.txt", "-o", "out.jsonl", "--teacher", "http://h/v1", "--model", "m", "--system-prompt", "@s.txt",
		"--api-key-env", "K", "--concurrency", "32", "--max-tokens", "64", "--temperature", "0.7", "--n", "3",
		"--eval-fraction", "0.1", "--eval-out", "e.jsonl", "--require", "json", "--refusal-regex", "", "--timeout", "5s",
		"--max-retries", "2", "--seed", "7", "--json"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	want := Options{Prompts: "p.txt", Out: "out.jsonl", Teacher: "http://h/v1", Model: "m", SystemPrompt: "@s.txt", APIKeyEnv: "K",
		Concurrency: 32, MaxTokens: 64, Temperature: 0.7, TempSet: true, N: 3, EvalFraction: 0.1, EvalOut: "e.jsonl",
		Require: "json", RefusalRegex: "", Timeout: 5 * time.Second, MaxRetries: 2, Seed: 7, JSON: true, BatchSize: 8}
	got.IO, got.Ctx = nil, nil
	if fmt.Sprintf("%+v", *got) != fmt.Sprintf("%+v", want) {
		t.Errorf("options\n got %+v\nwant %+v", *got, want)
	}
	cmd = NewCmdDistill(f, func(o *Options) error { got = o; return nil })
	cmd.SetArgs([]string{"p.txt", "-o", "out.jsonl", "--teacher", "x"})
	if err := cmd.Execute(); err != nil || got.TempSet || got.RefusalRegex != distill.DefaultRefusalPattern || got.MaxTokens != 1024 {
		t.Errorf("defaults: %+v %v", got, err)
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		err  error
		code int
	}{
		{nil, 0},
		{fmt.Errorf("%w: bad", distill.ErrInput), 2},
		{fmt.Errorf("%w: 3 failed", distill.ErrFailed), 1},
		{distill.ErrInterrupted, 130},
		{errors.New("disk full"), 1},
	}
	for _, tt := range tests {
		if got := cmdutil.ExitCode(exitFor(tt.err)); got != tt.code {
			t.Errorf("exitFor(%v) -> %d, want %d", tt.err, got, tt.code)
		}
	}
	if e := exitFor(fmt.Errorf("%w: p.txt:3: bad", distill.ErrInput)); e.Error() != "p.txt:3: bad" {
		t.Errorf("message %q", e)
	}
}

func TestRunPrintsSummaryAndJSON(t *testing.T) {
	s, err := llmtest.New(llmtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	prompts := filepath.Join(dir, "p.txt")
	var b strings.Builder
	for i := range 30 {
		fmt.Fprintf(&b, "q%d\n", i)
	}
	b.WriteString("q0\n") // a duplicate prompt: asked once
	if err := os.WriteFile(prompts, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	sys := filepath.Join(dir, "sys.txt")
	if err := os.WriteFile(sys, []byte("Be brief."), 0o644); err != nil {
		t.Fatal(err)
	}

	f, out, _ := factory()
	o := &Options{IO: f.IO, Prompts: prompts, Out: filepath.Join(dir, "out.jsonl"), Teacher: s.URL, SystemPrompt: "@" + sys,
		Concurrency: 4, MaxTokens: 32, N: 1, MaxRetries: 1, Timeout: time.Second, BatchSize: 8,
		EvalFraction: 0.2, EvalOut: filepath.Join(dir, "eval.jsonl"), Seed: 1}
	if err := distillRun(o); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"distilled 31 prompts -> ", ": 30 rows", "1 duplicate prompts skipped", "split: 24 train", "6 eval",
		"data check: 24 examples", "provenance: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if s.Total() != 30 {
		t.Errorf("%d requests, want 30", s.Total())
	}

	f, out, _ = factory()
	o.IO, o.JSON = f.IO, true
	if err := distillRun(o); err != nil {
		t.Fatal(err)
	}
	var last map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if err := json.Unmarshal([]byte(l), &last); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
	}
	if last["type"] != "result" || last["already_complete"] != true {
		t.Errorf("last line %v", last)
	}

	o.SystemPrompt = "@" + filepath.Join(dir, "missing.txt")
	if err := distillRun(o); cmdutil.ExitCode(err) != 2 || !strings.Contains(err.Error(), "missing.txt") {
		t.Errorf("missing system prompt file: %v", err)
	}
}
