package data

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/dataset"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/iostreams"
)

// ConvertOptions are the inputs of `loractl data convert`.
type ConvertOptions struct {
	IO  *iostreams.IOStreams
	Ctx context.Context

	Input        string
	Output       string // "" or "-": stdout
	From         string
	SystemPrompt string // TEXT or @FILE
	MaxLineBytes int
	MaxErrors    int
	JSON         bool
	// Force replaces an existing output file (as split's --force does).
	Force bool
}

// NewCmdConvert builds `loractl data convert`. runF replaces convertRun in tests.
func NewCmdConvert(f *cmdutil.Factory, runF func(*ConvertOptions) error) *cobra.Command {
	opts := &ConvertOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "convert IN.jsonl [-o OUT.jsonl] [--from auto|alpaca|sharegpt|prompt-completion]",
		Short: "Convert Alpaca, ShareGPT or prompt/completion data to chat messages",
		Long: `Convert JSONL data to the chat messages format loractl trains on:

  alpaca             {"instruction", "input", "output"[, "system"]}
  sharegpt           {"conversations": [{"from": "human"|"gpt"|"system"|"tool", "value"}][, "system"]}
  prompt-completion  {"prompt", "completion"} (strings, or message lists)

With --from auto (the default) each line's format is detected from its keys; lines
already in the messages format pass through unchanged. Lines that cannot be converted
are listed with their line number and key and left out; the command then exits 1.`,
		Example: `  loractl data convert alpaca.jsonl -o train.jsonl
  loractl data convert sharegpt.jsonl --from sharegpt --system-prompt @prompt.txt -o train.jsonl`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			opts.Input = args[0]
			opts.Ctx = c.Context()
			if runF != nil {
				return runF(opts)
			}
			return convertRun(opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&opts.Output, "output", "o", "", "output JSONL file (default: stdout)")
	fl.StringVar(&opts.From, "from", dataset.FormatAuto, "input format: "+strings.Join(dataset.Formats, ", "))
	fl.StringVar(&opts.SystemPrompt, "system-prompt", "", "system prompt (TEXT or @FILE) to put first in every example, replacing the source's")
	fl.IntVar(&opts.MaxLineBytes, "max-line-bytes", dataset.DefaultMaxLineBytes, "longest line accepted, in bytes")
	fl.IntVar(&opts.MaxErrors, "max-errors", dataset.DefaultMaxListed, "errors to list (all are counted)")
	fl.BoolVar(&opts.JSON, "json", false, "print the summary (counts and errors) as JSON on stderr")
	fl.BoolVar(&opts.Force, "force", false, "overwrite an existing output file")
	return cmd
}

func convertRun(opts *ConvertOptions) error {
	ctx := opts.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	if err := requireFile(opts.Input); err != nil {
		return err
	}
	system, err := readTextFlag("system-prompt", opts.SystemPrompt)
	if err != nil {
		return err
	}
	copts := dataset.ConvertOptions{Input: opts.Input, From: opts.From, SystemPrompt: system,
		MaxLineBytes: opts.MaxLineBytes, MaxListed: opts.MaxErrors}

	out := opts.IO.Out
	var file *os.File
	if opts.Output != "" && opts.Output != "-" {
		if abs(opts.Output) == abs(opts.Input) {
			return cmdutil.Invalidf("-o %s would overwrite the input", opts.Output)
		}
		if _, err := os.Lstat(opts.Output); err == nil && !opts.Force {
			return cmdutil.Invalidf("%s exists (use --force to overwrite)", opts.Output)
		}
		// Written beside the target and renamed at the end: an interrupted conversion
		// never leaves a truncated file that looks complete.
		file, err = os.CreateTemp(filepath.Dir(opts.Output), "."+filepath.Base(opts.Output)+".*.tmp")
		if err != nil {
			return cmdutil.Invalid(err)
		}
		defer os.Remove(file.Name())
		out = file
	}
	res, err := dataset.Convert(ctx, copts, out)
	if file != nil {
		if cerr := file.Close(); err == nil && cerr != nil {
			err = cerr
		}
		// Nothing converted: no output file at all, rather than an empty one that a
		// later step would take for a (tiny) dataset.
		if err == nil && res.Converted > 0 {
			err = publish(file.Name(), opts.Output, opts.Force)
		}
	}
	if err != nil {
		return exitFor(err)
	}
	summary := opts.IO.ErrOut
	if opts.JSON {
		enc := json.NewEncoder(summary)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		dest := "stdout"
		if file != nil {
			dest = opts.Output
		}
		if res.Converted == 0 && file != nil {
			dest += " (nothing converted: not written)"
		}
		fmt.Fprintf(summary, "converted %s %s to %s%s\n", thousands(int64(res.Converted)), plural(res.Converted, "line", "lines"), dest, formats(res.Formats))
		if res.ErrorsTotal > 0 {
			fmt.Fprintf(summary, "%d %s could not be converted:\n", res.ErrorsTotal, plural(res.ErrorsTotal, "line", "lines"))
			writeErrors(summary, res.Errors, res.ErrorsTotal)
		}
	}
	if res.ErrorsTotal > 0 {
		return cmdutil.SilentExit(cmdutil.ExitInvalid)
	}
	if res.Converted == 0 {
		// An empty input is not a conversion that worked: with exit 0, an OUT left by an
		// earlier conversion would look like this one's result.
		return cmdutil.Invalidf("%s: no rows to convert (the file is empty or blank)", opts.Input)
	}
	return nil
}

func formats(m map[string]int) string {
	var parts []string
	for _, f := range []string{dataset.FormatAlpaca, dataset.FormatShareGPT, dataset.FormatPromptCompletion, dataset.FormatMessages} {
		if n := m[f]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", f, thousands(int64(n))))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// publish moves the finished temp file to out. Without force it links instead of
// renaming: link(2) fails when out exists, so a file created meanwhile (another
// conversion, an editor) is never replaced either.
func publish(tmp, out string, force bool) error {
	if force {
		return os.Rename(tmp, out)
	}
	err := os.Link(tmp, out)
	switch {
	case errors.Is(err, os.ErrExist):
		return cmdutil.Invalidf("%s exists (use --force to overwrite)", out)
	case err != nil:
		// A file system without hard links: check, then rename (a narrow race only there).
		if _, serr := os.Lstat(out); serr == nil {
			return cmdutil.Invalidf("%s exists (use --force to overwrite)", out)
		}
		return os.Rename(tmp, out)
	}
	return os.Remove(tmp)
}
