// Package importcmd implements `loractl import`: bring a fine-tune from another service
// into a loractl run directory. `loractl import openai` reads OpenAI's fine-tuning files
// and job object.
package importcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/dataset"
	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/pyenv"
	"github.com/loractl/loractl/openaiimport"
	"github.com/loractl/loractl/plan"
)

// NewCmdImport builds the `import` command group.
func NewCmdImport(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import <source>",
		Short: "Bring a fine-tune from another service into a loractl run directory",
	}
	cmd.AddCommand(NewCmdOpenAI(f, nil))
	return cmd
}

// OpenAIOptions are the flags and dependencies of `loractl import openai`.
type OpenAIOptions struct {
	Factory *cmdutil.Factory
	Ctx     context.Context

	TrainingFile    string
	ValidationFile  string
	Job             string
	Model           string
	GPUMemory       string
	SkipUnsupported bool
	OutDir          string
	Force           bool
	JSON            bool
	// Manager builds the GPU manager (NVML in the binary, fakes in tests).
	Manager func() gpu.Manager
	// FindPython locates the trainer's interpreter, to count tokens with a local --model.
	FindPython func() (string, error)
}

// NewCmdOpenAI builds `loractl import openai`; runF replaces the work in tests.
func NewCmdOpenAI(f *cmdutil.Factory, runF func(*OpenAIOptions) error) *cobra.Command {
	opts := &OpenAIOptions{Factory: f, Manager: func() gpu.Manager { return gpu.NewNVML() },
		FindPython: func() (string, error) {
			p, _, err := pyenv.Find("")
			return p, err
		}}
	cmd := &cobra.Command{
		Use:   "openai --training-file FILE [--validation-file FILE] [--job JOB.json] -o DIR",
		Short: "Turn an OpenAI fine-tuning job into a loractl config and data",
		Long: `Read OpenAI's chat fine-tuning JSONL as it is and write DIR/loractl.yaml,
DIR/train.jsonl and DIR/eval.jsonl, then run the data check on them.

Rows keep their order and everything that trains: per-message weight (0/1), tools and
tool_calls, parallel_tool_calls; the legacy functions/function_call form becomes tools and
tool_calls; null content beside a tool call becomes "", text parts are joined, and JSON-string
tool arguments become the objects chat templates render. Preference (DPO) rows are not
trainable here yet (exit 2); rows with images are refused with their lines unless
--skip-unsupported drops and counts them; another format entirely exits 2 (see
loractl data convert).

--job maps the job object (GET /v1/fine_tuning/jobs/{id}) to the run: n_epochs, batch_size
(effective batch = batch_size × grad_accum), learning_rate_multiplier (× 1e-4, "auto" 2e-4),
seed, and the suffix as the run name; "auto" values follow the documented rules. Without
--model, open bases that fit this machine's GPU (or --gpu-memory) are proposed for the job's
base model, ranked, with the estimated peak memory; the first is written.

A local --model directory's own tokenizer and chat template count the tokens (through the
trainer's Python environment); otherwise the counts are estimates.

DIR is written atomically; an existing DIR is replaced only with --force, and only when it
holds nothing but an earlier import's files.`,
		Example: `  loractl import openai --training-file train.jsonl --validation-file valid.jsonl --job ftjob.json -o support/
  loractl import openai --training-file train.jsonl --model Qwen/Qwen2.5-7B-Instruct -o support/
  loractl import openai --training-file train.jsonl --gpu-memory 24GiB --skip-unsupported -o support/`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			opts.Ctx = c.Context()
			if runF != nil {
				return runF(opts)
			}
			return openAIRun(opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.TrainingFile, "training-file", "", "OpenAI chat fine-tuning JSONL (required)")
	fl.StringVar(&opts.ValidationFile, "validation-file", "", "OpenAI validation JSONL (default: the job's validation_file, found beside the job as FILE-ID.jsonl)")
	fl.StringVar(&opts.Job, "job", "", "the fine-tuning job JSON the API returns (hyperparameters, seed, suffix, base model)")
	fl.StringVar(&opts.Model, "model", "", "base model: hub id or local directory (default: propose one that fits)")
	fl.StringVar(&opts.GPUMemory, "gpu-memory", "", "fit the proposed bases in this much memory (24GiB, 80GB) instead of this machine's GPU")
	fl.BoolVar(&opts.SkipUnsupported, "skip-unsupported", false, "drop (and count) rows with images or other non-text parts instead of refusing them")
	fl.StringVarP(&opts.OutDir, "output", "o", "", "directory to write (required)")
	fl.BoolVar(&opts.Force, "force", false, "replace an output directory an earlier import wrote")
	fl.BoolVar(&opts.JSON, "json", false, "print the result (conversion counts, proposals, data check) as one JSON object")
	return cmd
}

func openAIRun(o *OpenAIOptions) error {
	ctx := o.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	opts := openaiimport.Options{
		TrainingFile: o.TrainingFile, ValidationFile: o.ValidationFile, JobFile: o.Job,
		Model: o.Model, SkipUnsupported: o.SkipUnsupported, OutDir: o.OutDir, Force: o.Force,
	}
	if o.GPUMemory != "" {
		n, err := plan.ParseBytes(o.GPUMemory)
		if err != nil {
			return cmdutil.Invalidf("--gpu-memory: %v", err)
		}
		opts.GPUMemory = n
	} else if o.Model == "" {
		opts.GPU = o.Manager()
	}
	opts.Tokenizer = tokenizer(o)
	res, err := openaiimport.Import(ctx, opts)
	switch {
	case errors.Is(err, openaiimport.ErrInput):
		return cmdutil.Invalid(errors.New(strings.TrimPrefix(err.Error(), openaiimport.ErrInput.Error()+": ")))
	case errors.Is(err, context.Canceled):
		return &cmdutil.ExitError{Code: cmdutil.ExitInterrupted, Err: errors.New("interrupted: nothing written")}
	case errors.Is(err, openaiimport.ErrNoFit):
		return &cmdutil.ExitError{Code: cmdutil.ExitNoFit, Err: err}
	case err != nil:
		return cmdutil.Failed(err)
	}
	out := o.Factory.IO.Out
	if o.JSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(res)
	}
	printResult(out, res)
	return nil
}

// tokenizer counts tokens with --model's own tokenizer and chat template when it is a local
// directory holding one and the trainer's Python is there; otherwise the check estimates.
func tokenizer(o *OpenAIOptions) dataset.TokenCounter {
	if o.Model == "" || o.FindPython == nil {
		return nil
	}
	found := false
	for _, name := range []string{"tokenizer_config.json", "tokenizer.json"} {
		if st, err := os.Stat(filepath.Join(o.Model, name)); err == nil && st.Mode().IsRegular() {
			found = true
		}
	}
	if !found {
		return nil
	}
	py, err := o.FindPython()
	if err != nil {
		return nil
	}
	return &dataset.PythonTokenCounter{Python: py, Dir: o.Model, CacheDir: pyenv.TokenCacheDir()}
}

func printResult(w io.Writer, r *openaiimport.Result) {
	fmt.Fprintf(w, "wrote %s\n", r.OutDir)
	printCounts(w, "train.jsonl", r.Train)
	if r.Eval != nil {
		printCounts(w, "eval.jsonl", *r.Eval)
	} else {
		fmt.Fprintf(w, "  eval.jsonl   none: no validation file (no before/after verdict without one)\n")
	}
	s := r.Settings
	fmt.Fprintf(w, "\nRun (loractl.yaml)\n")
	fmt.Fprintf(w, "  name           %s (%s)\n", s.Name, s.NameFrom)
	fmt.Fprintf(w, "  epochs         %d (%s)\n", s.Epochs, s.EpochsFrom)
	fmt.Fprintf(w, "  batch          %d = %d × grad_accum %d (%s)\n", s.Effective, s.BatchSize, s.GradAccum, s.BatchFrom)
	fmt.Fprintf(w, "  learning rate  %g (%s)\n", s.LearningRate, s.LRFrom)
	if s.Seed != nil {
		fmt.Fprintf(w, "  seed           %d (%s)\n", *s.Seed, s.SeedFrom)
	}
	fmt.Fprintf(w, "  max_length     %d (%s)\n", s.MaxLength, s.MaxLengthFrom)
	fmt.Fprintf(w, "\nBase model       %s (%s)\n", r.Model, r.ModelFrom)
	if r.Quantization == "4bit" {
		fmt.Fprintf(w, "                 as 4-bit QLoRA (quantization: 4bit)\n")
	}
	if r.Estimate != nil {
		fmt.Fprintf(w, "  estimated peak %s\n", gpu.FormatBytes(r.Estimate.PeakBytes))
	} else if r.EstimateNote != "" {
		fmt.Fprintf(w, "  %s\n", r.EstimateNote)
	}
	if r.AvailableBytes > 0 {
		fmt.Fprintf(w, "  judged against %s (%s)\n", gpu.FormatBytes(r.AvailableBytes), r.AvailableSource)
	} else if r.ModelFrom != "--model" {
		fmt.Fprintf(w, "  %s\n", r.AvailableSource)
	}
	if len(r.Proposals) > 0 {
		fmt.Fprintf(w, "  proposals for size class %s (a starting point to measure, not an equivalent):\n", r.Class.Label)
		for i, p := range r.Proposals {
			if i == 6 {
				break
			}
			q, v := "", ""
			if p.Quantization == "4bit" {
				q = ", 4-bit QLoRA"
			}
			if p.Verdict != "" {
				v = ", " + string(p.Verdict)
			}
			fmt.Fprintf(w, "    %d. %-36s %5.1fB  peak %s%s%s\n", i+1, p.Model, p.Params, gpu.FormatBytes(p.PeakBytes), q, v)
		}
	}
	printCheck(w, r.Check)
	fmt.Fprintf(w, "\nNext: loractl train %s   (docs/migrate-from-openai.md)\n", r.Config)
}

func printCounts(w io.Writer, name string, c openaiimport.Counts) {
	fmt.Fprintf(w, "  %-12s %d rows (%d as given", name, c.Rows, c.Unchanged)
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(c.LegacyFunctions, "legacy functions rows converted to tools")
	add(c.ArgumentsDecoded, "tool arguments decoded")
	add(c.NullContent, "null contents beside tool calls set to \"\"")
	add(c.TextParts, "rows with text parts joined")
	if len(parts) > 0 {
		fmt.Fprintf(w, "; %s", strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, ")\n")
	var notes []string
	if c.Tools > 0 {
		notes = append(notes, fmt.Sprintf("%d rows with tools, %d tool calls", c.Tools, c.ToolCalls))
	}
	if c.ParallelToolCalls > 0 {
		notes = append(notes, fmt.Sprintf("%d rows with parallel_tool_calls (kept, not used in training)", c.ParallelToolCalls))
	}
	if c.Weight0Turns > 0 {
		notes = append(notes, fmt.Sprintf("%d assistant turns with weight 0 (context, not trained)", c.Weight0Turns))
	}
	if c.Skipped > 0 {
		notes = append(notes, fmt.Sprintf("%d rows with images skipped (lines %s)", c.Skipped, joinInts(c.SkippedLines, 10)))
	}
	for _, n := range notes {
		fmt.Fprintf(w, "               %s\n", n)
	}
}

// printCheck is the data check's summary: the verdict line, the warnings and the token
// counts, as `loractl data check` reports them.
func printCheck(w io.Writer, rep *dataset.Report) {
	if rep == nil {
		return
	}
	st := rep.Stats
	evalN := ""
	if st.Eval != nil {
		evalN = fmt.Sprintf(" (eval: %d)", st.Eval.Examples)
	}
	fmt.Fprintf(w, "\nData check: %d examples%s, %d errors, %d warnings\n", rep.Examples, evalN, rep.ErrorsTotal, len(rep.Warnings))
	for _, wa := range rep.Warnings {
		where := ""
		if wa.File != "" {
			where = " [eval]"
		}
		fmt.Fprintf(w, "  %s%s: %s\n", wa.Code, where, wa.Message)
	}
	t := st.Tokens
	label := ""
	if t.Estimated {
		label = " (estimated: no tokenizer; loractl train counts with the model's)"
	}
	fmt.Fprintf(w, "  tokens/example p50 %d, p95 %d, max %d%s\n", t.PerExample.P50, t.PerExample.P95, t.PerExample.Max, label)
	fmt.Fprintf(w, "  tokens in total %d for %g epochs, %d assistant tokens per epoch\n", t.Total, t.Epochs, t.AssistantPerEpoch)
	if tpl := t.Template; tpl != nil {
		eos := "ends assistant turns with " + tpl.EOSToken
		if !tpl.EndsWithEOS {
			eos = "does NOT end assistant turns with an end token"
		}
		markers := "no generation markers"
		if tpl.GenerationMarkers {
			markers = "generation markers"
		}
		fmt.Fprintf(w, "  chat template  %s; %s (counted with %s)\n", markers, eos, tpl.Tokenizer)
	}
}

func joinInts(v []int, max int) string {
	var s []string
	for i, n := range v {
		if i == max {
			s = append(s, "…")
			break
		}
		s = append(s, fmt.Sprint(n))
	}
	return strings.Join(s, ", ")
}
