// Package taskeval turns a run's task evaluation (the trainer's generations of base
// and adapter, their per-example scores and losses) into the adoption verdict: a seeded
// paired bootstrap of the per-example difference, adopt only when the 95% interval
// clears the required improvement. It writes eval/summary.json (docs/evaluation.md).
package taskeval

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/loractl/loractl/run"
)

// File names inside an eval directory (runs/<id>/eval/).
const (
	GenerationsFile   = "generations.jsonl"
	ExampleLossesFile = "example_losses.json"
	SummaryFile       = "summary.json"
	// Dir is the training-time evaluation's directory inside a run directory.
	Dir = "eval"
)

// Stop reasons of a generation.
const (
	StoppedEOS       = "eos"
	StoppedMaxTokens = "max_tokens"
)

// Judge winners.
const (
	WinnerBase    = "base"
	WinnerAdapter = "adapter"
	WinnerTie     = "tie"
)

// Row is one eval example's generations, as the trainer writes it.
type Row struct {
	Index int `json:"index"`
	// Messages is the prompt: the example's messages without the reference turn.
	Messages  json.RawMessage `json:"messages"`
	Reference string          `json:"reference"`
	Base      Side            `json:"base"`
	Adapter   Side            `json:"adapter"`
	// Judge is the LLM judge's verdict on the pair, added by the controller.
	Judge *Judgement `json:"judge,omitempty"`
}

// Side is one model's answer and its scores.
type Side struct {
	Text    string             `json:"text"`
	Tokens  int                `json:"tokens"`
	Stopped string             `json:"stopped"`
	Scores  map[string]float64 `json:"scores"`
	// Errors holds the metrics that failed on this example, with the error: such a
	// metric has no score here (never a silent 0).
	Errors map[string]string `json:"errors,omitempty"`
}

// UnmarshalJSON reads a side; a score written as null (a metric that gave no number)
// becomes an error of that metric rather than a 0.
func (s *Side) UnmarshalJSON(b []byte) error {
	var raw struct {
		Text    string              `json:"text"`
		Tokens  int                 `json:"tokens"`
		Stopped string              `json:"stopped"`
		Scores  map[string]*float64 `json:"scores"`
		Errors  map[string]string   `json:"errors"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*s = Side{Text: raw.Text, Tokens: raw.Tokens, Stopped: raw.Stopped, Errors: raw.Errors, Scores: make(map[string]float64, len(raw.Scores))}
	for k, v := range raw.Scores {
		if v == nil {
			if s.Errors == nil {
				s.Errors = map[string]string{}
			}
			if _, ok := s.Errors[k]; !ok {
				s.Errors[k] = "the score is null"
			}
			continue
		}
		s.Scores[k] = *v
	}
	return nil
}

// Judgement is the judge's verdict on one row. A failed judgement has Error and no
// Winner; it counts as an error of the judge metric.
type Judgement struct {
	Winner string `json:"winner,omitempty"`
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Score is the per-example judge score the bootstrap uses: adapter 1, tie 0.5, base 0.
func (j *Judgement) Score() (float64, bool) {
	if j == nil || j.Error != "" {
		return 0, false
	}
	switch j.Winner {
	case WinnerAdapter:
		return 1, true
	case WinnerTie:
		return 0.5, true
	case WinnerBase:
		return 0, true
	}
	return 0, false
}

// ExampleLosses is the per-example mean token loss of the eval set before (base) and
// after (adapter) training, in the same order.
type ExampleLosses struct {
	Before  []float64 `json:"before"`
	After   []float64 `json:"after"`
	Indices []int     `json:"indices"`
}

// maxLine bounds one generations row: a prompt and two answers, not a corpus.
const maxLine = 64 << 20

// ReadGenerations reads a generations.jsonl. A row that is not valid JSON is an error
// naming its line: a verdict must not quietly drop examples.
func ReadGenerations(path string) ([]Row, error) {
	var rows []Row
	err := eachLine(path, func(n int, line []byte) error {
		var r Row
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
		rows = append(rows, r)
		return nil
	})
	return rows, err
}

func eachLine(path string, fn func(n int, line []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	for n := 1; ; n++ {
		line, err := readLine(br)
		if len(bytes.TrimSpace(line)) > 0 {
			if ferr := fn(n, line); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
	}
}

func readLine(br *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		out = append(out, chunk...)
		if len(out) > maxLine {
			return nil, fmt.Errorf("line longer than %d bytes", maxLine)
		}
		if err != nil || !isPrefix {
			return out, err
		}
	}
}

// ReadExampleLosses reads an example_losses.json and checks that its lists agree. A
// loss the trainer could not give as a number (null: NaN or infinite) reads as NaN
// and is left out of the summary, never taken as 0.
func ReadExampleLosses(path string) (*ExampleLosses, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw struct {
		Before  []*float64 `json:"before"`
		After   []*float64 `json:"after"`
		Indices []int      `json:"indices"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(raw.Before) != len(raw.After) {
		return nil, fmt.Errorf("%s: %d losses before but %d after", path, len(raw.Before), len(raw.After))
	}
	return &ExampleLosses{Before: nanIfNull(raw.Before), After: nanIfNull(raw.After), Indices: raw.Indices}, nil
}

func nanIfNull(ps []*float64) []float64 {
	out := make([]float64, len(ps))
	for i, p := range ps {
		out[i] = math.NaN()
		if p != nil {
			out[i] = *p
		}
	}
	return out
}

// WriteJudgements stores each row's judgement in the generations file (by row order:
// judgements[i] belongs to the file's i-th row), keeping every other field as written.
// The file is replaced atomically, so a reader never sees half of it.
func WriteJudgements(path string, judgements []*Judgement) error {
	var out bytes.Buffer
	i := 0
	err := eachLine(path, func(n int, line []byte) error {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(line, &fields); err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
		var j *Judgement
		if i < len(judgements) {
			j = judgements[i]
		}
		i++
		if j == nil {
			out.Write(bytes.TrimSpace(line))
			out.WriteByte('\n')
			return nil
		}
		jb, err := json.Marshal(j)
		if err != nil {
			return err
		}
		if _, had := fields["judge"]; had || len(fields) == 0 {
			// Replaced: the row is written again (its keys in sorted order).
			fields["judge"] = jb
			b, err := json.Marshal(fields)
			if err != nil {
				return err
			}
			out.Write(b)
		} else {
			// Added at the end, so the row keeps the trainer's key order.
			row := bytes.TrimSpace(line)
			out.Write(row[:len(row)-1])
			out.WriteString(`,"judge":`)
			out.Write(jb)
			out.WriteByte('}')
		}
		out.WriteByte('\n')
		return nil
	})
	if err != nil {
		return err
	}
	if i != len(judgements) {
		return fmt.Errorf("%s: %d rows but %d judgements", path, i, len(judgements))
	}
	return run.WriteFileAtomic(path, out.Bytes(), 0o644)
}

// WriteSummary writes dir/summary.json atomically.
func WriteSummary(dir string, s *Summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return run.WriteFileAtomic(filepath.Join(dir, SummaryFile), append(b, '\n'), 0o644)
}

// ReadSummary reads dir/summary.json.
func ReadSummary(dir string) (*Summary, error) {
	b, err := os.ReadFile(filepath.Join(dir, SummaryFile))
	if err != nil {
		return nil, err
	}
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, SummaryFile), err)
	}
	return &s, nil
}
