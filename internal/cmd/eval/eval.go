// Package eval implements `loractl eval`: evaluate a run's adapter, or one of its
// checkpoints, on its eval set or another file, with its metrics or others.
package eval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/goccy/go-yaml"
	"github.com/spf13/cobra"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/pyenv"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/runner"
	"github.com/loractl/loractl/taskeval"
)

// Options are eval's flags and dependencies.
type Options struct {
	Factory     *cmdutil.Factory
	RunID       string
	Checkpoint  int
	Data        string
	Metrics     []string
	MaxExamples int
	JSON        bool
	// Against is "openai:MODEL": compare with that model instead of the base.
	Against     string
	Endpoint    string
	APIKeyEnv   string
	Concurrency int
	// ScriptDir overrides where eval_task.py is found (tests); "" installs the
	// embedded scripts into the run store.
	ScriptDir string
}

// NewCmdEval builds the eval command.
func NewCmdEval(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f}
	cmd := &cobra.Command{
		Use:   "eval RUN",
		Short: "Evaluate a run's adapter against its base: generations, task metrics, adopt verdict",
		Long: `Generate with the base model and with the adapter for each eval prompt, score both
with the task metrics, and decide with a paired bootstrap whether the adapter is
better: adopt, do_not_adopt or inconclusive (docs/evaluation.md).

Without flags this repeats the run's own evaluation (runs/RUN/eval/). Another
checkpoint, data file, metric set or example count writes runs/RUN/eval-<what
differs>/, so the end-of-training evaluation is never overwritten.

--metric takes a kind (exact, contains, json_valid, chrf, rouge_l), KIND:ARG
(regex:PATTERN, json_schema:FILE, python:FILE.py:function) or a YAML mapping
('{judge: {endpoint: http://127.0.0.1:8080/v1, model: m}}'); relative paths are
relative to the working directory. The judge's calls are made by loractl.

--against openai:MODEL compares the adapter with another model instead of its
base: each eval prompt goes to MODEL at an OpenAI-compatible endpoint (OpenAI's
API by default, key in $OPENAI_API_KEY), and its replies are scored, judged and
decided on exactly as the base model's would be. The way to check a local adapter
against the OpenAI fine-tune it replaces (docs/migrate-from-openai.md).`,
		Example: `  loractl eval my-adapter-1a2b3c4d5e
  loractl eval my-adapter-1a2b3c4d5e --checkpoint 200
  loractl eval my-adapter-1a2b3c4d5e --data data/test.jsonl --metric exact --metric chrf
  loractl eval my-adapter-1a2b3c4d5e --metric 'python:score.py:score' --json
  loractl eval my-adapter-1a2b3c4d5e --against openai:ft:gpt-4o-mini-2024-07-18:acme::9xYz`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.RunID = args[0]
			if cmd.Flags().Changed("checkpoint") && opts.Checkpoint < 1 {
				return cmdutil.Invalidf("--checkpoint must be a step >= 1, got %d", opts.Checkpoint)
			}
			if cmd.Flags().Changed("max-examples") && opts.MaxExamples < 1 {
				return cmdutil.Invalidf("--max-examples must be >= 1, got %d", opts.MaxExamples)
			}
			if err := checkAgainstFlags(cmd, opts); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return evalRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&opts.Checkpoint, "checkpoint", 0, "evaluate checkpoints/checkpoint-STEP instead of adapter/")
	fl.StringVar(&opts.Data, "data", "", "a chat JSONL to evaluate on instead of the run's eval set (a held-out test file)")
	fl.StringArrayVar(&opts.Metrics, "metric", nil, "a metric to score with instead of the run's eval.metrics (repeatable; the first decides)")
	fl.IntVar(&opts.MaxExamples, "max-examples", 0, "how many examples to generate for (default: the run's eval.max_examples)")
	fl.BoolVar(&opts.JSON, "json", false, "print summary.json as the last line")
	fl.StringVar(&opts.Against, "against", "", "compare with openai:MODEL (an OpenAI-compatible endpoint's model) instead of the base model")
	fl.StringVar(&opts.Endpoint, "endpoint", OpenAIEndpoint, "the --against model's OpenAI-compatible API root")
	fl.StringVar(&opts.APIKeyEnv, "api-key-env", "", "environment variable holding the --against endpoint's key (default OPENAI_API_KEY for OpenAI's API, none otherwise)")
	fl.IntVar(&opts.Concurrency, "concurrency", taskeval.DefaultAgainstConcurrency, "requests to the --against model in flight at once")
	return cmd
}

func evalRun(ctx context.Context, o *Options) error {
	f := o.Factory
	store, err := f.Store()
	if err != nil {
		return err
	}
	m, err := cmdutil.RunManifest(store, o.RunID)
	if err != nil {
		return err
	}
	dir := store.Dir(m.RunID)
	var metrics []config.MetricConfig
	if len(o.Metrics) > 0 {
		if metrics, err = ParseMetricFlags(o.Metrics); err != nil {
			return cmdutil.Invalid(err)
		}
	}
	if o.Data != "" {
		if fi, err := os.Stat(o.Data); err != nil || !fi.Mode().IsRegular() {
			return cmdutil.Invalidf("--data %s: not a readable file", o.Data)
		}
	}
	pyName, env := runSettings(dir, m)
	py, _, err := pyenv.Find(pyName)
	if err != nil {
		return cmdutil.Invalid(fmt.Errorf("%w (see `loractl doctor`)", err))
	}
	scripts := o.ScriptDir
	if scripts == "" {
		if scripts, err = runner.EnsureScripts(store.Base); err != nil {
			return cmdutil.Failed(fmt.Errorf("install the evaluation script: %w", err))
		}
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	what := "adapter/"
	if o.Checkpoint > 0 {
		what = fmt.Sprintf("checkpoint-%d", o.Checkpoint)
	}
	on := "its eval set"
	if o.Data != "" {
		on = o.Data
	}
	errOut := f.IO.ErrOut
	against, err := o.against(errOut)
	if err != nil {
		return err
	}
	other := "base"
	if against != nil {
		other = against.Label
	}
	fmt.Fprintf(errOut, "evaluating %s %s on %s: %s and adapter answer each prompt\n", m.RunID, what, on, other)
	res, err := taskeval.RunOnDemand(ctx, taskeval.RunOptions{
		RunDir: dir, Python: py, ScriptDir: scripts, Checkpoint: o.Checkpoint, Data: o.Data,
		Metrics: metrics, MaxExamples: o.MaxExamples, OnEvent: progress(errOut), Judge: runner.JudgeOptions, Env: env,
		Against: against,
	})
	var inErr *taskeval.InputError
	switch {
	case errors.As(err, &inErr):
		return cmdutil.Invalid(err)
	case errors.Is(err, taskeval.ErrInterrupted):
		fmt.Fprintf(errOut, "evaluation interrupted; earlier results are unchanged\n")
		return cmdutil.SilentExit(cmdutil.ExitInterrupted)
	case err != nil:
		return cmdutil.Failed(err)
	}
	if res.JudgeErr != nil {
		f.Log.Warn().Err(res.JudgeErr).Msg("judge")
	}
	if res.Dir == filepath.Join(dir, taskeval.Dir) {
		if err := recordVerdict(dir, res.Summary); err != nil {
			f.Log.Warn().Err(err).Msg("the manifest keeps its earlier verdict")
		}
	}
	w := f.IO.Out
	if !o.JSON {
		fmt.Fprintf(w, "%s %s: %d examples\n", m.RunID, res.Summary.Checkpoint, res.Summary.N)
		for _, l := range res.Summary.Lines() {
			fmt.Fprintln(w, l)
		}
		fmt.Fprintf(w, "  files      %s\n", res.Dir)
		return nil
	}
	b, err := json.Marshal(res.Summary)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s\n", b)
	return nil
}

// recordVerdict makes the run's own evaluation, done again, the manifest's verdict
// (a detached run summarised without its judge gets the judge's verdict this way).
func recordVerdict(dir string, s *taskeval.Summary) error {
	lock, err := run.LockDir(dir)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	m, err := run.ReadManifest(dir)
	if err != nil || m.Result == nil || m.State != run.StateCompleted {
		return err
	}
	runner.FoldSummary(m.Result, s)
	return run.WriteManifest(dir, m)
}

// progress prints the script's generation progress as plain lines.
func progress(w io.Writer) func(json.RawMessage) {
	return func(raw json.RawMessage) {
		var e struct {
			Type, Phase, Message string
			Done, Total          int
		}
		if json.Unmarshal(raw, &e) != nil {
			return
		}
		switch e.Type {
		case "generate":
			fmt.Fprintf(w, "  generating (%s) %d/%d\n", e.Phase, e.Done, e.Total)
		case run.EventWarning:
			fmt.Fprintf(w, "  warning    %s\n", e.Message)
		}
	}
}

// ParseMetricFlags turns --metric values into metrics, validated like eval.metrics:
// KIND, KIND:ARG or a YAML mapping. Relative paths are relative to the working dir.
func ParseMetricFlags(flags []string) ([]config.MetricConfig, error) {
	items := make([]config.MetricItem, len(flags))
	var problems []string
	for i, raw := range flags {
		key := "--metric#" + strconv.Itoa(i)
		var v any = raw
		switch {
		case strings.HasPrefix(strings.TrimSpace(raw), "{"):
			var m map[string]any
			if err := yaml.Unmarshal([]byte(raw), &m); err != nil {
				problems = append(problems, fmt.Sprintf("--metric %s: not a YAML mapping: %v", raw, err))
				continue
			}
			v = m
		case strings.Contains(raw, ":"):
			kind, arg, _ := strings.Cut(raw, ":")
			v = map[string]any{kind: arg}
		}
		items[i] = config.MetricItem{Key: key, Value: v}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	out := config.ParseMetrics(items, abs, func(key, msg string) {
		i, sub := metricIndex(key)
		where := "--metric " + flags[i]
		if sub != "" {
			where += " (" + sub + ")"
		}
		problems = append(problems, where+": "+msg)
	})
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	return out, nil
}

// metricIndex splits "--metric#2.judge.model" into 2 and "judge.model".
func metricIndex(key string) (int, string) {
	rest := strings.TrimPrefix(key, "--metric#")
	num, sub, _ := strings.Cut(rest, ".")
	i, _ := strconv.Atoi(num)
	return i, sub
}

// runSettings reads what the run's config says about its interpreter and environment:
// python: (resolved against the config's directory, like train resolves it; "" when
// it names none) and env.set, which the evaluation gets like the trainer did.
func runSettings(dir string, m *run.Manifest) (python string, env map[string]string) {
	b, err := os.ReadFile(filepath.Join(dir, run.ConfigFile))
	if err != nil {
		return "", nil
	}
	var c struct {
		Python string `yaml:"python"`
		Env    struct {
			Set map[string]any `yaml:"set"`
		} `yaml:"env"`
	}
	if yaml.Unmarshal(b, &c) != nil {
		return "", nil
	}
	for k, v := range c.Env.Set {
		if env == nil {
			env = map[string]string{}
		}
		env[k] = fmt.Sprint(v)
	}
	p := c.Python
	if strings.HasPrefix(p, "./") || strings.HasPrefix(p, "../") {
		p = filepath.Join(filepath.Dir(m.ConfigPath), p)
	}
	return p, env
}
