// Package compare implements `loractl compare`: two runs on the same eval set, or a run
// against an OpenAI fine-tuning job's results CSV.
package compare

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/report"
	"github.com/loractl/loractl/run"
)

// Options are compare's flags and dependencies.
type Options struct {
	Factory *cmdutil.Factory
	Runs    []string
	// OpenAIResults is an OpenAI fine-tuning results CSV to compare the one run with.
	OpenAIResults string
	JSON          bool
	// Output, when set, also writes the comparison as an HTML page (curves on one chart).
	Output string
}

// NewCmdCompare builds the compare command.
func NewCmdCompare(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f}
	cmd := &cobra.Command{
		Use:   "compare RUN_A RUN_B | compare RUN --openai-results FILE",
		Short: "Compare two runs on the same eval set, or a run with an OpenAI fine-tune",
		Long: `Compare two runs evaluated on the same eval set: their verdicts, eval loss before
and after, each task metric of the two adapters paired by example index with a 95%
bootstrap interval of B − A, the settings that differ (resolved.json), and both runs'
loss curves. Runs whose eval sets differ are refused (exit 2): score both on one file
with ` + "`loractl eval RUN --data FILE`" + ` first.

With --openai-results, compare one run with an OpenAI fine-tuning job's results CSV
(step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy, extra columns
allowed): final and best losses and mean token accuracies of both, and their curves.

Tables go to stdout (--json: one JSON object); -o FILE also writes an HTML page with
the curves on one chart. RUN is a run id or a unique prefix of one.`,
		Example: `  loractl compare quickstart-1a2b3c4d5e quickstart-9f8e7d6c5b
  loractl compare qs-1a qs-9f -o compare.html
  loractl compare qs-1a --openai-results step_metrics.csv -o vs-openai.html`,
		Args: func(cmd *cobra.Command, args []string) error {
			if opts.OpenAIResults != "" {
				if len(args) != 1 {
					return cmdutil.Invalidf("compare --openai-results takes one run, got %d", len(args))
				}
				return nil
			}
			if len(args) != 2 {
				return cmdutil.Invalidf("compare takes two runs (or one run and --openai-results FILE), got %d", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Runs = args
			if runF != nil {
				return runF(opts)
			}
			return compareRun(opts)
		},
	}
	cmd.Flags().StringVar(&opts.OpenAIResults, "openai-results", "", "compare the run with an OpenAI fine-tuning results `CSV`")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the comparison as one JSON object")
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "", "also write the comparison as an HTML page to `FILE`")
	return cmd
}

// comparison is what both kinds of comparison can do.
type comparison interface {
	WriteText(io.Writer) error
	WriteHTML(io.Writer) error
}

func compareRun(o *Options) error {
	dirs := make([]string, len(o.Runs))
	for i, ref := range o.Runs {
		_, dir, err := cmdutil.RunDir(o.Factory, ref)
		if err != nil {
			return err
		}
		dirs[i] = dir
	}
	var c comparison
	var err error
	if o.OpenAIResults != "" {
		var res *report.OpenAIResults
		if res, err = report.ReadOpenAIResults(o.OpenAIResults); err == nil {
			c, err = report.CompareOpenAI(dirs[0], res)
		}
	} else {
		c, err = report.Compare(dirs[0], dirs[1])
	}
	if err != nil {
		var ie *report.InputError
		if errors.As(err, &ie) {
			return cmdutil.Invalid(err)
		}
		return err
	}
	if o.Output != "" {
		var inputs []string
		if o.OpenAIResults != "" {
			inputs = append(inputs, o.OpenAIResults)
		}
		if err := cmdutil.CheckOutput(o.Output, inputs, dirs); err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := c.WriteHTML(&buf); err != nil {
			return err
		}
		if err := run.WriteFileAtomic(o.Output, buf.Bytes(), 0o644); err != nil {
			return cmdutil.Invalidf("-o %s: %w", o.Output, err)
		}
	}
	out := o.Factory.IO.Out
	if o.JSON {
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	}
	if err := c.WriteText(out); err != nil {
		return err
	}
	if o.Output != "" {
		fmt.Fprintf(out, "\nwrote %s\n", o.Output)
	}
	return nil
}
