// Package distill is `loractl distill`: training data from a teacher model.
package distill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/dataset"
	"github.com/loractl/loractl/distill"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/iostreams"
	"github.com/loractl/loractl/internal/pyenv"
)

// Options are the inputs of `loractl distill`.
type Options struct {
	IO  *iostreams.IOStreams
	Ctx context.Context

	Prompts      string
	Out          string
	Teacher      string
	Model        string
	SystemPrompt string
	APIKeyEnv    string
	Concurrency  int
	MaxTokens    int
	Temperature  float64
	TempSet      bool
	N            int
	EvalFraction float64
	EvalOut      string
	Seed         int64
	Require      string
	RefusalRegex string
	Timeout      time.Duration
	MaxRetries   int
	JSON         bool
	Python       string
	BatchSize    int
	Device       string

	// Signals replaces the process's SIGINT/SIGTERM (tests).
	Signals chan os.Signal
}

// NewCmdDistill builds `loractl distill`. runF replaces distillRun in tests.
func NewCmdDistill(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "distill PROMPTS -o OUT.jsonl --teacher URL|MODEL_DIR",
		Short: "Build training data from a teacher model's answers",
		Long: `Send every prompt of PROMPTS to a teacher model and write its answers as chat JSONL.

PROMPTS is chat JSONL ({"messages": [...]} ending with a user turn; a trailing assistant
turn is replaced by the teacher's) or plain text, one user prompt per line. The teacher is
an OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp server, TGI, OpenAI: give the URL,
e.g. http://127.0.0.1:8000/v1) or a local transformers model directory, served on
127.0.0.1 for the run and generated in batches, on the GPU when there is one.

--system-prompt (text or @file) is the production system prompt: it is sent to the teacher
and written into every row, replacing a prompt's own system turn. The API key is read from
the variable --api-key-env names and sent as a Bearer token; it is never written anywhere.

Nothing is lost or written twice: rate limits, 5xx, timeouts and connection errors are
retried with exponential backoff (Retry-After honoured); each row is appended whole and
recorded in OUT.distill-state, so running the same command again after a crash, kill -9
or Ctrl-C sends only what is not done. Ctrl-C finishes the requests in flight, writes
them and exits 130 (a second Ctrl-C abandons them; they are asked again next time).
Prompts that still fail go to OUT.failed.jsonl (exit 1); the same command retries them.

Answers are dropped, and counted by reason, when empty, cut by --max-tokens
(finish_reason length), refusals (--refusal-regex), invalid JSON under --require json, or
exact duplicates of another sample of the same prompt (--n). Then the data check runs on
OUT, and --eval-fraction F --eval-out FILE splits the rows into OUT and FILE by prompt, as
loractl data split does (only once nothing failed). OUT.distill.json records the teacher,
the prompts file's hash, the counts, tokens and wall time.

An OUT made by a different command (another teacher, model, prompts file, system prompt,
--max-tokens, --temperature, --n, --require or --refusal-regex) is refused with exit 2:
choose another -o or remove OUT and its state file.`,
		Example: `  loractl distill prompts.txt -o train.jsonl --teacher http://127.0.0.1:8000/v1 --model qwen2.5-72b \
      --system-prompt @prompt.txt --concurrency 32 --max-tokens 1024 --eval-fraction 0.1 --eval-out eval.jsonl
  OPENAI_API_KEY=... loractl distill prompts.jsonl -o train.jsonl --teacher https://api.openai.com/v1 \
      --model gpt-4o --api-key-env OPENAI_API_KEY --require json
  loractl distill prompts.txt -o train.jsonl --teacher ./models/big-teacher --max-tokens 512`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Prompts = args[0]
			opts.Ctx = c.Context()
			opts.TempSet = c.Flags().Changed("temperature")
			if runF != nil {
				return runF(opts)
			}
			return distillRun(opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&opts.Out, "output", "o", "", "output chat JSONL (required)")
	fl.StringVar(&opts.Teacher, "teacher", "", "OpenAI-compatible endpoint URL, or a local model directory (required)")
	fl.StringVar(&opts.Model, "model", "", "model name sent to the endpoint")
	fl.StringVar(&opts.SystemPrompt, "system-prompt", "", "production system prompt (TEXT or @FILE), sent and written into every row")
	fl.StringVar(&opts.APIKeyEnv, "api-key-env", "", "name of the environment variable holding the API key")
	fl.IntVar(&opts.Concurrency, "concurrency", 8, "requests in flight")
	fl.IntVar(&opts.MaxTokens, "max-tokens", 1024, "longest answer in tokens; longer ones are dropped (finish_reason length)")
	fl.Float64Var(&opts.Temperature, "temperature", 0, "sampling temperature (not sent unless given)")
	fl.IntVar(&opts.N, "n", 1, "samples per prompt")
	fl.Float64Var(&opts.EvalFraction, "eval-fraction", 0, "fraction of the rows for --eval-out, split by prompt")
	fl.StringVar(&opts.EvalOut, "eval-out", "", "eval file of the split")
	fl.Int64Var(&opts.Seed, "seed", 42, "seed of the eval split")
	fl.StringVar(&opts.Require, "require", "", "drop answers that fail this check: json")
	fl.StringVar(&opts.RefusalRegex, "refusal-regex", distill.DefaultRefusalPattern, `answers matching it are refusals and dropped ("" disables)`)
	fl.DurationVar(&opts.Timeout, "timeout", 2*time.Minute, "per-request timeout")
	fl.IntVar(&opts.MaxRetries, "max-retries", 6, "retries per request (429, 5xx, timeouts, connection errors)")
	fl.BoolVar(&opts.JSON, "json", false, "print progress events and the result as JSON lines")
	fl.StringVar(&opts.Python, "python", "", "interpreter for a local teacher (default: the trainer's)")
	fl.IntVar(&opts.BatchSize, "batch-size", 8, "local teacher: requests generated together")
	fl.StringVar(&opts.Device, "device", "", "local teacher: torch device (default: the GPU when there is one)")
	_ = cmd.MarkFlagRequired("output")
	_ = cmd.MarkFlagRequired("teacher")
	return cmd
}

func distillRun(o *Options) error {
	ctx := o.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	system := o.SystemPrompt
	if strings.HasPrefix(system, "@") {
		b, err := os.ReadFile(system[1:])
		if err != nil {
			return cmdutil.Invalidf("--system-prompt %s: %v", system, err)
		}
		system = string(b)
	}
	dopts := distill.Options{Prompts: o.Prompts, Out: o.Out, Teacher: o.Teacher, Model: o.Model, SystemPrompt: system,
		APIKeyEnv: o.APIKeyEnv, Concurrency: o.Concurrency, MaxTokens: o.MaxTokens, N: o.N, Require: o.Require,
		RefusalPattern: o.RefusalRegex, Timeout: o.Timeout, MaxRetries: o.MaxRetries, EvalFraction: o.EvalFraction,
		EvalOut: o.EvalOut, SplitSeed: o.Seed, TeacherKind: "endpoint"}
	if o.TempSet {
		t := o.Temperature
		dopts.Temperature = &t
	}
	if o.BatchSize < 1 {
		return cmdutil.Invalidf("--batch-size must be >= 1, got %d", o.BatchSize)
	}
	local := !strings.HasPrefix(o.Teacher, "http://") && !strings.HasPrefix(o.Teacher, "https://")
	if local {
		dopts.TeacherKind = "local"
		// The state records the teacher: the same directory from another working
		// directory is the same teacher.
		if abs, err := filepath.Abs(o.Teacher); err == nil {
			dopts.Teacher = abs
		}
		if o.APIKeyEnv != "" {
			return cmdutil.Invalidf("--api-key-env is for an endpoint; --teacher %s is a local model directory", o.Teacher)
		}
	}
	if err := distill.Preflight(dopts); err != nil {
		return exitFor(err)
	}

	// First signal: stop sending, finish what is in flight. Second: abandon it.
	sigs := o.Signals
	if sigs == nil {
		sigs = make(chan os.Signal, 2)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sigs)
	}
	gentle, stop := context.WithCancel(ctx)
	defer stop()
	abort, abandon := context.WithCancel(context.Background())
	defer abandon()
	out := &renderer{w: o.IO.Out, tty: o.IO.IsStdoutTTY() && !o.JSON, json: o.JSON}
	go func() {
		for n := 0; ; n++ {
			select {
			case <-sigs:
			case <-abort.Done():
				return
			}
			if n == 0 {
				out.note("stopping: finishing the requests in flight (Ctrl-C again to abandon them)")
				stop()
			} else {
				abandon()
				return
			}
		}
	}()

	if local {
		py := o.Python
		if py == "" {
			var err error
			if py, _, err = pyenv.Find(""); err != nil {
				return cmdutil.Invalidf("a local teacher needs the trainer's Python (torch, transformers): %v", err)
			}
		}
		out.note(fmt.Sprintf("loading the local teacher %s ...", o.Teacher))
		srv, err := distill.StartLocal(gentle, distill.LocalOptions{Python: py, ModelDir: o.Teacher, BatchSize: o.BatchSize,
			Device: o.Device, Stderr: o.IO.ErrOut})
		if err != nil {
			if gentle.Err() != nil {
				return &cmdutil.ExitError{Code: cmdutil.ExitInterrupted, Err: errors.New("interrupted while loading the local teacher")}
			}
			return exitFor(err)
		}
		defer srv.Close()
		dopts.BaseURL = srv.URL
		// Generation is batched on one device: more requests in flight than a batch or
		// two only wait in the server's queue.
		dopts.Concurrency = min(dopts.Concurrency, 2*o.BatchSize)
	}
	dopts.Abort = abort
	dopts.Events = out.event
	res, err := distill.Run(gentle, dopts)
	out.done()
	if res != nil {
		out.result(res)
	}
	return exitFor(err)
}

func exitFor(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, distill.ErrInput):
		return cmdutil.Invalid(errors.New(strings.TrimPrefix(err.Error(), distill.ErrInput.Error()+": ")))
	case errors.Is(err, distill.ErrInterrupted):
		return &cmdutil.ExitError{Code: cmdutil.ExitInterrupted, Err: errors.New("interrupted: what was in flight is written; run the same command again to continue")}
	case errors.Is(err, distill.ErrFailed):
		return cmdutil.Failed(errors.New(strings.TrimPrefix(err.Error(), distill.ErrFailed.Error()+": ")))
	}
	return cmdutil.Failed(err)
}

// renderer prints events: a live line on a terminal, a line every few seconds
// elsewhere, or JSON lines.
type renderer struct {
	w         io.Writer
	tty, json bool
	mu        sync.Mutex
	last      time.Time
	live      bool
}

func (r *renderer) event(e distill.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		b, _ := json.Marshal(e)
		fmt.Fprintf(r.w, "%s\n", b)
		return
	}
	switch e.Type {
	case "failed":
		r.clear()
		fmt.Fprintf(r.w, "failed (line %d): %s\n", e.Line, e.Error)
	case "start":
		if e.Resumed > 0 {
			r.clear()
			fmt.Fprintf(r.w, "resuming: %d of %d samples done by an earlier run\n", e.Resumed, e.Total)
		}
	case "progress", "end":
		line := fmt.Sprintf("distill  %d/%d  ok %d  filtered %d  failed %d  retries %d  %.1f rows/s  ETA %s",
			e.Done, e.Total, e.OK, sum(e.Filtered), e.Failed, e.Retries, e.Rate, eta(e.ETA))
		if r.tty {
			fmt.Fprintf(r.w, "\r\033[K%s", line)
			r.live = true
		} else if e.Type == "end" || time.Since(r.last) >= 10*time.Second {
			fmt.Fprintln(r.w, line)
			r.last = time.Now()
		}
	}
}

func (r *renderer) note(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		b, _ := json.Marshal(map[string]string{"type": "note", "message": msg})
		fmt.Fprintf(r.w, "%s\n", b)
		return
	}
	r.clear()
	fmt.Fprintln(r.w, msg)
}

func (r *renderer) clear() {
	if r.live {
		fmt.Fprint(r.w, "\r\033[K")
		r.live = false
	}
}

func (r *renderer) done() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live {
		fmt.Fprintln(r.w)
		r.live = false
	}
}

func (r *renderer) result(res *distill.Result) {
	if r.json {
		b, _ := json.Marshal(map[string]any{"type": "result", "already_complete": res.AlreadyComplete,
			"provenance": res.Provenance, "check": res.Check, "split": res.Split})
		fmt.Fprintf(r.w, "%s\n", b)
		return
	}
	p := res.Provenance
	if p == nil {
		return
	}
	w := r.w
	if res.AlreadyComplete {
		fmt.Fprintf(w, "%s is complete: an earlier run answered every prompt and split the rows (remove it and %s to start over)\n",
			res.Out, res.StatePath)
		return
	}
	fmt.Fprintf(w, "distilled %d prompts -> %s: %d rows", p.Prompts.Count, res.Out, p.Totals.OK)
	if n := sum(p.Totals.Filtered); n > 0 {
		fmt.Fprintf(w, ", %d filtered (%s)", n, counts(p.Totals.Filtered))
	}
	if p.LastRun.Failed > 0 {
		fmt.Fprintf(w, ", %d failed (%s)", p.LastRun.Failed, res.FailedPath)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  this run: %d sent, %d resumed, %d retries, %.1fs (%.1f rows/s)",
		p.LastRun.Sent, p.LastRun.Resumed, p.LastRun.Retries, p.LastRun.WallSec, p.LastRun.RowsPerSec)
	if p.LastRun.DuplicatePrompts > 0 {
		fmt.Fprintf(w, ", %d duplicate prompts skipped", p.LastRun.DuplicatePrompts)
	}
	fmt.Fprintf(w, "\n  tokens: %d prompt, %d completion (all runs)\n", p.Totals.PromptTokens, p.Totals.CompletionTokens)
	if s := res.Split; s != nil {
		fmt.Fprintf(w, "  split: %d train -> %s, %d eval -> %s (%d distinct prompts, none on both sides)\n",
			s.TrainExamples, s.Train, s.EvalExamples, s.Eval, s.Groups)
	}
	if c := res.Check; c != nil {
		writeCheck(w, c)
	} else if p.CheckError != "" {
		fmt.Fprintf(w, "  data check did not run: %s\n", p.CheckError)
	}
	fmt.Fprintf(w, "  provenance: %s\n", res.ProvenancePath)
}

// writeCheck prints the data check's summary: counts, the first errors, the warnings.
func writeCheck(w io.Writer, c *dataset.Report) {
	fmt.Fprintf(w, "  data check: %d examples, %d errors, %d warnings", c.Examples, c.ErrorsTotal, len(c.Warnings))
	if c.Stats.Eval != nil {
		fmt.Fprintf(w, " (eval: %d examples)", c.Stats.Eval.Examples)
	}
	fmt.Fprintln(w)
	for i, e := range c.Errors {
		if i == 5 {
			fmt.Fprintf(w, "    ... %d more errors (loractl data check %s)\n", c.ErrorsTotal-5, c.File)
			break
		}
		loc := ""
		if e.Line > 0 {
			loc = fmt.Sprintf("line %d: ", e.Line)
		}
		fmt.Fprintf(w, "    error [%s]: %s%s\n", e.Code, loc, e.Message)
	}
	for _, wn := range c.Warnings {
		fmt.Fprintf(w, "    warning [%s]: %s\n", wn.Code, wn.Message)
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func eta(s float64) string {
	if s <= 0 {
		return "-"
	}
	return (time.Duration(s) * time.Second).Round(time.Second).String()
}
