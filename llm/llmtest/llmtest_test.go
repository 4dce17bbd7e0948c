package llmtest

import (
	"net/http"
	"strings"
	"testing"
)

func post(t *testing.T, s *Server, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(strings.TrimSuffix(s.URL, "/v1")+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

func TestScheduleCountsAndFaults(t *testing.T) {
	s, err := New(Options{Schedule: map[string][]Fault{"q": {RateLimit, ServerError, Malformed, Length}}, RetryAfter: "7"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	req := `{"model":"m","messages":[{"role":"system","content":"sys"},{"role":"user","content":"q"}]}`
	wants := []struct {
		code int
		has  string
	}{{429, "rate limited"}, {500, "internal"}, {200, `"content":"cut`}, {200, `"finish_reason":"length"`}, {200, `"finish_reason":"stop"`}}
	for i, w := range wants {
		code, body := post(t, s, req)
		if code != w.code || !strings.Contains(body, w.has) {
			t.Errorf("attempt %d: %d %s, want %d containing %q", i, code, body, w.code, w.has)
		}
	}
	if s.Attempts("q") != 5 || s.Answered("q") != 2 || s.Total() != 5 {
		t.Errorf("attempts/answered/total = %d/%d/%d, want 5/2/5", s.Attempts("q"), s.Answered("q"), s.Total())
	}
	if code, _ := post(t, s, `{"messages":[]}`); code != 400 {
		t.Errorf("empty messages: %d, want 400", code)
	}
}

func TestParseFaultRoundTrip(t *testing.T) {
	for f := range faultNames {
		got, err := ParseFault(f.String())
		if err != nil || got != f {
			t.Errorf("ParseFault(%q) = %v, %v", f.String(), got, err)
		}
	}
	if _, err := ParseFault("teapot"); err == nil {
		t.Error("ParseFault(teapot): want an error")
	}
}
