package llm_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/loractl/loractl/llm"
	"github.com/loractl/loractl/llm/llmtest"
)

func newServer(t *testing.T, opts llmtest.Options) *llmtest.Server {
	t.Helper()
	s, err := llmtest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newClient(t *testing.T, cfg llm.Config) *llm.Client {
	t.Helper()
	if cfg.BaseBackoff == 0 {
		cfg.BaseBackoff = time.Millisecond
		cfg.MaxBackoff = 5 * time.Millisecond
	}
	c, err := llm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func user(s string) []llm.Message { return []llm.Message{{Role: "user", Content: s}} }

func TestEndpoint(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1/chat/completions", ""},
		{"http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1/chat/completions", ""},
		{"http://127.0.0.1:8000", "http://127.0.0.1:8000/v1/chat/completions", ""},
		{"https://api.example.com/openai/v1", "https://api.example.com/openai/v1/chat/completions", ""},
		{"http://h/v1/chat/completions", "http://h/v1/chat/completions", ""},
		{"ftp://h/v1", "", "want an http"},
		{"127.0.0.1:8000", "", "want an http"},
		{"http://user:hunter2@h/v1", "", "credentials in the URL"},
	}
	for _, tt := range tests {
		got, err := llm.Endpoint(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Endpoint(%q) err = %v, want %q", tt.in, err, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Endpoint(%q) error repeats the password: %v", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Endpoint(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestChatSendsRequestAndBearer(t *testing.T) {
	t.Setenv("LLM_TEST_KEY", "sk-secret-123")
	s := newServer(t, llmtest.Options{APIKey: "sk-secret-123"})
	s.KeepBodies()
	c := newClient(t, llm.Config{BaseURL: s.URL, Model: "teacher-7b", APIKeyEnv: "LLM_TEST_KEY"})
	temp, seed := 0.7, 3
	resp, err := c.Chat(context.Background(), llm.Request{Messages: user("hello"), MaxTokens: 64, Temperature: &temp, Seed: &seed})
	if err != nil {
		t.Fatal(err)
	}
	if want := llmtest.CannedAnswer(user("hello")); len(resp.Choices) != 1 || resp.Choices[0].Content != want || resp.Choices[0].FinishReason != "stop" {
		t.Fatalf("choices = %+v, want one %q/stop", resp.Choices, want)
	}
	if resp.Usage.PromptTokens != 1 || resp.Usage.CompletionTokens == 0 || resp.Retries != 0 {
		t.Errorf("usage/retries = %+v/%d", resp.Usage, resp.Retries)
	}
	if got := s.AuthHeaders(); len(got) != 1 || got[0] != "Bearer sk-secret-123" {
		t.Errorf("Authorization = %q", got)
	}
	var body map[string]any
	if err := json.Unmarshal(s.RequestBodies()[0], &body); err != nil {
		t.Fatal(err)
	}
	if body["model"] != "teacher-7b" || body["max_tokens"] != float64(64) || body["temperature"] != 0.7 {
		t.Errorf("request body = %v", body)
	}
}

func TestChatRetries(t *testing.T) {
	tests := []struct {
		name        string
		sched       []llmtest.Fault
		maxRetries  int
		wantErr     bool
		wantStatus  int
		wantRetries int
		wantTries   int
	}{
		{"429 then ok", []llmtest.Fault{llmtest.RateLimit}, 3, false, 0, 1, 2},
		{"500 twice then ok", []llmtest.Fault{llmtest.ServerError, llmtest.ServerError}, 3, false, 0, 2, 3},
		{"malformed then ok", []llmtest.Fault{llmtest.Malformed}, 3, false, 0, 1, 2},
		{"timeout then ok", []llmtest.Fault{llmtest.Slow}, 3, false, 0, 1, 2},
		{"every fault kind", []llmtest.Fault{llmtest.RateLimit, llmtest.ServerError, llmtest.Slow, llmtest.Malformed}, 4, false, 0, 4, 5},
		{"retries run out", []llmtest.Fault{llmtest.ServerError, llmtest.ServerError, llmtest.ServerError}, 2, true, 500, 2, 3},
		{"no retries", []llmtest.Fault{llmtest.RateLimit}, 0, true, 429, 0, 1},
		{"401 is not retried", []llmtest.Fault{llmtest.Unauthorized, llmtest.Unauthorized}, 5, true, 401, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, llmtest.Options{Schedule: map[string][]llmtest.Fault{"p": tt.sched}, SlowDelay: 2 * time.Second})
			c := newClient(t, llm.Config{BaseURL: s.URL, MaxRetries: tt.maxRetries, Timeout: 300 * time.Millisecond})
			resp, err := c.Chat(context.Background(), llm.Request{Messages: user("p")})
			if tries := s.Attempts("p"); tries != tt.wantTries {
				t.Errorf("server saw %d attempts, want %d", tries, tt.wantTries)
			}
			if tt.wantErr {
				var le *llm.Error
				if !errors.As(err, &le) {
					t.Fatalf("err = %v, want *llm.Error", err)
				}
				if le.StatusCode != tt.wantStatus || le.Retries != tt.wantRetries {
					t.Errorf("error status/retries = %d/%d, want %d/%d (%v)", le.StatusCode, le.Retries, tt.wantStatus, tt.wantRetries, le)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.Retries != tt.wantRetries {
				t.Errorf("Retries = %d, want %d", resp.Retries, tt.wantRetries)
			}
			if s.Answered("p") != 1 {
				t.Errorf("answered %d times, want 1", s.Answered("p"))
			}
		})
	}
}

func TestChatHonoursRetryAfter(t *testing.T) {
	s := newServer(t, llmtest.Options{Schedule: map[string][]llmtest.Fault{"p": {llmtest.RateLimit}}, RetryAfter: "1"})
	c := newClient(t, llm.Config{BaseURL: s.URL, MaxRetries: 2})
	start := time.Now()
	if _, err := c.Chat(context.Background(), llm.Request{Messages: user("p")}); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < time.Second {
		t.Errorf("retried after %s, before the server's Retry-After: 1", el)
	}
}

func TestFinishReasonLengthIsReturned(t *testing.T) {
	s := newServer(t, llmtest.Options{Schedule: map[string][]llmtest.Fault{"p": {llmtest.Length}}})
	c := newClient(t, llm.Config{BaseURL: s.URL, MaxRetries: 2})
	resp, err := c.Chat(context.Background(), llm.Request{Messages: user("p")})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].FinishReason != "length" || s.Attempts("p") != 1 {
		t.Errorf("finish = %q after %d attempts, want length after 1", resp.Choices[0].FinishReason, s.Attempts("p"))
	}
}

func TestKeyNeverInErrors(t *testing.T) {
	const key = "sk-very-secret-key-42"
	t.Setenv("LLM_TEST_KEY", key)
	// A server that echoes the request's Authorization header in its error body.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("bad auth " + r.Header.Get("Authorization")))
	}))
	defer echo.Close()
	c := newClient(t, llm.Config{BaseURL: echo.URL, APIKeyEnv: "LLM_TEST_KEY", MaxRetries: 1})
	_, err := c.Chat(context.Background(), llm.Request{Messages: user("p")})
	if err == nil {
		t.Fatal("want an error")
	}
	if strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("error = %q: the key must be redacted", err)
	}

	t.Setenv("LLM_EMPTY_KEY", "")
	_, err = llm.New(llm.Config{BaseURL: echo.URL, APIKeyEnv: "LLM_EMPTY_KEY"})
	if err == nil || !strings.Contains(err.Error(), "LLM_EMPTY_KEY") {
		t.Errorf("empty key variable: err = %v, want it named", err)
	}
}

func TestConnectionRefusedIsRetried(t *testing.T) {
	s := newServer(t, llmtest.Options{})
	url := s.URL
	s.Close()
	c := newClient(t, llm.Config{BaseURL: url, MaxRetries: 2})
	_, err := c.Chat(context.Background(), llm.Request{Messages: user("p")})
	var le *llm.Error
	if !errors.As(err, &le) || le.Retries != 2 || !le.Retryable || le.StatusCode != 0 {
		t.Fatalf("err = %#v (%v), want a retryable connection error after 2 retries", le, err)
	}
}
