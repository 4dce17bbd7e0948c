package dataset

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// SplitOptions configure Split.
type SplitOptions struct {
	Input string
	// OutDir receives train.jsonl and eval.jsonl.
	OutDir string
	// EvalFraction of the examples go to eval, in (0, 1).
	EvalFraction float64
	Seed         int64
	// Force overwrites existing output files.
	Force        bool
	MaxLineBytes int
	MaxListed    int
}

// SplitResult says what Split wrote, or (Errors non-empty) why it wrote nothing.
type SplitResult struct {
	Train         string `json:"train"`
	Eval          string `json:"eval"`
	TrainExamples int    `json:"train_examples"`
	EvalExamples  int    `json:"eval_examples"`
	// Groups counts the distinct prompts: examples sharing one always land together.
	Groups      int         `json:"groups"`
	Errors      []LineError `json:"errors"`
	ErrorsTotal int         `json:"errors_total"`
}

// Split divides a valid chat JSONL file into train and eval files. The assignment depends
// only on the content and the seed (the same input and seed give the same files), and it
// is by prompt: duplicates and examples that share a prompt land on the same side, so the
// split cannot leak. Eval receives whole prompt groups, in an order fixed by the seed, up
// to round(EvalFraction × examples). A file with errors is not split: they are returned.
func Split(ctx context.Context, opts SplitOptions) (*SplitResult, error) {
	if opts.EvalFraction <= 0 || opts.EvalFraction >= 1 || math.IsNaN(opts.EvalFraction) {
		return nil, fmt.Errorf("%w: eval fraction must be in (0, 1), got %g", ErrInput, opts.EvalFraction)
	}
	if opts.MaxListed <= 0 {
		opts.MaxListed = DefaultMaxListed
	}
	res := &SplitResult{
		Train:  filepath.Join(opts.OutDir, "train.jsonl"),
		Eval:   filepath.Join(opts.OutDir, "eval.jsonl"),
		Errors: []LineError{},
	}
	in, inErr := os.Stat(opts.Input)
	for _, p := range []string{res.Train, res.Eval} {
		st, err := os.Stat(p)
		switch {
		case err != nil:
		case inErr == nil && os.SameFile(in, st):
			return nil, fmt.Errorf("%w: %s is the input: write the split to another directory", ErrInput, p)
		case !opts.Force:
			return nil, fmt.Errorf("%w: %s exists (use --force to overwrite)", ErrInput, p)
		}
	}
	// Pass 1: validate and count the examples of each prompt group.
	groups := map[hashKey]uint32{}
	total := 0
	err := eachExample(ctx, opts.Input, opts.MaxLineBytes, func(line int, raw []byte, f *facts, errs []lineIssue) error {
		for _, e := range errs {
			res.ErrorsTotal++
			if len(res.Errors) < opts.MaxListed {
				res.Errors = append(res.Errors, LineError{Line: line, Code: e.code, Path: e.path, Message: e.msg})
			}
		}
		if f != nil {
			groups[f.prompt]++
			total++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if res.ErrorsTotal > 0 {
		res.Train, res.Eval = "", "" // nothing written
		return res, nil
	}
	res.Groups = len(groups)
	if total < 2 {
		return nil, fmt.Errorf("%w: %s has %d example(s); at least 2 are needed to split", ErrInput, opts.Input, total)
	}
	toEval := pickEval(groups, opts.Seed, total, opts.EvalFraction)
	if len(toEval) == 0 {
		return nil, fmt.Errorf("%w: all %d examples of %s share one prompt: they cannot be split without leaking it into eval", ErrInput, total, opts.Input)
	}

	// Pass 2: write each example to its side, in input order.
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInput, err)
	}
	train, err := newAtomicFile(res.Train)
	if err != nil {
		return nil, err
	}
	defer train.abort()
	eval, err := newAtomicFile(res.Eval)
	if err != nil {
		return nil, err
	}
	defer eval.abort()
	changed := fmt.Errorf("%w: %s changed while it was being split; nothing was written", ErrInput, opts.Input)
	err = eachExample(ctx, opts.Input, opts.MaxLineBytes, func(line int, raw []byte, f *facts, _ []lineIssue) error {
		if f == nil {
			return changed
		}
		out := train
		if toEval[f.prompt] {
			out = eval
			res.EvalExamples++
		} else {
			res.TrainExamples++
		}
		return out.writeLine(raw)
	})
	if err != nil {
		return nil, err
	}
	if res.TrainExamples+res.EvalExamples != total {
		return nil, changed
	}
	if err := train.commit(); err != nil {
		return nil, err
	}
	return res, eval.commit()
}

// pickEval chooses the prompt groups that go to eval: groups in the order of a seeded hash
// of their key, each taken while it still fits under the target size.
func pickEval(groups map[hashKey]uint32, seed int64, total int, fraction float64) map[hashKey]bool {
	type ranked struct {
		rank uint64
		key  hashKey
		size int
	}
	var seedBytes [8]byte
	binary.LittleEndian.PutUint64(seedBytes[:], uint64(seed))
	order := make([]ranked, 0, len(groups))
	for k, n := range groups {
		h := sha256.Sum256(append(seedBytes[:], k[:]...))
		order = append(order, ranked{binary.LittleEndian.Uint64(h[:8]), k, int(n)})
	}
	slices.SortFunc(order, func(a, b ranked) int {
		switch {
		case a.rank < b.rank:
			return -1
		case a.rank > b.rank:
			return 1
		}
		return slices.Compare(a.key[:], b.key[:])
	})
	// At least one example each side: eval is never empty, train never given away.
	target := min(max(1, int(math.Round(fraction*float64(total)))), total-1)
	eval, n := map[hashKey]bool{}, 0
	for _, g := range order {
		if n+g.size <= target {
			eval[g.key] = true
			n += g.size
		}
		if n == target {
			break
		}
	}
	if n == 0 {
		// Every group is larger than the target: take the smallest that leaves train
		// something, so eval is never empty.
		best := -1
		for i, g := range order {
			if g.size < total && (best < 0 || g.size < order[best].size) {
				best = i
			}
		}
		if best >= 0 {
			eval[order[best].key] = true
		}
	}
	return eval
}

// eachExample streams a file's records through the line checker. f is nil for a record
// with errors (or too long). Blank lines are skipped, as the trainer skips them.
func eachExample(ctx context.Context, path string, maxLineBytes int, fn func(line int, raw []byte, f *facts, errs []lineIssue) error) error {
	file, err := OpenInput(path)
	if err != nil {
		return err
	}
	defer file.Close()
	var lc lineChecker
	var fb factBuilder
	lr := newLineReader(file, maxLineBytes)
	for n := 0; ; n++ {
		if n&4095 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		ln, err := lr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		if !ln.TooLong && isBlank(ln.Data) {
			continue
		}
		if ln.TooLong {
			if err := fn(ln.No, nil, nil, []lineIssue{{CodeLineTooLong, "", fmt.Sprintf("line is %d bytes, over the limit (raise it with --max-line-bytes)", ln.Size)}}); err != nil {
				return err
			}
			continue
		}
		res := lc.check(ln.Data)
		var f *facts
		if len(res.errors) == 0 {
			f = fb.build(res.msgs, 0)
		}
		if err := fn(ln.No, ln.Data, f, res.errors); err != nil {
			return err
		}
	}
}

// atomicFile is written beside its final path and renamed into place on commit, so an
// interrupted command never leaves half a file that looks complete.
type atomicFile struct {
	f    *os.File
	path string
	done bool
	buf  []byte
}

func newAtomicFile(path string) (*atomicFile, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, err
	}
	return &atomicFile{f: f, path: path}, nil
}

func (a *atomicFile) writeLine(b []byte) error {
	a.buf = append(append(a.buf, b...), '\n')
	if len(a.buf) >= 1<<20 {
		return a.flush()
	}
	return nil
}

func (a *atomicFile) flush() error {
	_, err := a.f.Write(a.buf)
	a.buf = a.buf[:0]
	return err
}

func (a *atomicFile) commit() error {
	if err := a.flush(); err != nil {
		return err
	}
	if err := a.f.Close(); err != nil {
		return err
	}
	a.done = true
	return os.Rename(a.f.Name(), a.path)
}

func (a *atomicFile) abort() {
	if !a.done {
		a.f.Close()
		os.Remove(a.f.Name())
	}
}
