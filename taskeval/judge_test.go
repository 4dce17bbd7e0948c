package taskeval

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/llm"
	"github.com/loractl/loractl/llm/llmtest"
)

// answerBetween plays a judge that prefers the answer containing "good": it reads
// the two answers out of the judge prompt, as a real judge would see them.
func answerBetween(msgs []llm.Message) string {
	p := llmtest.LastUser(msgs)
	a := between(p, "[Answer A]\n", "\n[End of answer A]")
	switch {
	case strings.Contains(a, "good"):
		return `{"winner": "A", "reason": "A is good"}`
	case strings.Contains(between(p, "[Answer B]\n", "\n[End of answer B]"), "good"):
		return `{"winner": "B", "reason": "B is good"}`
	}
	// Neither: a judge with a position bias, always A. Both orders then disagree.
	return `{"winner": "A", "reason": "first one"}`
}

func between(s, from, to string) string {
	_, after, ok := strings.Cut(s, from)
	if !ok {
		return ""
	}
	before, _, _ := strings.Cut(after, to)
	return before
}

func writeRows(t *testing.T, dir string, n int, adapterText func(i int) string) {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"index":%d,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"question %d"}],"reference":"ref %d",`+
			`"base":{"text":"plain answer %d","tokens":4,"stopped":"eos","scores":{}},"adapter":{"text":%q,"tokens":3,"stopped":"eos","scores":{}}}`+"\n",
			i, i, i, i, adapterText(i))
	}
	if err := os.WriteFile(filepath.Join(dir, GenerationsFile), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The judge through the real client against a local OpenAI-compatible server that
// answers some requests with 429 and 500 first: every row still gets its judgement,
// position bias cancels to a tie, and the win rate decides.
func TestJudgeWithFaults(t *testing.T) {
	srv, err := llmtest.New(llmtest.Options{
		Answer:     answerBetween,
		RetryAfter: "0",
		FaultFor: func(prompt string, attempt int) llmtest.Fault {
			switch {
			case attempt == 0 && strings.Contains(prompt, "question 1\n"):
				return llmtest.RateLimit
			case attempt < 2 && strings.Contains(prompt, "question 2\n"):
				return llmtest.ServerError
			}
			return llmtest.OK
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dir := t.TempDir()
	writeRows(t, dir, 24, func(i int) string {
		if i%4 == 3 {
			return fmt.Sprintf("plain answer %d", i) // as plain as the base: a tie
		}
		return fmt.Sprintf("good answer %d", i)
	})
	m := config.MetricConfig{Name: "judge", Kind: config.MetricJudge, Endpoint: srv.URL, Model: "judge-model"}
	o := Options{Eval: config.EvalConfig{Metrics: []config.MetricConfig{m}, Primary: "judge"}, Seed: 1}
	s, judgeErr, err := Evaluate(context.Background(), dir, o, JudgeOptions{Timeout: 5 * time.Second})
	if err != nil || judgeErr != nil {
		t.Fatalf("evaluate: %v, judge: %v", err, judgeErr)
	}
	if s.Judge == nil || s.Judge.Wins != 18 || s.Judge.Ties != 6 || s.Judge.Losses != 0 || s.Judge.Errors != 0 {
		t.Fatalf("judge summary %+v", s.Judge)
	}
	if s.Verdict != Adopt {
		t.Fatalf("verdict %s: %s", s.Verdict, s.Reason)
	}
	if srv.Total() != 24*2+2*(1+2) {
		t.Fatalf("%d requests: want two orders per row and a retry per fault, in both orders (54)", srv.Total())
	}
	rows, err := ReadGenerations(filepath.Join(dir, GenerationsFile))
	if err != nil {
		t.Fatal(err)
	}
	if j := rows[3].Judge; j == nil || j.Winner != WinnerTie || !strings.Contains(j.Reason, "disagree") {
		t.Fatalf("row 3 (position bias only) %+v", j)
	}
	if j := rows[0].Judge; j == nil || j.Winner != WinnerAdapter {
		t.Fatalf("row 0 %+v", j)
	}
	if back, err := ReadSummary(dir); err != nil || back.Judge.WinRate != s.Judge.WinRate {
		t.Fatalf("summary.json: %v %+v", err, back)
	}
	// Judged rows are not asked again.
	before := srv.Total()
	if _, _, err := Evaluate(context.Background(), dir, o, JudgeOptions{}); err != nil || srv.Total() != before {
		t.Fatalf("re-evaluation asked the judge again: %v, %d requests", err, srv.Total()-before)
	}
}

// A judge that keeps failing: the rows carry the error, the judge metric cannot
// adopt, and Evaluate says the judge failed without failing the summary.
func TestJudgeFailures(t *testing.T) {
	srv, err := llmtest.New(llmtest.Options{
		Answer: answerBetween,
		FaultFor: func(prompt string, attempt int) llmtest.Fault {
			if strings.Contains(prompt, "question 0\n") {
				return llmtest.ServerError
			}
			return llmtest.OK
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dir := t.TempDir()
	writeRows(t, dir, 20, func(i int) string { return fmt.Sprintf("good answer %d", i) })
	m := config.MetricConfig{Name: "judge", Kind: config.MetricJudge, Endpoint: srv.URL, Model: "judge-model"}
	o := Options{Eval: config.EvalConfig{Metrics: []config.MetricConfig{m}, Primary: "judge"}, Seed: 1}
	s, judgeErr, err := Evaluate(context.Background(), dir, o, JudgeOptions{MaxRetries: 1, Timeout: 5 * time.Second})
	if err != nil || judgeErr == nil {
		t.Fatalf("evaluate: %v, judge error %v", err, judgeErr)
	}
	if s.Judge.Errors != 1 || s.Judge.Wins != 19 || s.Verdict == Adopt {
		t.Fatalf("%+v, verdict %s (%s)", s.Judge, s.Verdict, s.Reason)
	}
	rows, _ := ReadGenerations(filepath.Join(dir, GenerationsFile))
	if j := rows[0].Judge; j == nil || j.Winner != "" || !strings.Contains(j.Error, "500") {
		t.Fatalf("row 0 %+v", j)
	}
}
