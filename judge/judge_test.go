package judge_test

import (
	"context"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loractl/loractl/judge"
	"github.com/loractl/loractl/llm"
	"github.com/loractl/loractl/llm/llmtest"
)

// between returns the text between the markers judge.Prompt writes.
func between(s, open, close string) string {
	i := strings.Index(s, open)
	j := strings.Index(s, close)
	if i < 0 || j < i {
		return ""
	}
	return strings.TrimSpace(s[i+len(open) : j])
}

// referenceJudge prefers the answer equal to the reference, whatever its position.
func referenceJudge(ms []llm.Message) string {
	p := llmtest.LastUser(ms)
	ref := between(p, "[Reference answer]", "[End of reference answer]")
	a := between(p, "[Answer A]", "[End of answer A]")
	b := between(p, "[Answer B]", "[End of answer B]")
	switch {
	case a == ref && b != ref:
		return "Sure.\n```json\n{\"winner\": \"A\", \"reason\": \"A matches the reference\"}\n```"
	case b == ref && a != ref:
		return `{"winner": "b", "reason": "B matches the reference"}`
	}
	return `{"winner": "tie", "reason": "neither"}`
}

func items() []judge.Item {
	q := func(s string) []llm.Message { return []llm.Message{{Role: "user", Content: s}} }
	return []judge.Item{
		{Prompt: q("2+2?"), Reference: "4", Base: "5", Adapter: "4"},
		{Prompt: q("capital of France?"), Reference: "Paris", Base: "Paris", Adapter: "Lyon"},
		{Prompt: q("colour of sky?"), Reference: "blue", Base: "green", Adapter: "red"},
	}
}

func newServer(t *testing.T, opts llmtest.Options) *llmtest.Server {
	t.Helper()
	s, err := llmtest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestRunBothOrders(t *testing.T) {
	s := newServer(t, llmtest.Options{Answer: referenceJudge})
	vs := judge.Run(context.Background(), judge.Config{Endpoint: s.URL, Model: "judge"}, items())
	want := []string{judge.Adapter, judge.Base, judge.Tie}
	for i, v := range vs {
		if v.Err != nil || v.Winner != want[i] {
			t.Errorf("item %d: %+v, want %s", i, v, want[i])
		}
	}
	if s.Total() != 6 {
		t.Errorf("%d judge requests, want 6 (two orders per item)", s.Total())
	}
	if got := []float64{judge.Score(vs[0]), judge.Score(vs[1]), judge.Score(vs[2])}; got[0] != 1 || got[1] != 0 || got[2] != 0.5 {
		t.Errorf("scores = %v, want [1 0 0.5]", got)
	}
}

func TestPositionBiasedJudgeGivesTies(t *testing.T) {
	s := newServer(t, llmtest.Options{Answer: func([]llm.Message) string { return `{"winner":"A","reason":"first is best"}` }})
	for i, v := range judge.Run(context.Background(), judge.Config{Endpoint: s.URL}, items()) {
		if v.Err != nil || v.Winner != judge.Tie {
			t.Errorf("item %d: %+v, want a tie (the orders disagree)", i, v)
		}
	}
}

func TestRunErrorsAreVerdictErrors(t *testing.T) {
	s := newServer(t, llmtest.Options{Answer: func([]llm.Message) string { return "I cannot decide." }})
	vs := judge.Run(context.Background(), judge.Config{Endpoint: s.URL}, items()[:1])
	if vs[0].Err == nil || !strings.Contains(vs[0].Err.Error(), "no JSON verdict") || !math.IsNaN(judge.Score(vs[0])) {
		t.Errorf("verdict = %+v, want an unreadable-answer error with a NaN score", vs[0])
	}
	vs = judge.Run(context.Background(), judge.Config{Endpoint: "nope"}, items())
	for _, v := range vs {
		if v.Err == nil {
			t.Error("bad endpoint: want an error on every verdict")
		}
	}
}

func TestRunRetriesFaults(t *testing.T) {
	s := newServer(t, llmtest.Options{Answer: referenceJudge, FaultFor: func(_ string, attempt int) llmtest.Fault {
		if attempt == 0 {
			return llmtest.ServerError
		}
		return llmtest.OK
	}})
	vs := judge.Run(context.Background(), judge.Config{Endpoint: s.URL, MaxRetries: 3}, items()[:1])
	if vs[0].Err != nil || vs[0].Winner != judge.Adapter {
		t.Errorf("verdict = %+v", vs[0])
	}
}

func TestRunBoundsConcurrency(t *testing.T) {
	var inFlight, peak atomic.Int32
	var mu sync.Mutex
	s := newServer(t, llmtest.Options{Answer: func(ms []llm.Message) string {
		n := inFlight.Add(1)
		mu.Lock()
		if n > peak.Load() {
			peak.Store(n)
		}
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		inFlight.Add(-1)
		return referenceJudge(ms)
	}})
	var many []judge.Item
	for range 10 {
		many = append(many, items()...)
	}
	judge.Run(context.Background(), judge.Config{Endpoint: s.URL, Concurrency: 3}, many)
	if p := peak.Load(); p > 3 || p < 2 {
		t.Errorf("peak concurrency %d, want 2..3", p)
	}
}

func TestParseVerdict(t *testing.T) {
	tests := []struct{ in, winner, reason, err string }{
		{`{"winner":"A","reason":"r"}`, "A", "r", ""},
		{"```json\n{\"winner\": \"Answer B\", \"reason\": \"better\"}\n```", "B", "better", ""},
		{`I think {"note": 1} then {"winner":"TIE"}`, "tie", "", ""},
		{`{"winner":"C"}`, "", "", "not A, B or tie"},
		{`no json here`, "", "", "no JSON verdict"},
		{`{"winner": "A"`, "", "", "no JSON verdict"},
	}
	for _, tt := range tests {
		w, r, err := judge.ParseVerdict(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseVerdict(%q) err = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || w != tt.winner || r != tt.reason {
			t.Errorf("ParseVerdict(%q) = %q, %q, %v", tt.in, w, r, err)
		}
	}
}
