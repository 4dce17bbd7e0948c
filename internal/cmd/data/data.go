// Package data implements `loractl data`: check, split and convert chat training data.
package data

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/dataset"
	"github.com/loractl/loractl/internal/cmdutil"
)

// NewCmdData builds the `data` command group.
func NewCmdData(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "data <command>",
		Short: "Check, split and convert chat training data",
		Long: `Work with chat fine-tuning data: JSONL files with one
{"messages": [{"role": ..., "content": ...}, ...]} object per line.

Data quality decides the result. "loractl data check" finds the mistakes that waste GPU
hours (broken lines, train/eval leakage, inconsistent system prompts, examples truncated
to nothing) before anything is launched; "loractl train" runs the same check first.`,
	}
	cmd.AddCommand(NewCmdCheck(f, nil))
	cmd.AddCommand(NewCmdSplit(f, nil))
	cmd.AddCommand(NewCmdConvert(f, nil))
	return cmd
}

// exitFor maps an error from the dataset package to the documented exit codes: problems
// with the inputs themselves (a missing file, a directory, a bad option) exit 2.
func exitFor(err error) error {
	if errors.Is(err, dataset.ErrInput) {
		return cmdutil.Invalid(errors.New(strings.TrimPrefix(err.Error(), dataset.ErrInput.Error()+": ")))
	}
	return cmdutil.Failed(err)
}

// readTextFlag reads a flag given as TEXT or @FILE.
func readTextFlag(name, v string) (string, error) {
	if !strings.HasPrefix(v, "@") {
		return v, nil
	}
	b, err := os.ReadFile(v[1:])
	if err != nil {
		return "", cmdutil.Invalidf("--%s %s: %v", name, v, err)
	}
	// Editors end a file with a newline; it is not part of the prompt production sends.
	return strings.TrimRight(string(b), "\r\n"), nil
}

// requireFile refuses a positional argument that is not a readable regular file, with
// exit 2, before any work starts.
func requireFile(path string) error {
	f, err := dataset.OpenInput(path)
	if err != nil {
		return exitFor(err)
	}
	return f.Close()
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
