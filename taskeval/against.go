package taskeval

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/loractl/loractl/llm"
)

// Against is another model the adapter is compared with in place of its base: an
// OpenAI-compatible endpoint, typically the OpenAI fine-tune the adapter replaces.
// Its replies take the base side of generations.jsonl, so the metrics, the judge and
// the verdict are those of any task evaluation.
type Against struct {
	// Label names the other model in the summary and the verdict ("openai:ft:…").
	Label string
	// Client asks it; its calls are made from this process, like the judge's.
	Client *llm.Client
	// Concurrency bounds the requests in flight (0: DefaultAgainstConcurrency).
	Concurrency int
	// OnReply is called after each reply with how many are done (progress).
	OnReply func(done, total int)
}

// DefaultAgainstConcurrency is how many prompts are sent to the other model at once:
// enough to hide latency, few enough to stay inside a hosted API's default rate limits.
const DefaultAgainstConcurrency = 8

// prompt is one line of the script's --prompts-out file.
type prompt struct {
	Index    int             `json:"index"`
	Messages json.RawMessage `json:"messages"`
}

// reply is one line of the --against-replies file.
type reply struct {
	Index   int    `json:"index"`
	Text    string `json:"text"`
	Tokens  int    `json:"tokens"`
	Stopped string `json:"stopped"`
}

func readPrompts(path string) ([]prompt, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []prompt
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		var p prompt
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		out = append(out, p)
	}
	return out, sc.Err()
}

// askAgainst sends every prompt to the other model (greedy, at most maxTokens) and
// writes its replies to path. The first prompt that fails after the client's retries
// fails the whole evaluation: a comparison with holes in one side would not be paired.
func askAgainst(ctx context.Context, a *Against, prompts []prompt, maxTokens int, path string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := a.Concurrency
	if n <= 0 {
		n = DefaultAgainstConcurrency
	}
	replies := make([]reply, len(prompts))
	var (
		mu       sync.Mutex
		firstErr error
		done     int
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, n)
	zero := 0.0
	for i := range prompts {
		sem <- struct{}{}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			p := prompts[i]
			resp, err := a.Client.Chat(ctx, llm.Request{Messages: promptMessages(p.Messages), MaxTokens: maxTokens, Temperature: &zero})
			if err == nil && len(resp.Choices) == 0 {
				err = fmt.Errorf("no choices in the reply")
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("%s on eval example %d: %w", a.Label, p.Index, err)
					cancel()
				}
				return
			}
			c := resp.Choices[0]
			stopped := StoppedEOS
			if c.FinishReason == "length" {
				stopped = StoppedMaxTokens
			}
			replies[i] = reply{Index: p.Index, Text: c.Content, Tokens: resp.Usage.CompletionTokens, Stopped: stopped}
			done++
			if a.OnReply != nil {
				a.OnReply(done, len(prompts))
			}
		}(i)
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, r := range replies {
		if err := enc.Encode(r); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
