// Package distill builds training data from a teacher model: it sends each prompt of a
// prompts file to an OpenAI-compatible endpoint (a served model, or a local model
// directory served by python/serve_openai.py) and writes the answers as chat JSONL,
// without losing or duplicating a row however the run ends (rate limits, timeouts,
// Ctrl-C, kill -9): the same command resumes where the run stopped.
//
// Files beside OUT are named by appending to OUT's full name: OUT.distill-state (the
// resume state), OUT.failed.jsonl (prompts that failed after the retries) and
// OUT.distill.json (provenance).
package distill

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"time"
)

// Errors the CLI maps to exit codes.
var (
	// ErrInput marks invalid input: options, the prompts file, an OUT from another command.
	ErrInput = errors.New("invalid input")
	// ErrInterrupted means the run was stopped (Ctrl-C) after writing what was in flight.
	ErrInterrupted = errors.New("interrupted")
	// ErrFailed means some prompts failed after their retries (they are in OUT.failed.jsonl).
	ErrFailed = errors.New("prompts failed")
)

// DefaultRefusalPattern matches the openings of typical refusals.
const DefaultRefusalPattern = `(?i)^\W*(I'm sorry|I am sorry|I apologi[sz]e|Sorry, (but )?I can|I can(not|'t|’t) (help|assist|comply|provide)|I'm (not able|unable) to|I am (not able|unable) to|As an AI\b)`

// Require values.
const RequireJSON = "json"

// Options configure Run.
type Options struct {
	// Prompts is the prompts file: chat JSONL or plain text, one prompt per line.
	Prompts string
	// Out is the output chat JSONL.
	Out string
	// BaseURL is where requests go (for a local model: the server started for it).
	BaseURL string
	// Teacher describes the teacher for provenance and the resume check: the endpoint
	// URL, or the local model directory.
	Teacher string
	// TeacherKind is "endpoint" or "local".
	TeacherKind string
	Model       string
	// SystemPrompt is the production system prompt, sent and written into every row.
	SystemPrompt string
	// APIKeyEnv names the environment variable with the key (never its value).
	APIKeyEnv   string
	Concurrency int
	// MaxTokens is the answer limit (0: the server's default).
	MaxTokens int
	// Temperature is sent when non-nil.
	Temperature *float64
	// N is the number of samples per prompt (0 is 1).
	N int
	// Require "json" drops answers that are not valid JSON.
	Require string
	// RefusalPattern is the refusal regex; empty disables the filter.
	RefusalPattern string
	// Timeout bounds each request; MaxRetries bounds the retries of each.
	Timeout    time.Duration
	MaxRetries int
	// BaseBackoff overrides the client's first backoff (tests).
	BaseBackoff time.Duration
	// EvalFraction > 0 splits the result into Out and EvalOut (no prompt on both sides).
	EvalFraction float64
	EvalOut      string
	SplitSeed    int64
	// SyncInterval is how often OUT and the state are fsynced (0: 1s).
	SyncInterval time.Duration
	// ProgressInterval is how often a progress event is emitted (0: 1s).
	ProgressInterval time.Duration
	// Abort, when done, abandons the requests in flight (a second Ctrl-C). Nil: never.
	Abort context.Context
	// Events receives progress events (from one goroutine at a time). Nil: none.
	Events func(Event)
	// Version is loractl's version, for provenance.
	Version string
}

func (o *Options) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInput, fmt.Sprintf(format, a...))
	}
	switch {
	case o.Prompts == "":
		return bad("the prompts file is required")
	case o.Out == "":
		return bad("-o OUT.jsonl is required")
	case o.Teacher == "":
		return bad("--teacher URL|MODEL_DIR is required")
	case o.Concurrency < 1 || o.Concurrency > 4096:
		return bad("--concurrency must be in 1..4096, got %d", o.Concurrency)
	case o.MaxTokens < 0:
		return bad("--max-tokens must be >= 0, got %d", o.MaxTokens)
	case o.N < 0 || o.N > 1000:
		return bad("--n must be in 1..1000, got %d", o.N)
	case o.MaxRetries < 0:
		return bad("--max-retries must be >= 0, got %d", o.MaxRetries)
	case o.Timeout < 0:
		return bad("--timeout must be >= 0, got %s", o.Timeout)
	case o.Require != "" && o.Require != RequireJSON:
		return bad("--require %q: the only check is json", o.Require)
	case math.IsNaN(o.EvalFraction) || o.EvalFraction < 0 || o.EvalFraction >= 1:
		return bad("--eval-fraction must be in [0, 1), got %g", o.EvalFraction)
	case o.EvalFraction > 0 && o.EvalOut == "":
		return bad("--eval-fraction needs --eval-out FILE")
	case o.EvalFraction == 0 && o.EvalOut != "":
		return bad("--eval-out needs --eval-fraction F")
	case o.EvalOut != "" && o.EvalOut == o.Out:
		return bad("--eval-out must differ from -o")
	}
	if t := o.Temperature; t != nil && (math.IsNaN(*t) || *t < 0 || *t > 2) {
		return bad("--temperature must be in [0, 2], got %g", *t)
	}
	if o.RefusalPattern != "" {
		if _, err := regexp.Compile(o.RefusalPattern); err != nil {
			return bad("--refusal-regex: %v", err)
		}
	}
	if o.N == 0 {
		o.N = 1
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = time.Second
	}
	if o.ProgressInterval <= 0 {
		o.ProgressInterval = time.Second
	}
	if o.Abort == nil {
		o.Abort = context.Background()
	}
	return nil
}

// Settings are what decides OUT's content. A rerun resumes only when they are the same;
// concurrency, timeouts, retries and the eval split may change between runs.
type Settings struct {
	Teacher            string   `json:"teacher"`
	TeacherKind        string   `json:"teacher_kind"`
	Model              string   `json:"model"`
	PromptsSHA256      string   `json:"prompts_sha256"`
	SystemPromptSHA256 string   `json:"system_prompt_sha256,omitempty"`
	MaxTokens          int      `json:"max_tokens"`
	Temperature        *float64 `json:"temperature,omitempty"`
	N                  int      `json:"n"`
	Require            string   `json:"require,omitempty"`
	RefusalPattern     string   `json:"refusal_pattern"`
}

// diff names the settings that differ, for the error that refuses to mix two runs.
func (s Settings) diff(o Settings) []string {
	var d []string
	add := func(name string, differ bool) {
		if differ {
			d = append(d, name)
		}
	}
	add("teacher", s.Teacher != o.Teacher || s.TeacherKind != o.TeacherKind)
	add("--model", s.Model != o.Model)
	add("the prompts file's content", s.PromptsSHA256 != o.PromptsSHA256)
	add("--system-prompt", s.SystemPromptSHA256 != o.SystemPromptSHA256)
	add("--max-tokens", s.MaxTokens != o.MaxTokens)
	add("--temperature", (s.Temperature == nil) != (o.Temperature == nil) ||
		(s.Temperature != nil && *s.Temperature != *o.Temperature))
	add("--n", s.N != o.N)
	add("--require", s.Require != o.Require)
	add("--refusal-regex", s.RefusalPattern != o.RefusalPattern)
	return d
}
