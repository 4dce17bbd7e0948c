package data

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/dataset"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/iostreams"
)

// SplitOptions are the inputs of `loractl data split`.
type SplitOptions struct {
	IO  *iostreams.IOStreams
	Ctx context.Context

	Input        string
	OutDir       string
	EvalFraction float64
	Seed         int64
	Force        bool
	MaxLineBytes int
	JSON         bool
}

// NewCmdSplit builds `loractl data split`. runF replaces splitRun in tests.
func NewCmdSplit(f *cmdutil.Factory, runF func(*SplitOptions) error) *cobra.Command {
	opts := &SplitOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "split IN.jsonl -o DIR [--eval-fraction 0.1] [--seed 42]",
		Short: "Split chat data into train and eval files without leakage",
		Long: `Split a chat JSONL file into DIR/train.jsonl and DIR/eval.jsonl.

The split is deterministic (the same file and seed give the same split) and made by
prompt: duplicates and examples that share a prompt always land on the same side, so
the eval set cannot contain a question the model was trained on. A file with errors is
not split (fix it first; see loractl data check).`,
		Example: `  loractl data split all.jsonl --eval-fraction 0.1 --seed 42 -o data/`,
		Args:    cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Input = args[0]
			opts.Ctx = c.Context()
			if runF != nil {
				return runF(opts)
			}
			return splitRun(opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&opts.OutDir, "output", "o", "", "directory for train.jsonl and eval.jsonl (required)")
	fl.Float64Var(&opts.EvalFraction, "eval-fraction", 0.1, "fraction of the examples for eval, in (0, 1)")
	fl.Int64Var(&opts.Seed, "seed", 42, "seed of the assignment")
	fl.BoolVar(&opts.Force, "force", false, "overwrite existing output files")
	fl.IntVar(&opts.MaxLineBytes, "max-line-bytes", dataset.DefaultMaxLineBytes, "longest line accepted, in bytes")
	fl.BoolVar(&opts.JSON, "json", false, "print the result as one JSON object")
	_ = cmd.MarkFlagRequired("output")
	return cmd
}

func splitRun(opts *SplitOptions) error {
	ctx := opts.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	if opts.OutDir == "" {
		return cmdutil.Invalidf("-o DIR is required")
	}
	if err := requireFile(opts.Input); err != nil {
		return err
	}
	res, err := dataset.Split(ctx, dataset.SplitOptions{
		Input: opts.Input, OutDir: opts.OutDir, EvalFraction: opts.EvalFraction,
		Seed: opts.Seed, Force: opts.Force, MaxLineBytes: opts.MaxLineBytes,
	})
	if err != nil {
		return exitFor(err)
	}
	if opts.JSON {
		enc := json.NewEncoder(opts.IO.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	}
	if res.ErrorsTotal > 0 {
		if !opts.JSON {
			fmt.Fprintf(opts.IO.ErrOut, "%s: %d %s; nothing written:\n", opts.Input, res.ErrorsTotal, plural(res.ErrorsTotal, "error", "errors"))
			writeErrors(opts.IO.ErrOut, res.Errors, res.ErrorsTotal)
		}
		return cmdutil.SilentExit(cmdutil.ExitInvalid)
	}
	if !opts.JSON {
		fmt.Fprintf(opts.IO.Out, "wrote %s (%s examples) and %s (%s examples); %s distinct prompts, none shared between them\n",
			res.Train, thousands(int64(res.TrainExamples)), res.Eval, thousands(int64(res.EvalExamples)), thousands(int64(res.Groups)))
	}
	return nil
}
