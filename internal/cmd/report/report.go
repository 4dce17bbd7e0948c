// Package report implements `loractl report RUN`: one run as a self-contained HTML page.
package report

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/report"
	"github.com/loractl/loractl/run"
)

// Options are report's flags and dependencies.
type Options struct {
	Factory *cmdutil.Factory
	RunID   string
	// Output is where the HTML goes: "" writes RUN_DIR/report.html and loss.png, "-"
	// stdout, anything else that file.
	Output string
}

// NewCmdReport builds the report command.
func NewCmdReport(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f}
	cmd := &cobra.Command{
		Use:   "report RUN",
		Short: "Write a run's report: one self-contained HTML page",
		Long: `Render a run as one self-contained HTML page that loads nothing from the network:
the verdict and the task metrics with their 95% intervals, the eval loss before and
after, the loss curves with the checkpoints and the selected one marked, the data-check
warnings, the config, and the generations of the base model and the adapter side by
side, the examples where the adapter scores lower first.

Without -o it writes RUN_DIR/report.html and RUN_DIR/loss.png and prints their paths.
RUN is a run id or a unique prefix of one.`,
		Example: `  loractl report quickstart-1a2b3c4d5e
  loractl report quickstart-1a -o /tmp/quickstart.html
  loractl report quickstart-1a -o - > report.html`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.RunID = args[0]
			if runF != nil {
				return runF(opts)
			}
			return reportRun(opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "", "write the HTML to `FILE` (- for stdout) instead of RUN_DIR/report.html")
	return cmd
}

func reportRun(o *Options) error {
	_, dir, err := cmdutil.RunDir(o.Factory, o.RunID)
	if err != nil {
		return err
	}
	out := o.Factory.IO.Out
	if o.Output == "" {
		if err := report.WriteFiles(dir); err != nil {
			return mapErr(err)
		}
		fmt.Fprintln(out, filepath.Join(dir, report.ReportFile))
		return nil
	}
	var buf bytes.Buffer
	if err := report.Write(dir, &buf); err != nil {
		return mapErr(err)
	}
	if o.Output == "-" {
		_, err := out.Write(buf.Bytes())
		return err
	}
	if err := cmdutil.CheckOutput(o.Output, nil, []string{dir}); err != nil {
		return err
	}
	if err := run.WriteFileAtomic(o.Output, buf.Bytes(), 0o644); err != nil {
		return cmdutil.Invalidf("-o %s: %w", o.Output, err)
	}
	fmt.Fprintln(out, o.Output)
	return nil
}

func mapErr(err error) error {
	var ie *report.InputError
	if errors.As(err, &ie) {
		return cmdutil.Invalid(err)
	}
	return err
}
