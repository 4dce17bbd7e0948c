package llm

import (
	"context"
	"net/http"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{"0.5", 500 * time.Millisecond},
		{"-1", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"1e12", 1e6 * time.Second},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestWaitBackoffGrowsWithJitterAndCaps(t *testing.T) {
	c, err := New(Config{BaseURL: "http://127.0.0.1:1/v1", BaseBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, MaxRetryAfter: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for attempt, full := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		full *= time.Millisecond
		seen := map[time.Duration]bool{}
		for range 50 {
			d := c.wait(attempt, 0)
			if d < full/2 || d > full {
				t.Fatalf("attempt %d: wait %s outside [%s, %s]", attempt, d, full/2, full)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("attempt %d: no jitter in 50 draws", attempt)
		}
	}
	if d := c.wait(0, 3*time.Second); d != 3*time.Second {
		t.Errorf("Retry-After 3s: waited %s", d)
	}
	if d := c.wait(0, time.Hour); d != 10*time.Second {
		t.Errorf("Retry-After 1h: waited %s, want the 10s cap", d)
	}
}

func TestChatStopsWhenContextEndsDuringBackoff(t *testing.T) {
	c, err := New(Config{BaseURL: "http://127.0.0.1:1/v1", MaxRetries: 5, BaseBackoff: time.Hour, MaxBackoff: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Chat(ctx, Request{Messages: []Message{{Role: "user", Content: "x"}}})
	if err != context.DeadlineExceeded {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %s", time.Since(start))
	}
}
