package taskeval

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/judge"
	"github.com/loractl/loractl/llm"
)

// JudgeOptions tune the judge's requests; zero values take the judge package's defaults.
type JudgeOptions struct {
	Concurrency int
	Timeout     time.Duration
	MaxRetries  int
}

// JudgeRows asks the judge metric m about every row of dir's generations that has no
// judgement yet (or only a failed one), writes the judgements into generations.jsonl
// and returns how many rows were judged and how many of those failed. The calls are
// made from this process: a training container may have no network.
func JudgeRows(ctx context.Context, dir string, m config.MetricConfig, o JudgeOptions) (judged, failed int, err error) {
	path := filepath.Join(dir, GenerationsFile)
	rows, err := ReadGenerations(path)
	if err != nil {
		return 0, 0, err
	}
	var todo []int
	var items []judge.Item
	for i, r := range rows {
		if r.Judge != nil && r.Judge.Error == "" && r.Judge.Winner != "" {
			continue
		}
		todo = append(todo, i)
		items = append(items, judge.Item{Prompt: promptMessages(r.Messages), Reference: r.Reference, Base: r.Base.Text, Adapter: r.Adapter.Text})
	}
	if len(items) == 0 {
		return 0, 0, nil
	}
	verdicts := judge.Run(ctx, judge.Config{Endpoint: m.Endpoint, Model: m.Model, APIKeyEnv: m.APIKeyEnv, Rubric: m.Rubric,
		Concurrency: o.Concurrency, Timeout: o.Timeout, MaxRetries: o.MaxRetries}, items)
	out := make([]*Judgement, len(rows))
	for i := range rows {
		out[i] = rows[i].Judge
	}
	for k, v := range verdicts {
		j := &Judgement{Winner: v.Winner, Reason: v.Reason}
		if v.Err != nil {
			j = &Judgement{Error: v.Err.Error()}
			failed++
		}
		out[todo[k]] = j
	}
	return len(items), failed, WriteJudgements(path, out)
}

// promptMessages turns a row's prompt into the judge's messages. Content that is not
// text (a tool call's arguments) is shown to the judge as its JSON.
func promptMessages(raw json.RawMessage) []llm.Message {
	var msgs []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(raw, &msgs) != nil {
		return nil
	}
	out := make([]llm.Message, 0, len(msgs))
	for _, m := range msgs {
		var text string
		if json.Unmarshal(m.Content, &text) != nil {
			text = string(m.Content)
		}
		out = append(out, llm.Message{Role: m.Role, Content: text})
	}
	return out
}

// Evaluate finishes an eval directory: runs the judge when the config has one and
// there are generations, then computes the summary and writes summary.json. judgeErr
// reports a judge that could not be run at all; its rows' errors are in the summary.
func Evaluate(ctx context.Context, dir string, o Options, jo JudgeOptions) (s *Summary, judgeErr error, err error) {
	if m := JudgeMetric(o.Eval); m != nil {
		_, failed, jerr := JudgeRows(ctx, dir, *m, jo)
		switch {
		case errors.Is(jerr, fs.ErrNotExist):
			// No generations (eval.generate: false): nothing to judge.
		case jerr != nil:
			judgeErr = jerr
		case failed > 0:
			judgeErr = errors.New("the judge failed on some examples (see judge.error in generations.jsonl)")
		}
	}
	s, err = Summarize(dir, o)
	if err != nil {
		return nil, judgeErr, err
	}
	return s, judgeErr, WriteSummary(dir, s)
}
