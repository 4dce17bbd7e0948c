// Package llmtest is an OpenAI-compatible chat completions server on 127.0.0.1 for
// tests: deterministic canned answers, fault injection (429 with Retry-After, 500,
// responses slower than the client's timeout, malformed JSON, finish_reason "length"),
// per-prompt fault schedules, and request counts per prompt so a test can assert that
// every prompt was answered exactly once.
package llmtest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/loractl/loractl/llm"
)

// Fault is what the server does with one request.
type Fault int

// The faults. OK answers normally.
const (
	OK           Fault = iota
	RateLimit          // 429 with Retry-After (Options.RetryAfter)
	ServerError        // 500
	Slow               // waits Options.SlowDelay before answering (past a short client timeout)
	Malformed          // 200 with a body cut off mid-JSON
	Length             // a truncated answer with finish_reason "length"
	Empty              // an empty answer, finish_reason "stop"
	Unauthorized       // 401
)

var faultNames = map[Fault]string{OK: "ok", RateLimit: "429", ServerError: "500", Slow: "slow",
	Malformed: "malformed", Length: "length", Empty: "empty", Unauthorized: "401"}

func (f Fault) String() string { return faultNames[f] }

// Options configure a Server. The zero value answers every request at once with
// CannedAnswer.
type Options struct {
	// Answer computes the answer to a conversation (nil: CannedAnswer).
	Answer func(messages []llm.Message) string
	// Schedule maps a prompt (the last user turn's content) to the faults of its first
	// attempts, in order; attempts past the list are answered normally.
	Schedule map[string][]Fault
	// FaultFor, when set, decides the fault of each attempt (attempt counts from 0)
	// for prompts not in Schedule.
	FaultFor func(prompt string, attempt int) Fault
	// RetryAfter is the Retry-After header value sent with 429 ("1", an HTTP date;
	// empty: none).
	RetryAfter string
	// SlowDelay is how long a Slow fault waits (0: 2s).
	SlowDelay time.Duration
	// Delay is added to every answer (a slow model).
	Delay time.Duration
	// APIKey, when set, is the Bearer token every request must carry (else 401).
	APIKey string
	// Addr is the listen address (default 127.0.0.1:0).
	Addr string
}

// Server is a running test server. Its methods are safe for concurrent use.
type Server struct {
	// URL is the API root, http://127.0.0.1:PORT/v1.
	URL string

	opts Options
	ln   net.Listener
	srv  *http.Server

	mu       sync.Mutex
	attempts map[string]int // every request per prompt
	answered map[string]int // successful answers per prompt
	total    int
	auth     map[string]bool
	bodies   []json.RawMessage
	keep     bool
}

// New starts a server; Close stops it.
func New(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.SlowDelay == 0 {
		opts.SlowDelay = 2 * time.Second
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, ln: ln, attempts: map[string]int{}, answered: map[string]int{}, auth: map[string]bool{}}
	s.URL = "http://" + ln.Addr().String() + "/v1"
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", s.chat)
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"object":"list","data":[{"id":"llmtest","object":"model"}]}`))
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server and closes its connections.
func (s *Server) Close() { _ = s.srv.Close() }

// KeepBodies makes the server keep every request body (RequestBodies).
func (s *Server) KeepBodies() { s.mu.Lock(); s.keep = true; s.mu.Unlock() }

// RequestBodies returns the request bodies kept since KeepBodies.
func (s *Server) RequestBodies() []json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]json.RawMessage(nil), s.bodies...)
}

// Attempts is how many requests carried prompt (faulted ones included).
func (s *Server) Attempts(prompt string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[prompt]
}

// Answered is how many successful answers prompt received.
func (s *Server) Answered(prompt string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.answered[prompt]
}

// AnsweredCounts returns a copy of the successful answers per prompt.
func (s *Server) AnsweredCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.answered))
	for k, v := range s.answered {
		out[k] = v
	}
	return out
}

// Total is the number of chat requests received.
func (s *Server) Total() int { s.mu.Lock(); defer s.mu.Unlock(); return s.total }

// AuthHeaders returns the distinct Authorization headers seen.
func (s *Server) AuthHeaders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.auth {
		out = append(out, k)
	}
	return out
}

// CannedAnswer is the default answer: deterministic per conversation, so a test can
// compute what a row must hold.
func CannedAnswer(messages []llm.Message) string {
	last := LastUser(messages)
	sum := sha256.Sum256([]byte(last))
	return "answer " + hex.EncodeToString(sum[:4]) + " to: " + last
}

// LastUser is the content of the last user turn ("" when there is none).
func LastUser(messages []llm.Message) string {
	for i := len(messages) - 1; i >= 0; i-- {
		if messages[i].Role == "user" {
			return messages[i].Content
		}
	}
	return ""
}

type request struct {
	Model       string        `json:"model"`
	Messages    []llm.Message `json:"messages"`
	MaxTokens   int           `json:"max_tokens"`
	Temperature *float64      `json:"temperature"`
	N           int           `json:"n"`
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	var req request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<20))
	if err := dec.Decode(&req); err != nil {
		http.Error(w, `{"error":{"message":"bad request body"}}`, http.StatusBadRequest)
		return
	}
	if len(req.Messages) == 0 {
		http.Error(w, `{"error":{"message":"messages is empty"}}`, http.StatusBadRequest)
		return
	}
	prompt := LastUser(req.Messages)
	auth := r.Header.Get("Authorization")

	s.mu.Lock()
	attempt := s.attempts[prompt]
	s.attempts[prompt]++
	s.total++
	if auth != "" {
		s.auth[auth] = true
	}
	if s.keep {
		b, _ := json.Marshal(req)
		s.bodies = append(s.bodies, b)
	}
	s.mu.Unlock()

	fault := OK
	if sched, ok := s.opts.Schedule[prompt]; ok {
		if attempt < len(sched) {
			fault = sched[attempt]
		}
	} else if s.opts.FaultFor != nil {
		fault = s.opts.FaultFor(prompt, attempt)
	}
	if s.opts.APIKey != "" && auth != "Bearer "+s.opts.APIKey {
		fault = Unauthorized
	}
	if s.opts.Delay > 0 && !wait(r, s.opts.Delay) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch fault {
	case RateLimit:
		if s.opts.RetryAfter != "" {
			w.Header().Set("Retry-After", s.opts.RetryAfter)
		}
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"error":{"message":"rate limited"}}`))
		return
	case ServerError:
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error":{"message":"internal error"}}`))
		return
	case Unauthorized:
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"message":"invalid api key"}}`))
		return
	case Malformed:
		_, _ = w.Write([]byte(`{"id":"x","choices":[{"message":{"role":"assistant","content":"cut`))
		return
	case Slow:
		if !wait(r, s.opts.SlowDelay) {
			return // the client gave up: this attempt is not an answer
		}
	}
	answer := s.answer(req.Messages)
	finish := "stop"
	switch fault {
	case Length:
		finish = "length"
		if len(answer) > 8 {
			answer = answer[:8]
		}
	case Empty:
		answer = ""
	}
	n := max(req.N, 1)
	type msg struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	type choice struct {
		Index        int    `json:"index"`
		Message      msg    `json:"message"`
		FinishReason string `json:"finish_reason"`
	}
	choices := make([]choice, n)
	for i := range choices {
		choices[i] = choice{Index: i, Message: msg{Role: "assistant", Content: answer}, FinishReason: finish}
	}
	body, _ := json.Marshal(map[string]any{
		"id": "chatcmpl-llmtest", "object": "chat.completion", "model": req.Model, "choices": choices,
		"usage": map[string]int{"prompt_tokens": countWords(req.Messages), "completion_tokens": len(strings.Fields(answer)),
			"total_tokens": countWords(req.Messages) + len(strings.Fields(answer))},
	})
	if _, err := w.Write(body); err != nil {
		return
	}
	s.mu.Lock()
	s.answered[prompt]++
	s.mu.Unlock()
}

func (s *Server) answer(messages []llm.Message) string {
	if s.opts.Answer != nil {
		return s.opts.Answer(messages)
	}
	return CannedAnswer(messages)
}

// wait sleeps d or until the client goes away; false when it went away.
func wait(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

func countWords(ms []llm.Message) int {
	n := 0
	for _, m := range ms {
		n += len(strings.Fields(m.Content))
	}
	return n
}

// ParseFault reads a fault name as String prints it ("429", "500", "slow", ...).
func ParseFault(s string) (Fault, error) {
	for f, name := range faultNames {
		if name == s {
			return f, nil
		}
	}
	return OK, fmt.Errorf("unknown fault %q", s)
}
