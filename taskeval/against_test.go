package taskeval

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loractl/loractl/llm"
	"github.com/loractl/loractl/llm/llmtest"
)

// askFixture writes n prompts ("question i") and returns them read back as the script's
// --prompts-out file would be.
func askFixture(t *testing.T, n int) []prompt {
	t.Helper()
	var b strings.Builder
	for i := 0; i < n; i++ {
		// Indexes as the eval set numbers them: not 0..n-1 when examples were sampled.
		fmt.Fprintf(&b, `{"index":%d,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"question %d"}],"tools":null,"reference":"r"}`+"\n", 3*i+1, i)
	}
	path := filepath.Join(t.TempDir(), "prompts.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ps, err := readPrompts(path)
	if err != nil || len(ps) != n {
		t.Fatalf("readPrompts: %v, %d", err, len(ps))
	}
	return ps
}

func TestAskAgainst(t *testing.T) {
	srv, err := llmtest.New(llmtest.Options{APIKey: "sk-test-123", RetryAfter: "0", FaultFor: func(prompt string, attempt int) llmtest.Fault {
		switch {
		case prompt == "question 2":
			return llmtest.Length // ends at max tokens on every attempt
		case attempt == 0 && strings.HasSuffix(prompt, "1"):
			return llmtest.RateLimit
		case attempt == 0 && strings.HasSuffix(prompt, "3"):
			return llmtest.ServerError
		}
		return llmtest.OK
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.KeepBodies()
	t.Setenv("FT_TEST_KEY", "sk-test-123")
	c, err := llm.New(llm.Config{BaseURL: srv.URL, Model: "ft:gpt-4o-mini:acme::x1", APIKeyEnv: "FT_TEST_KEY", MaxRetries: 3,
		BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ps := askFixture(t, 14)
	var last int
	out := filepath.Join(t.TempDir(), "against.jsonl")
	a := &Against{Label: "openai:ft:gpt-4o-mini:acme::x1", Client: c, Concurrency: 3, OnReply: func(done, _ int) { last = done }}
	if err := askAgainst(context.Background(), a, ps, 32, out); err != nil {
		t.Fatal(err)
	}
	if last != 14 {
		t.Errorf("progress ended at %d of 14", last)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 14 {
		t.Fatalf("%d replies for 14 prompts", len(lines))
	}
	for i, line := range lines {
		var r reply
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		want := llmtest.CannedAnswer([]llm.Message{{Role: "user", Content: fmt.Sprintf("question %d", i)}})
		wantStop := StoppedEOS
		if i == 2 {
			want, wantStop = want[:8], StoppedMaxTokens
		}
		// In the prompts' order, each under its eval-set index.
		if r.Index != 3*i+1 || r.Text != want || r.Stopped != wantStop || r.Tokens <= 0 {
			t.Errorf("reply %d = %+v, want index %d text %q stopped %s", i, r, 3*i+1, want, wantStop)
		}
	}
	for _, body := range srv.RequestBodies() {
		var req struct {
			Model       string
			MaxTokens   int `json:"max_tokens"`
			Temperature *float64
			Messages    []llm.Message
		}
		if err := json.Unmarshal(body, &req); err != nil {
			t.Fatal(err)
		}
		// Greedy, the eval's token budget, the whole prompt with its system turn.
		if req.Model != "ft:gpt-4o-mini:acme::x1" || req.MaxTokens != 32 || req.Temperature == nil || *req.Temperature != 0 ||
			len(req.Messages) != 2 || req.Messages[0].Content != "be brief" {
			t.Fatalf("request %s", body)
		}
	}
	if strings.Contains(string(b), "sk-test-123") {
		t.Error("the key is in the replies file")
	}
}

func TestAskAgainstFailsWhole(t *testing.T) {
	tests := []struct {
		name  string
		fault llmtest.Fault
		want  string
	}{
		{"bad key", llmtest.Unauthorized, "401"},
		{"server keeps failing", llmtest.ServerError, "500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := llmtest.New(llmtest.Options{FaultFor: func(prompt string, _ int) llmtest.Fault {
				if prompt == "question 5" {
					return tt.fault
				}
				return llmtest.OK
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			c, err := llm.New(llm.Config{BaseURL: srv.URL, Model: "m", MaxRetries: 1, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "against.jsonl")
			err = askAgainst(context.Background(), &Against{Label: "openai:m", Client: c, Concurrency: 2}, askFixture(t, 12), 16, out)
			// One failed prompt fails the comparison, naming the model and the example;
			// no partial replies file is left to be mistaken for a whole one.
			if err == nil || !strings.Contains(err.Error(), "openai:m on eval example 16") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v", err)
			}
			if _, statErr := os.Stat(out); !os.IsNotExist(statErr) {
				t.Errorf("replies file after a failure: %v", statErr)
			}
		})
	}
}

// The verdict of a comparison names both sides; the rambling flag names the other model.
func TestComputeAgainst(t *testing.T) {
	var rows []Row
	for i := 0; i < 12; i++ {
		rows = append(rows, Row{Index: i,
			Base:    Side{Text: "x", Stopped: StoppedMaxTokens, Scores: map[string]float64{"exact": 0}},
			Adapter: Side{Text: "y", Stopped: StoppedEOS, Scores: map[string]float64{"exact": 1}}})
	}
	ev := opts("exact", 0).Eval
	s := Compute(rows, nil, Options{Eval: ev, Seed: 1, Against: "openai:ft:m"})
	if s.Against != "openai:ft:m" || s.Verdict != Adopt || !strings.HasPrefix(s.Reason, "adapter vs openai:ft:m: 12 eval examples") {
		t.Fatalf("summary %+v", s)
	}
	text := strings.Join(s.Lines(), "\n")
	for _, want := range []string{"against    openai:ft:m", "openai:ft:m (0% ended the turn)"} {
		if !strings.Contains(text, want) {
			t.Errorf("lines lack %q:\n%s", want, text)
		}
	}
	if plain := Compute(rows, nil, Options{Eval: ev, Seed: 1}); plain.Against != "" || strings.Contains(plain.Reason, " vs ") {
		t.Errorf("without Against: %+v", plain)
	}
}
