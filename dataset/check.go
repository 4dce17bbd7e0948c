// Package dataset checks, describes, splits and converts chat fine-tuning data: JSONL files
// with one {"messages": [{"role", "content"}, ...]} object per line. Every check streams
// each file once with bounded memory (a line is never buffered past the byte limit, and the
// duplicate index holds 128-bit hashes, not text), so it is cheap enough to run before
// every training run.
package dataset

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// DefaultMaxListed is how many errors a report lists by default; ErrorsTotal counts all.
const DefaultMaxListed = 50

// warningLines is how many example line numbers a warning lists.
const warningLines = 5

// ErrInput marks a failure caused by the inputs themselves (a missing file, a directory, a
// bad option) rather than by their content: the CLI exits 2 on it, not 1.
var ErrInput = errors.New("invalid input")

// Options configure a data check. Only Train is required.
type Options struct {
	Train string
	// Eval is the eval file; EvalSplit > 0 says the eval set is carved out of Train
	// instead. With neither, the check warns no_eval_set.
	Eval      string
	EvalSplit float64
	// SystemPrompt is the system prompt used in production; examples with another one
	// are reported (system_prompt_mismatch). Empty: not checked.
	SystemPrompt string
	// MaxLength is the training sequence length in tokens; 0 disables the length checks.
	MaxLength int
	// Epochs scales the token totals; 0 is taken as 1.
	Epochs float64
	// Tokenizer counts tokens with the real tokenizer and chat template. Nil: estimate.
	Tokenizer TokenCounter
	// MaxLineBytes is the per-line limit (line_too_long); 0 means DefaultMaxLineBytes.
	MaxLineBytes int
	// MaxListed caps Report.Errors; 0 means DefaultMaxListed.
	MaxListed int
	// Counting, when set, is called once the structural checks found no error, just
	// before the token count (the slow part) starts: the caller may start work that
	// overlaps the count (the trainer's imports, say).
	Counting func()
}

// Check checks the train file (and the eval file, if any) and returns the report. An error
// is returned only when the check itself could not run (unreadable input: wraps ErrInput;
// a failing tokenizer; ctx cancelled); problems in the data are in the report.
func Check(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	c := newChecker(opts)
	c.train = c.newFile(opts.Train, false)
	if err := c.scan(ctx, c.train); err != nil {
		return nil, err
	}
	if opts.Eval != "" {
		c.eval = c.newFile(opts.Eval, true)
		if err := c.scan(ctx, c.eval); err != nil {
			return nil, err
		}
	}
	if opts.Tokenizer != nil {
		if opts.Counting != nil && c.errorsTotal == 0 {
			opts.Counting()
		}
		if err := c.countTokens(ctx); err != nil {
			return nil, err
		}
	}
	return c.report(), nil
}

func (o *Options) validate() error {
	switch {
	case o.Train == "":
		return fmt.Errorf("%w: no train file given", ErrInput)
	case o.MaxLength < 0:
		return fmt.Errorf("%w: max length must be ≥ 0, got %d", ErrInput, o.MaxLength)
	case o.EvalSplit < 0 || o.EvalSplit >= 1:
		return fmt.Errorf("%w: eval split must be in [0, 1), got %g", ErrInput, o.EvalSplit)
	case o.Epochs < 0:
		return fmt.Errorf("%w: epochs must be ≥ 0, got %g", ErrInput, o.Epochs)
	case o.MaxLineBytes < 0:
		return fmt.Errorf("%w: max line bytes must be ≥ 0, got %d", ErrInput, o.MaxLineBytes)
	case math.IsNaN(o.EvalSplit) || math.IsNaN(o.Epochs) || math.IsInf(o.Epochs, 0):
		return fmt.Errorf("%w: eval split and epochs must be numbers", ErrInput)
	case o.Eval != "" && o.EvalSplit > 0:
		return fmt.Errorf("%w: an eval file and an eval split, not both (the trainer would split the train file and ignore the eval file)", ErrInput)
	}
	if o.Eval != "" {
		a, errA := os.Stat(o.Train)
		b, errB := os.Stat(o.Eval)
		if errA == nil && errB == nil && os.SameFile(a, b) {
			return fmt.Errorf("%w: the eval file is the train file (%s): evaluating on the training data says nothing about the fine-tune", ErrInput, o.Eval)
		}
	}
	if o.MaxListed <= 0 {
		o.MaxListed = DefaultMaxListed
	}
	if o.MaxLineBytes == 0 {
		o.MaxLineBytes = DefaultMaxLineBytes
	}
	if o.Epochs == 0 {
		o.Epochs = 1
	}
	return nil
}

// OpenInput opens a data file, refusing what cannot be one (missing, a directory) with an
// error that wraps ErrInput.
func OpenInput(path string) (*os.File, error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("%w: %s: no such file", ErrInput, path)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrInput, err)
	case st.IsDir():
		return nil, fmt.Errorf("%w: %s is a directory, expected a JSONL file", ErrInput, path)
	case !st.Mode().IsRegular():
		// The check, the token counter and the trainer each read the file: a pipe or
		// a device would give each of them different data.
		return nil, fmt.Errorf("%w: %s is not a regular file (a pipe or device cannot be read more than once); save the data to a file", ErrInput, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInput, err)
	}
	return f, nil
}

// scan makes the one streaming pass over a file.
func (c *checker) scan(ctx context.Context, fs *fileState) error {
	f, err := OpenInput(fs.name)
	if err != nil {
		return err
	}
	defer f.Close()
	lr := newLineReader(f, c.opts.MaxLineBytes)
	emptyFrom, empties := 0, 0
	for n := 0; ; n++ {
		if n&4095 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		ln, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", fs.name, err)
		}
		fs.bytes += ln.Size
		if !ln.TooLong && isBlank(ln.Data) {
			if empties == 0 {
				emptyFrom = ln.No
			}
			empties++
			continue
		}
		// Blank lines followed by a record sit inside the file. The trainer skips
		// them, but they often mean two files were joined badly: worth a look.
		for i := 0; i < empties; i++ {
			c.warnLine(fs, CodeBlankLines, emptyFrom+i)
		}
		empties = 0
		fs.records++
		if ln.TooLong {
			c.addError(fs, ln.No, CodeLineTooLong, "", fmt.Sprintf("line is %d bytes, over the limit of %d bytes (raise it with --max-line-bytes)", ln.Size, c.opts.MaxLineBytes))
			continue
		}
		res := c.lc.check(ln.Data)
		for _, e := range res.errors {
			c.addError(fs, ln.No, e.code, e.path, e.msg)
		}
		for _, w := range res.warnings {
			c.warnLine(fs, w.code, ln.No)
		}
		if len(res.errors) == 0 {
			c.example(fs, ln.No, res.msgs)
		}
	}
	return nil
}

// example feeds one valid example to the dataset-level checks and the stats.
func (c *checker) example(fs *fileState, line int, msgs []message) {
	f := c.fb.build(msgs, c.opts.MaxLength)
	fs.valid++
	fs.setValid(line)
	fs.messages.add(f.messages)
	for r, n := range f.roles {
		fs.roles[r] += n
	}
	if first, seen := fs.seen[f.full]; seen {
		fs.duplicates++
		c.warnPair(fs, CodeDuplicateExample, line, int(first))
	} else {
		fs.seen[f.full] = uint32(line)
	}
	switch {
	case fs.eval:
		if first, ok := c.train.seen[f.full]; ok {
			c.warnPair(fs, CodeTrainEvalOverlap, line, int(first))
		} else if first, ok := c.train.prompts[f.prompt]; ok {
			c.warnPair(fs, CodeTrainEvalOverlap, line, int(first))
		}
	case c.train.prompts != nil:
		if _, ok := c.train.prompts[f.prompt]; !ok {
			c.train.prompts[f.prompt] = uint32(line)
		}
	}
	fs.systemPrompt(f, line)
	if f.roles[roleAssistant] > 1 {
		fs.multiTurn++
		if len(fs.multiTurnLines) < warningLines {
			fs.multiTurnLines = append(fs.multiTurnLines, line)
		}
	}
	if c.prodSystem != nil && (!f.hasSystem || f.systemHash != *c.prodSystem) {
		c.warnLine(fs, CodeSystemPromptMismatch, line)
	}
	// Estimates are kept for the stats either way, but only warn from them when there
	// is no real tokenizer to ask.
	fs.est.add(f.estTotal, f.estKept, c.opts.MaxLength)
	if c.opts.Tokenizer == nil {
		c.lengthWarnings(fs, line, f.estTotal, f.estAssistant, f.estKept)
	}
}

// lengthWarnings reports truncation findings for one example's token counts.
func (c *checker) lengthWarnings(fs *fileState, line, total, assistant, kept int) {
	if c.opts.MaxLength <= 0 {
		return
	}
	if total > c.opts.MaxLength {
		c.warnLine(fs, CodeExceedsMaxLength, line)
	}
	if assistant > 0 && kept == 0 {
		c.warnLine(fs, CodeLabelsTruncatedAway, line)
	}
}
