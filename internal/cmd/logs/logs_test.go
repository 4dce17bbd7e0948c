package logs

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/internal/cmdtest"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/run"
)

var events = []string{
	`{"type":"start","time":"2026-01-01T00:00:00Z","device":"cpu","total_steps":4}`,
	`{"type":"log","time":"2026-01-01T00:00:01Z","step":2,"loss":1.5}`,
	`{"type":"checkpoint","time":"2026-01-01T00:00:02Z","step":2,"path":"/r/checkpoints/checkpoint-2"}`,
	`{"type":"end","time":"2026-01-01T00:00:03Z","status":"completed","step":4}`,
}

func newRun(t *testing.T, base string, state run.State) string {
	t.Helper()
	dir := filepath.Join(base, "r1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := run.WriteManifest(dir, &run.Manifest{RunID: "r1", State: state, Handle: &driver.Handle{Driver: "fake", Version: driver.HandleVersion, ID: "1"}}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, run.LogFile), []byte("trainer says hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestReplay(t *testing.T) {
	f, out, _ := cmdtest.Factory(t, &cmdtest.Driver{})
	dir := newRun(t, f.RunsDir(), run.StateCompleted)
	for _, e := range events {
		if err := run.AppendEvent(filepath.Join(dir, run.EventsFile), json.RawMessage(e)); err != nil {
			t.Fatal(err)
		}
	}
	if err := logsRun(context.Background(), &Options{Factory: f, RunID: "r1", JSON: true}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSpace(out.String()), "\n"); len(got) != len(events) || got[2] != events[2] {
		t.Fatalf("json replay:\n%s", out)
	}
	out.Reset()
	if err := logsRun(context.Background(), &Options{Factory: f, RunID: "r1"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"step 2/4", "loss 1.5000", "checkpoint saved at step 2", "trainer completed at step 4"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plain replay lacks %q:\n%s", want, out)
		}
	}
	out.Reset()
	if err := logsRun(context.Background(), &Options{Factory: f, RunID: "r1", TrainLog: true}); err != nil || out.String() != "trainer says hi\n" {
		t.Fatalf("train log: %q %v", out, err)
	}
}

// -f keeps reading while the run is live and returns once it has ended, with every
// event written before the end.
func TestFollowUntilEnd(t *testing.T) {
	d := &cmdtest.Driver{State: driver.StateRunning}
	f, out, _ := cmdtest.Factory(t, d)
	dir := newRun(t, f.RunsDir(), run.StateRunning)
	go func() {
		for _, e := range events {
			time.Sleep(30 * time.Millisecond)
			if err := run.AppendEvent(filepath.Join(dir, run.EventsFile), json.RawMessage(e)); err != nil {
				t.Error(err)
			}
		}
		m, _ := run.ReadManifest(dir)
		m.State = run.StateCompleted
		if err := run.WriteManifest(dir, m); err != nil {
			t.Error(err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := logsRun(ctx, &Options{Factory: f, RunID: "r1", Follow: true, JSON: true, Poll: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != len(events) {
		t.Fatalf("followed %d events, want %d:\n%s", n, len(events), out)
	}
}

func TestUnknownRun(t *testing.T) {
	f, _, _ := cmdtest.Factory(t, &cmdtest.Driver{})
	if err := logsRun(context.Background(), &Options{Factory: f, RunID: "nope"}); cmdutil.ExitCode(err) != cmdutil.ExitInvalid {
		t.Fatalf("unknown run: %v", err)
	}
}

// TestRunPrefix: a unique prefix of a run id names the run; an ambiguous one lists
// the matches and exits 2.
func TestRunPrefix(t *testing.T) {
	f, out, _ := cmdtest.Factory(t, &cmdtest.Driver{})
	newRun(t, f.RunsDir(), run.StateCompleted) // r1
	if err := logsRun(context.Background(), &Options{Factory: f, RunID: "r", TrainLog: true}); err != nil || out.String() != "trainer says hi\n" {
		t.Fatalf("prefix r: %q %v", out, err)
	}
	dir2 := filepath.Join(f.RunsDir(), "r2")
	if err := os.MkdirAll(dir2, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := run.WriteManifest(dir2, &run.Manifest{RunID: "r2", State: run.StateCompleted}); err != nil {
		t.Fatal(err)
	}
	err := logsRun(context.Background(), &Options{Factory: f, RunID: "r", TrainLog: true})
	if cmdutil.ExitCode(err) != cmdutil.ExitInvalid || !strings.Contains(err.Error(), "r1, r2") {
		t.Fatalf("ambiguous prefix: %v (exit %d)", err, cmdutil.ExitCode(err))
	}
}

// Text from a run's files reaches the terminal with its control characters escaped:
// an event or a trainer line must not clear the screen or retitle the window.
func TestLogsEscapeControlCharacters(t *testing.T) {
	f, out, _ := cmdtest.Factory(t, &cmdtest.Driver{})
	dir := newRun(t, f.RunsDir(), run.StateCompleted)
	hostile := "\x1b[2J\x1b]0;pwned\x07"
	if err := os.WriteFile(filepath.Join(dir, run.LogFile), []byte("trainer "+hostile+" \u009b1m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	msg, _ := json.Marshal(hostile + "\u009b")
	if err := run.AppendEvent(filepath.Join(dir, run.EventsFile), json.RawMessage(`{"type":"warning","time":"2026-01-01T00:00:00Z","code":"x","message":`+string(msg)+`}`)); err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{{}, {JSON: true}, {TrainLog: true}} {
		out.Reset()
		o.Factory, o.RunID = f, "r1"
		if err := logsRun(context.Background(), &o); err != nil {
			t.Fatal(err)
		}
		s := out.String()
		if strings.ContainsAny(s, "\x1b\x07\u009b") {
			t.Errorf("%+v printed raw control characters: %q", o, s)
		}
		if !o.JSON && !strings.Contains(s, `\x1b[2J\x1b]0;pwned\x07`) {
			t.Errorf("%+v: the escaped text is not shown: %q", o, s)
		}
	}
}

// An events.jsonl that is a FIFO (or a link) is refused at once, not read forever.
func TestLogsRefuseAFIFO(t *testing.T) {
	f, _, _ := cmdtest.Factory(t, &cmdtest.Driver{})
	dir := newRun(t, f.RunsDir(), run.StateCompleted)
	if err := syscall.Mkfifo(filepath.Join(dir, run.EventsFile), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- logsRun(context.Background(), &Options{Factory: f, RunID: "r1"}) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("logs on a FIFO: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("logs hung on a FIFO")
	}
}

// TestFollowSaysHowItEnded: -f on a run that ends without an end event (a detached
// trainer killed with SIGKILL) says that it failed and why, instead of just stopping
// after the last step as if all were well.
func TestFollowSaysHowItEnded(t *testing.T) {
	d := &cmdtest.Driver{State: driver.StateRunning}
	f, out, errOut := cmdtest.Factory(t, d)
	dir := newRun(t, f.RunsDir(), run.StateRunning)
	go func() {
		for _, e := range events[:3] {
			time.Sleep(30 * time.Millisecond)
			if err := run.AppendEvent(filepath.Join(dir, run.EventsFile), json.RawMessage(e)); err != nil {
				t.Error(err)
			}
		}
		m, _ := run.ReadManifest(dir)
		m.State, m.Error = run.StateFailed, "the trainer was killed"
		if err := run.WriteManifest(dir, m); err != nil {
			t.Error(err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := logsRun(ctx, &Options{Factory: f, RunID: "r1", Follow: true, Poll: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "checkpoint saved at step 2") || !strings.Contains(errOut.String(), "r1 failed: the trainer was killed") {
		t.Fatalf("stdout:\n%s\nstderr:\n%s", out, errOut)
	}
}
