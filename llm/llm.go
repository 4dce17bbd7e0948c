// Package llm is a client for OpenAI-compatible /v1/chat/completions endpoints (vLLM,
// Ollama, llama.cpp server, TGI, OpenAI, python/serve_openai.py). It retries what is
// worth retrying (429, 5xx, timeouts, connection errors, a truncated body) with
// exponential backoff and jitter, honours Retry-After, bounds every attempt with a
// timeout, and keeps the API key out of everything it returns.
package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults used when a Config leaves a field zero.
const (
	DefaultTimeout       = 120 * time.Second
	DefaultBaseBackoff   = 500 * time.Millisecond
	DefaultMaxBackoff    = 30 * time.Second
	DefaultMaxRetryAfter = 5 * time.Minute
)

// Config configures a Client.
type Config struct {
	// BaseURL is the API root: http://host:port/v1, the bare http://host:port (then /v1
	// is added), or the full …/chat/completions URL.
	BaseURL string
	// Model is sent as the request's "model".
	Model string
	// APIKeyEnv names the environment variable holding the key, sent as a Bearer
	// token. Empty: no Authorization header. The key itself is never logged or stored.
	APIKeyEnv string
	// Timeout bounds each attempt (0: DefaultTimeout).
	Timeout time.Duration
	// MaxRetries is how many times a retryable failure is retried (0: never).
	MaxRetries int
	// BaseBackoff and MaxBackoff shape the exponential backoff (0: the defaults); the
	// wait before retry k is a random duration in [d/2, d] with d = min(Base·2^k, Max).
	BaseBackoff, MaxBackoff time.Duration
	// MaxRetryAfter caps a server's Retry-After (0: DefaultMaxRetryAfter), so a hostile
	// or broken server cannot park the client for a day.
	MaxRetryAfter time.Duration
	// HTTPClient replaces the default client (tests, proxies). Its Timeout should be 0:
	// Timeout above already bounds each attempt.
	HTTPClient *http.Client
}

// Message is one chat turn.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Request is one chat completion request.
type Request struct {
	Messages []Message
	// MaxTokens is max_tokens (0: not sent, the server's default).
	MaxTokens int
	// Temperature is sent when non-nil.
	Temperature *float64
	// N is the number of choices (0 or 1: not sent).
	N int
	// Seed is sent when non-nil.
	Seed *int
}

// Choice is one generated answer.
type Choice struct {
	Content string
	// FinishReason is the server's: "stop", "length" (cut by max_tokens), ...
	FinishReason string
}

// Usage is the server's token count for the request.
type Usage struct {
	PromptTokens, CompletionTokens int
}

// Response is a successful completion.
type Response struct {
	Choices []Choice
	Usage   Usage
	// Retries is how many failed attempts preceded this one.
	Retries int
}

// Error is a failed request, after the retries. Its message never holds the API key.
type Error struct {
	// StatusCode is the HTTP status of the last attempt (0: no response).
	StatusCode int
	// Retries is how many times the request was retried.
	Retries int
	// Retryable says the last failure was of a kind that is retried (the retries ran out).
	Retryable bool
	msg       string
}

func (e *Error) Error() string { return e.msg }

// Client sends chat completion requests. It is safe for concurrent use.
type Client struct {
	cfg      Config
	endpoint string
	key      string
	http     *http.Client
	sleep    func(ctx context.Context, d time.Duration) error
}

// New checks cfg and builds a Client. An APIKeyEnv naming an unset or empty variable is
// an error (the message names the variable, never a value).
func New(cfg Config) (*Client, error) {
	endpoint, err := Endpoint(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if cfg.MaxRetries < 0 {
		return nil, fmt.Errorf("max retries must be >= 0, got %d", cfg.MaxRetries)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("timeout must be >= 0, got %s", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.BaseBackoff <= 0 {
		cfg.BaseBackoff = DefaultBaseBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = DefaultMaxRetryAfter
	}
	c := &Client{cfg: cfg, endpoint: endpoint, http: cfg.HTTPClient, sleep: sleepCtx}
	if cfg.APIKeyEnv != "" {
		c.key = os.Getenv(cfg.APIKeyEnv)
		if c.key == "" {
			return nil, fmt.Errorf("environment variable %s (the API key) is not set or empty", cfg.APIKeyEnv)
		}
		if strings.ContainsAny(c.key, "\r\n") {
			return nil, fmt.Errorf("environment variable %s (the API key) holds a line break", cfg.APIKeyEnv)
		}
	}
	if c.http == nil {
		// Many requests to one host at once: keep enough idle connections that a
		// concurrency of a few hundred reuses them instead of redialling.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = 1024
		tr.MaxIdleConnsPerHost = 1024
		c.http = &http.Client{Transport: tr}
	}
	return c, nil
}

// Endpoint turns a base URL into the chat completions URL: …/v1 and a bare host both
// give …/v1/chat/completions; a URL already ending in /chat/completions is kept.
func Endpoint(base string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(base))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("endpoint %q: want an http:// or https:// URL such as http://127.0.0.1:8000/v1", redactURL(base))
	}
	if u.User != nil {
		return "", fmt.Errorf("endpoint %q: credentials in the URL are not accepted; put the key in an environment variable and name it with the API key option", redactURL(base))
	}
	p := strings.TrimRight(u.Path, "/")
	switch {
	case strings.HasSuffix(p, "/chat/completions"):
	case strings.HasSuffix(p, "/v1"):
		p += "/chat/completions"
	default:
		p += "/v1/chat/completions"
	}
	u.Path = p
	return u.String(), nil
}

// redactURL drops any user:password part so an error never repeats it.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		u.User = nil
		return u.String()
	}
	return s
}

// URL is the chat completions URL requests go to.
func (c *Client) URL() string { return c.endpoint }

type wireRequest struct {
	Model       string    `json:"model"`
	Messages    []Message `json:"messages"`
	MaxTokens   int       `json:"max_tokens,omitempty"`
	Temperature *float64  `json:"temperature,omitempty"`
	N           int       `json:"n,omitempty"`
	Seed        *int      `json:"seed,omitempty"`
}

type wireResponse struct {
	Choices []struct {
		Message struct {
			Content *string `json:"content"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

// Chat sends req, retrying retryable failures up to MaxRetries times. It returns an
// *Error when the request failed, or ctx's error when ctx ended first.
func (c *Client) Chat(ctx context.Context, req Request) (*Response, error) {
	n := req.N
	if n == 1 {
		n = 0
	}
	body, err := json.Marshal(wireRequest{Model: c.cfg.Model, Messages: req.Messages, MaxTokens: req.MaxTokens,
		Temperature: req.Temperature, N: n, Seed: req.Seed})
	if err != nil {
		return nil, fmt.Errorf("encoding the request: %w", err)
	}
	for attempt := 0; ; attempt++ {
		resp, retryAfter, aerr := c.attempt(ctx, body)
		if aerr == nil {
			resp.Retries = attempt
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		aerr.Retries = attempt
		if !aerr.Retryable || attempt >= c.cfg.MaxRetries {
			if attempt > 0 {
				aerr.msg = fmt.Sprintf("%s (after %d retries)", aerr.msg, attempt)
			}
			return nil, aerr
		}
		if err := c.sleep(ctx, c.wait(attempt, retryAfter)); err != nil {
			return nil, err
		}
	}
}

// wait is the pause before retry number attempt+1: the server's Retry-After when it
// gave one (capped), else exponential backoff with jitter.
func (c *Client) wait(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, c.cfg.MaxRetryAfter)
	}
	d := c.cfg.BaseBackoff
	for i := 0; i < attempt && d < c.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.cfg.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// attempt makes one HTTP request. The returned duration is the server's Retry-After.
func (c *Client) attempt(ctx context.Context, body []byte) (*Response, time.Duration, *Error) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(actx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, 0, &Error{msg: "building the request: " + c.redact(err.Error())}
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	if c.key != "" {
		hreq.Header.Set("Authorization", "Bearer "+c.key)
	}
	hresp, err := c.http.Do(hreq)
	if err != nil {
		return nil, 0, &Error{Retryable: true, msg: c.describeTransport(actx, err)}
	}
	defer hresp.Body.Close()
	// A completion is small; 64 MiB bounds a hostile or broken server.
	raw, rerr := io.ReadAll(io.LimitReader(hresp.Body, 64<<20))
	if hresp.StatusCode != http.StatusOK {
		e := &Error{StatusCode: hresp.StatusCode, Retryable: retryableStatus(hresp.StatusCode),
			msg: fmt.Sprintf("%s: HTTP %d%s", c.endpoint, hresp.StatusCode, c.snippet(raw))}
		return nil, parseRetryAfter(hresp.Header.Get("Retry-After"), time.Now()), e
	}
	if rerr != nil {
		return nil, 0, &Error{StatusCode: hresp.StatusCode, Retryable: true, msg: c.describeTransport(actx, rerr)}
	}
	var w wireResponse
	if err := json.Unmarshal(raw, &w); err != nil {
		// A 200 with a body cut short is a transport fault (a proxy, a crashed worker):
		// asking again is the right answer.
		return nil, 0, &Error{StatusCode: hresp.StatusCode, Retryable: true,
			msg: fmt.Sprintf("%s: malformed JSON in the response: %s%s", c.endpoint, c.redact(err.Error()), c.snippet(raw))}
	}
	if len(w.Choices) == 0 {
		return nil, 0, &Error{StatusCode: hresp.StatusCode, Retryable: true, msg: c.endpoint + ": the response has no choices"}
	}
	out := &Response{Usage: Usage{PromptTokens: w.Usage.PromptTokens, CompletionTokens: w.Usage.CompletionTokens}}
	for _, ch := range w.Choices {
		content := ""
		if ch.Message.Content != nil {
			content = *ch.Message.Content
		}
		out.Choices = append(out.Choices, Choice{Content: content, FinishReason: ch.FinishReason})
	}
	return out, 0, nil
}

func (c *Client) describeTransport(actx context.Context, err error) string {
	if errors.Is(actx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("%s: no response within %s", c.endpoint, c.cfg.Timeout)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Sprintf("%s: no response within %s", c.endpoint, c.cfg.Timeout)
	}
	return c.redact(err.Error())
}

// snippet is the start of an error body, for the message, with the key removed in case
// a server echoes the request's headers.
func (c *Client) snippet(raw []byte) string {
	s := strings.TrimSpace(string(raw))
	if s == "" {
		return ""
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return ": " + c.redact(s)
}

func (c *Client) redact(s string) string {
	if c.key == "" {
		return s
	}
	return strings.ReplaceAll(s, c.key, "[redacted]")
}

func retryableStatus(code int) bool {
	return code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP date. Zero when
// absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs <= 0 || secs != secs {
			return 0
		}
		if secs > 1e6 {
			secs = 1e6
		}
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
