// Package judge compares a base model's and an adapter's answers with an LLM judge over
// an OpenAI-compatible endpoint. Each example is judged twice, with the answers in both
// positions, to cancel the judge's position bias: only a winner both orders agree on
// counts, anything else is a tie.
package judge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/loractl/loractl/llm"
)

// Winners of a Verdict.
const (
	Base    = "base"
	Adapter = "adapter"
	Tie     = "tie"
)

// DefaultConcurrency is the number of judge requests in flight when Config leaves it 0.
const DefaultConcurrency = 8

// DefaultRubric is used when Config.Rubric is empty.
const DefaultRubric = "Prefer the answer that is correct, follows the user's instructions, and is closest in substance to the reference answer. Length and style do not matter unless the task asks for them."

// Config configures Run.
type Config struct {
	Endpoint, Model, APIKeyEnv, Rubric string
	// Concurrency bounds the requests in flight (0: DefaultConcurrency).
	Concurrency int
	// Timeout bounds each request (0: the llm package's default).
	Timeout time.Duration
	// MaxRetries for each request (0: 4; negative: none).
	MaxRetries int
}

// Item is one example to judge.
type Item struct {
	Prompt        []llm.Message
	Reference     string
	Base, Adapter string
}

// Verdict is the judge's decision on one Item. Err is set (and Winner empty) when a
// judgement could not be had: the request failed or the judge's answer was unreadable.
type Verdict struct {
	Winner string `json:"winner"`
	Reason string `json:"reason"`
	Err    error  `json:"-"`
}

// Score is an example's value for the bootstrap: adapter 1, tie 0.5, base 0; NaN for a
// verdict with an error, which callers must leave out (never a silent 0).
func Score(v Verdict) float64 {
	switch {
	case v.Err != nil:
		return math.NaN()
	case v.Winner == Adapter:
		return 1
	case v.Winner == Tie:
		return 0.5
	case v.Winner == Base:
		return 0
	}
	return math.NaN()
}

// Run judges items and returns one Verdict per item, in order. A bad Config gives every
// item a Verdict with that error.
func Run(ctx context.Context, cfg Config, items []Item) []Verdict {
	out := make([]Verdict, len(items))
	retries := cfg.MaxRetries
	switch {
	case retries == 0:
		retries = 4
	case retries < 0:
		retries = 0
	}
	client, err := llm.New(llm.Config{BaseURL: cfg.Endpoint, Model: cfg.Model, APIKeyEnv: cfg.APIKeyEnv,
		Timeout: cfg.Timeout, MaxRetries: retries})
	if err != nil {
		for i := range out {
			out[i].Err = fmt.Errorf("judge: %w", err)
		}
		return out
	}
	rubric := cfg.Rubric
	if rubric == "" {
		rubric = DefaultRubric
	}
	conc := cfg.Concurrency
	if conc <= 0 {
		conc = DefaultConcurrency
	}
	// Two requests per item (both orders); the semaphore bounds them together.
	type half struct {
		winner, reason string // winner in base/adapter/tie terms
		err            error
	}
	halves := make([][2]half, len(items))
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i := range items {
		for order := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					halves[i][order].err = ctx.Err()
					return
				}
				defer func() { <-sem }()
				a, b := items[i].Base, items[i].Adapter
				if order == 1 {
					a, b = b, a
				}
				w, reason, err := ask(ctx, client, rubric, items[i], a, b)
				if err != nil {
					halves[i][order].err = err
					return
				}
				halves[i][order] = half{winner: unswap(w, order), reason: reason}
			}()
		}
	}
	wg.Wait()
	for i, h := range halves {
		out[i] = combine(h[0].winner, h[1].winner, h[0].reason, h[1].reason, errors.Join(h[0].err, h[1].err))
	}
	return out
}

// unswap maps a positional winner ("A", "B", "tie") back to base/adapter.
func unswap(w string, order int) string {
	switch {
	case w == "tie":
		return Tie
	case (w == "A") == (order == 0):
		return Base
	default:
		return Adapter
	}
}

// combine applies the both-orders rule: agreement wins, anything else is a tie.
func combine(first, second, reason1, reason2 string, err error) Verdict {
	if err != nil {
		return Verdict{Err: err}
	}
	if first == second {
		return Verdict{Winner: first, Reason: reason1}
	}
	reason := "the two orders disagree"
	if first == Tie || second == Tie {
		reason = "a tie in at least one order"
	}
	return Verdict{Winner: Tie, Reason: fmt.Sprintf("%s (A=base: %s; A=adapter: %s)", reason, reason1, reason2)}
}

// ask sends one comparison and parses the verdict; an unreadable answer is asked once
// more before it becomes an error.
func ask(ctx context.Context, c *llm.Client, rubric string, it Item, a, b string) (string, string, error) {
	temp := 0.0
	req := llm.Request{Messages: Prompt(rubric, it, a, b), MaxTokens: 512, Temperature: &temp}
	var lastErr error
	for range 2 {
		resp, err := c.Chat(ctx, req)
		if err != nil {
			return "", "", fmt.Errorf("judge: %w", err)
		}
		w, reason, err := ParseVerdict(resp.Choices[0].Content)
		if err == nil {
			return w, reason, nil
		}
		lastErr = err
	}
	return "", "", fmt.Errorf("judge: %w", lastErr)
}

const systemPrompt = `You are an impartial judge comparing two answers to the same conversation. ` +
	`Reply with only a JSON object, no other text: {"winner": "A" | "B" | "tie", "reason": "<one sentence>"}.`

// Prompt is the conversation sent to the judge for answers a (shown as A) and b (B).
func Prompt(rubric string, it Item, a, b string) []llm.Message {
	var s strings.Builder
	s.WriteString("Rubric: ")
	s.WriteString(rubric)
	s.WriteString("\n\n[Conversation]\n")
	for _, m := range it.Prompt {
		fmt.Fprintf(&s, "<%s>\n%s\n</%s>\n", m.Role, m.Content, m.Role)
	}
	if it.Reference != "" {
		fmt.Fprintf(&s, "\n[Reference answer]\n%s\n[End of reference answer]\n", it.Reference)
	}
	fmt.Fprintf(&s, "\n[Answer A]\n%s\n[End of answer A]\n\n[Answer B]\n%s\n[End of answer B]\n\n", a, b)
	s.WriteString(`Which answer is better under the rubric? Reply with only {"winner": "A" | "B" | "tie", "reason": "..."}.`)
	return []llm.Message{{Role: "system", Content: systemPrompt}, {Role: "user", Content: s.String()}}
}

// ParseVerdict reads a judge's reply: the first JSON object in it (code fences and
// prose around it are ignored) with "winner" A, B or tie (any case; "Answer A" too).
func ParseVerdict(text string) (winner, reason string, err error) {
	for i := 0; i < len(text); i++ {
		if text[i] != '{' {
			continue
		}
		var v struct {
			Winner *string `json:"winner"`
			Reason any     `json:"reason"`
		}
		dec := json.NewDecoder(strings.NewReader(text[i:]))
		if dec.Decode(&v) != nil || v.Winner == nil {
			continue
		}
		w := strings.ToLower(strings.TrimSpace(*v.Winner))
		w = strings.TrimPrefix(w, "answer ")
		switch w {
		case "a":
			winner = "A"
		case "b":
			winner = "B"
		case "tie", "draw", "equal", "none":
			winner = "tie"
		default:
			return "", "", fmt.Errorf("the judge's winner %q is not A, B or tie", *v.Winner)
		}
		if v.Reason != nil {
			reason = strings.TrimSpace(fmt.Sprint(v.Reason))
		}
		return winner, reason, nil
	}
	return "", "", fmt.Errorf("no JSON verdict in the judge's answer %q", clip(text, 200))
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
