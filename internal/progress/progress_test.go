package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/loractl/loractl/run"
)

func ev(t *testing.T, line string) *run.Event {
	t.Helper()
	e, err := run.ParseEvent([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestModes(t *testing.T) {
	lines := []string{
		`{"type":"start","time":"2026-01-01T00:00:00Z","device":"cpu","precision":"fp32","trainable_params":8192,"total_params":48600,"total_steps":10,"resume_from":"/r/checkpoints/checkpoint-4","resume_step":4}`,
		`{"type":"log","time":"2026-01-01T00:00:01Z","step":5,"total_steps":10,"loss":2.5,"learning_rate":0.0002,"tokens_per_second":300}`,
		`{"type":"checkpoint","time":"2026-01-01T00:00:02Z","step":6,"path":"/r/checkpoints/checkpoint-6"}`,
		`{"type":"log","time":"2026-01-01T00:00:03Z","step":7,"total_steps":10,"loss":2.0}`,
	}
	clock := time.Unix(0, 0)
	cases := []struct {
		name       string
		tty, json  bool
		want, dont []string
	}{
		{"plain", false, false,
			[]string{"resuming at step 4", "8.2K trainable of 48.6K", "step 5/10", "loss 2.5000", "lr 2.00e-04", "300 tok/s", "checkpoint saved at step 6", "ETA 3s"},
			[]string{"\r", "\033["}},
		{"terminal", true, false, []string{"\r\033[Kstep 7/10", "\r\033[Kcheckpoint saved at step 6: /r/checkpoints/checkpoint-6\nstep 5/10"}, nil},
		{"json", false, true, []string{lines[2] + "\n"}, []string{"step 5/10"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			now := clock
			p := &Progress{Out: &out, TTY: tc.tty, JSON: tc.json, now: func() time.Time { now = now.Add(time.Second); return now }}
			for _, l := range lines {
				p.Event(ev(t, l))
			}
			p.Done()
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%q", w, out.String())
				}
			}
			for _, d := range tc.dont {
				if strings.Contains(out.String(), d) {
					t.Errorf("output has %q:\n%q", d, out.String())
				}
			}
		})
	}
}

// TestReplayETA: replaying an old run's events computes the ETA from the events' own
// times (it said "ETA 0s" when the replay itself took no time).
func TestReplayETA(t *testing.T) {
	var out bytes.Buffer
	p := &Progress{Out: &out} // real clock: the events are years old
	for _, l := range []string{
		`{"type":"start","time":"2024-01-01T00:00:00Z","total_steps":100}`,
		`{"type":"log","time":"2024-01-01T00:00:10Z","step":10,"loss":2}`,
		`{"type":"log","time":"2024-01-01T00:01:10Z","step":20,"loss":1.5}`,
	} {
		p.Event(ev(t, l))
	}
	if !strings.Contains(out.String(), "step 20/100") || !strings.Contains(out.String(), "ETA 8m0s") {
		t.Errorf("replay output:\n%s", out.String())
	}
}

// TestAboveAndClear: a log line written through Above lands on its own line above the
// live status, which is drawn again; Clear erases the status for good.
func TestAboveAndClear(t *testing.T) {
	var screen bytes.Buffer // stdout and stderr on one terminal
	p := &Progress{Out: &screen, TTY: true}
	p.Event(ev(t, `{"type":"start","time":"2026-01-01T00:00:00Z","total_steps":10}`))
	p.Event(ev(t, `{"type":"log","time":"2026-01-01T00:00:01Z","step":3,"loss":1}`))
	screen.Reset()
	log := p.Above(&screen)
	if _, err := log.Write([]byte("WRN stopping: saving a checkpoint")); err != nil {
		t.Fatal(err)
	}
	want := "\r\033[KWRN stopping: saving a checkpoint\nstep 3/10"
	if !strings.HasPrefix(screen.String(), want) {
		t.Fatalf("screen after a log line:\n%q\nwant prefix %q", screen.String(), want)
	}
	screen.Reset()
	p.Clear()
	p.Done()
	if _, err := log.Write([]byte("INF trainer stopped\n")); err != nil {
		t.Fatal(err)
	}
	if got := screen.String(); got != "\r\033[KINF trainer stopped\n" {
		t.Fatalf("after Clear and Done: %q", got)
	}
}

// blockedWriter never returns from Write until released: stdout piped into a pager
// that stopped reading.
type blockedWriter struct{ release chan struct{} }

func (w blockedWriter) Write(b []byte) (int, error) { <-w.release; return len(b), nil }

// TestAboveNotBlockedByStdout: without a terminal there is no live line to redraw, so
// a log line (the Ctrl-C warning, logged before the signal is forwarded to the trainer)
// must not wait for an event stuck writing to a stdout nobody reads.
func TestAboveNotBlockedByStdout(t *testing.T) {
	out := blockedWriter{release: make(chan struct{})}
	defer close(out.release)
	p := &Progress{Out: out}
	go p.Event(ev(t, `{"type":"log","time":"2026-01-01T00:00:01Z","step":3,"loss":1}`))
	time.Sleep(50 * time.Millisecond) // the event now holds the progress, blocked
	var logs bytes.Buffer
	done := make(chan struct{})
	go func() {
		if _, err := p.Above(&logs).Write([]byte("WRN stopping: saving a checkpoint\n")); err != nil {
			t.Error(err)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("a log line waited for a blocked stdout")
	}
}

// TestDistributedStart: the start line says how many processes train and how.
func TestDistributedStart(t *testing.T) {
	var out bytes.Buffer
	p := &Progress{Out: &out}
	p.Event(ev(t, `{"type":"start","time":"2026-01-01T00:00:00Z","device":"cuda:0 H100","precision":"bf16","total_steps":10,"distributed":{"world_size":8,"nodes":2,"nproc_per_node":4,"strategy":"fsdp","backend":"nccl"}}`))
	p.Done()
	if want := "10 steps, 8 processes (fsdp over 2 node(s), nccl)"; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
}
