package data

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/dataset"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/iostreams"
	"github.com/loractl/loractl/internal/pyenv"
)

// CheckOptions are the inputs of `loractl data check`.
type CheckOptions struct {
	IO  *iostreams.IOStreams
	Ctx context.Context

	Train        string
	Eval         string
	EvalSplit    float64
	SystemPrompt string // TEXT or @FILE
	MaxLength    int
	Epochs       float64
	Tokenizer    string
	Python       string
	MaxLineBytes int
	MaxErrors    int
	JSON         bool

	// FindPython locates the interpreter for --tokenizer when --python is not given.
	FindPython func() (string, error)
}

// NewCmdCheck builds `loractl data check`. runF replaces checkRun in tests.
func NewCmdCheck(f *cmdutil.Factory, runF func(*CheckOptions) error) *cobra.Command {
	opts := &CheckOptions{
		IO: f.IO,
		FindPython: func() (string, error) {
			p, _, err := pyenv.Find("")
			return p, err
		},
	}
	cmd := &cobra.Command{
		Use:   "check TRAIN.jsonl [--eval EVAL.jsonl] [flags]",
		Short: "Find errors and risks in chat training data before training",
		Long: `Check a chat JSONL file (and its eval file) line by line and as a whole.

Errors (exit 1) name the line and the JSON path, e.g. messages[2].role; every error is
counted, the first --max-errors are listed. Warnings cover the dataset: too few
examples, duplicates, train/eval overlap, inconsistent or mismatched system prompts,
examples longer than --max-length or truncated to no assistant token, a chat template
that never emits an end token, no eval set.

Token counts use the real tokenizer and chat template with --tokenizer DIR (through
the trainer's Python environment); without it they are estimates, labelled as such.`,
		Example: `  loractl data check train.jsonl --eval eval.jsonl
  loractl data check train.jsonl --eval eval.jsonl --tokenizer ./model --max-length 2048
  loractl data check train.jsonl --system-prompt @prompts/production.txt --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Train = args[0]
			opts.Ctx = c.Context()
			if runF != nil {
				return runF(opts)
			}
			return checkRun(opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Eval, "eval", "", "eval JSONL file (checked too, and for overlap with train)")
	fl.Float64Var(&opts.EvalSplit, "eval-split", 0, "fraction of train the trainer holds out for eval (instead of --eval)")
	fl.StringVar(&opts.SystemPrompt, "system-prompt", "", "the production system prompt, as TEXT or @FILE")
	fl.IntVar(&opts.MaxLength, "max-length", 2048, "training sequence length in tokens (0: no length checks)")
	fl.Float64Var(&opts.Epochs, "epochs", 3, "epochs, for the total token count")
	fl.StringVar(&opts.Tokenizer, "tokenizer", "", "local tokenizer (model) directory for exact token counts")
	fl.StringVar(&opts.Python, "python", "", "Python interpreter for --tokenizer (default $LORACTL_PYTHON or the setup venv)")
	fl.IntVar(&opts.MaxLineBytes, "max-line-bytes", dataset.DefaultMaxLineBytes, "longest line accepted, in bytes")
	fl.IntVar(&opts.MaxErrors, "max-errors", dataset.DefaultMaxListed, "errors to list (all are counted)")
	fl.BoolVar(&opts.JSON, "json", false, "print the report as one JSON object")
	return cmd
}

func checkRun(opts *CheckOptions) error {
	ctx := opts.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	if opts.MaxLineBytes <= 0 || opts.MaxErrors <= 0 {
		return cmdutil.Invalidf("--max-line-bytes and --max-errors must be > 0")
	}
	for _, p := range []string{opts.Train, opts.Eval} {
		if p != "" {
			if err := requireFile(p); err != nil {
				return err
			}
		}
	}
	system, err := readTextFlag("system-prompt", opts.SystemPrompt)
	if err != nil {
		return err
	}
	copts := dataset.Options{
		Train:        opts.Train,
		Eval:         opts.Eval,
		EvalSplit:    opts.EvalSplit,
		SystemPrompt: system,
		MaxLength:    opts.MaxLength,
		Epochs:       opts.Epochs,
		MaxLineBytes: opts.MaxLineBytes,
		MaxListed:    opts.MaxErrors,
	}
	if opts.Tokenizer != "" {
		py := opts.Python
		if py == "" {
			if py, err = opts.FindPython(); err != nil {
				return cmdutil.Invalidf("--tokenizer needs the trainer's Python environment: %v", err)
			}
		}
		copts.Tokenizer = &dataset.PythonTokenCounter{Python: py, Dir: opts.Tokenizer, CacheDir: pyenv.TokenCacheDir()}
	}
	rep, err := dataset.Check(ctx, copts)
	if err != nil {
		return exitFor(err)
	}
	if opts.JSON {
		enc := json.NewEncoder(opts.IO.Out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		writeReport(opts.IO.Out, rep)
	}
	if rep.HasErrors() {
		return cmdutil.SilentExit(cmdutil.ExitInvalid)
	}
	return nil
}

// describe is the one-line verdict of a report.
func describe(rep *dataset.Report) string {
	s := fmt.Sprintf("%s examples", thousands(int64(rep.Examples)))
	if rep.EvalFile != "" && rep.Stats.Eval != nil {
		s += fmt.Sprintf(" (eval: %s)", thousands(int64(rep.Stats.Eval.Examples)))
	}
	return fmt.Sprintf("%s, %d %s, %d %s", s, rep.ErrorsTotal, plural(rep.ErrorsTotal, "error", "errors"),
		len(rep.Warnings), plural(len(rep.Warnings), "warning", "warnings"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
