package dataset

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func readLines(t *testing.T, p string) []string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestSplit(t *testing.T) {
	lines := examples(0, 200, prod)
	// Duplicates and same-prompt variants must land with their originals.
	for i := 0; i < 20; i++ {
		lines = append(lines, lines[i*3])
		lines = append(lines, strings.Replace(lines[i*5], "answer number", "a different answer", 1))
	}
	in := writeLines(t, "all.jsonl", lines)
	split := func(dir string, seed int64) *SplitResult {
		res, err := Split(context.Background(), SplitOptions{Input: in, OutDir: dir, EvalFraction: 0.1, Seed: seed})
		if err != nil || res.ErrorsTotal > 0 {
			t.Fatalf("split: %v %+v", err, res)
		}
		return res
	}
	dir := filepath.Join(t.TempDir(), "out")
	res := split(dir, 42)
	train, eval := readLines(t, res.Train), readLines(t, res.Eval)
	if len(train)+len(eval) != len(lines) || res.TrainExamples != len(train) || res.EvalExamples != len(eval) {
		t.Fatalf("sizes: train %d eval %d of %d (%+v)", len(train), len(eval), len(lines), res)
	}
	if len(eval) != 24 || res.Groups != 200 {
		t.Errorf("eval has %d examples (want round(0.1 × 240) = 24), groups %d", len(eval), res.Groups)
	}
	// Each side is the input, in order, filtered to that side's lines (duplicates included).
	for _, side := range [][]string{train, eval} {
		want := slices.DeleteFunc(slices.Clone(lines), func(l string) bool { return !slices.Contains(side, l) })
		if !slices.Equal(side, want) {
			t.Error("a side is not the input filtered in order")
		}
	}

	t.Run("no leakage", func(t *testing.T) {
		r := check(t, Options{Train: res.Train, Eval: res.Eval})
		if w := r.Warning(CodeTrainEvalOverlap); w != nil {
			t.Errorf("the split leaks: %+v", w)
		}
	})
	t.Run("deterministic", func(t *testing.T) {
		again := split(filepath.Join(t.TempDir(), "again"), 42)
		if !slices.Equal(readLines(t, again.Eval), eval) || !slices.Equal(readLines(t, again.Train), train) {
			t.Error("the same input and seed gave another split")
		}
		other := split(filepath.Join(t.TempDir(), "other"), 7)
		if slices.Equal(readLines(t, other.Eval), eval) {
			t.Error("another seed gave the same split")
		}
	})
	t.Run("refuses to overwrite", func(t *testing.T) {
		_, err := Split(context.Background(), SplitOptions{Input: in, OutDir: dir, EvalFraction: 0.1})
		if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "--force") {
			t.Errorf("got %v", err)
		}
		if _, err := Split(context.Background(), SplitOptions{Input: in, OutDir: dir, EvalFraction: 0.2, Force: true}); err != nil {
			t.Errorf("--force: %v", err)
		}
	})
}

func TestSplitRefusesBadInput(t *testing.T) {
	lines := examples(0, 30, prod)
	lines[7] = "{"
	in := writeLines(t, "bad.jsonl", lines)
	dir := t.TempDir()
	res, err := Split(context.Background(), SplitOptions{Input: in, OutDir: dir, EvalFraction: 0.1})
	if err != nil || res.ErrorsTotal != 1 || res.Errors[0].Line != 8 || res.Errors[0].Code != CodeInvalidJSON {
		t.Fatalf("got %v %+v", err, res)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("wrote %v despite errors", entries)
	}
	for _, tt := range []struct {
		name string
		opts SplitOptions
		msg  string
	}{
		{"fraction 0", SplitOptions{Input: in, OutDir: dir}, "eval fraction"},
		{"fraction 1", SplitOptions{Input: in, OutDir: dir, EvalFraction: 1}, "eval fraction"},
		{"one example", SplitOptions{Input: writeLines(t, "one.jsonl", examples(0, 1, "")), OutDir: dir, EvalFraction: 0.5}, "at least 2"},
		{"missing input", SplitOptions{Input: filepath.Join(dir, "nope"), OutDir: dir, EvalFraction: 0.5}, "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Split(context.Background(), tt.opts); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %v, want ErrInput about %q", err, tt.msg)
			}
		})
	}
}

func TestPickEvalWithLargeGroups(t *testing.T) {
	// Three prompts of 5 examples each and a 10% target (2): the smallest group that
	// leaves train something goes to eval rather than nothing.
	groups := map[hashKey]uint32{{1}: 5, {2}: 5, {3}: 5}
	got := pickEval(groups, 1, 15, 0.1)
	if len(got) != 1 {
		t.Errorf("picked %d groups", len(got))
	}
	if got := pickEval(map[hashKey]uint32{{1}: 4}, 1, 4, 0.5); len(got) != 0 {
		t.Errorf("the only group went to eval")
	}
}

// TestSplitEdges: neither side is ever empty, the input is never overwritten, and a
// blank line inside the input is skipped as the trainer skips it.
func TestSplitEdges(t *testing.T) {
	three := examples(0, 3, prod)
	onePrompt := make([]string, 10)
	for i := range onePrompt {
		onePrompt[i] = strings.Replace(three[0], "answer number", fmt.Sprintf("answer %d", i), 1)
	}
	tests := []struct {
		name        string
		lines       []string
		fraction    float64
		intoInput   bool
		train, eval int
		msg         string // an ErrInput mentioning it
	}{
		{"eval fraction 0.9 of 3", three, 0.9, false, 1, 2, ""},
		{"blank line inside", append(append(slices.Clone(three[:2]), ""), three[2]), 0.3, false, 2, 1, ""},
		{"one prompt", onePrompt, 0.1, false, 0, 0, "share one prompt"},
		{"output is the input", three, 0.3, true, 0, 0, "is the input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := writeLines(t, "train.jsonl", tt.lines)
			out := filepath.Join(t.TempDir(), "out")
			if tt.intoInput {
				out = filepath.Dir(in)
			}
			res, err := Split(context.Background(), SplitOptions{Input: in, OutDir: out, EvalFraction: tt.fraction, Force: true})
			if tt.msg != "" {
				if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("got %v, want ErrInput mentioning %q", err, tt.msg)
				}
				if got := readLines(t, in); !slices.Equal(got, tt.lines) {
					t.Error("the input changed")
				}
				return
			}
			if err != nil || res.ErrorsTotal > 0 {
				t.Fatalf("split: %v %+v", err, res)
			}
			if res.TrainExamples != tt.train || res.EvalExamples != tt.eval {
				t.Errorf("train %d eval %d, want %d and %d", res.TrainExamples, res.EvalExamples, tt.train, tt.eval)
			}
		})
	}
}
