package stop

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/internal/cmdtest"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/run/runtest"
)

// stop reaches a run no controller drives (detached) through its stored handle, and
// reports the checkpoint the trainer left.
func TestStopDetachedRun(t *testing.T) {
	d := &cmdtest.Driver{State: driver.StateRunning}
	f, out, _ := cmdtest.Factory(t, d)
	dir := filepath.Join(f.RunsDir(), "r1")
	cp := filepath.Join(dir, run.CheckpointsDir, "checkpoint-9")
	runtest.Checkpoint(t, cp, 9)
	if err := run.WriteManifest(dir, &run.Manifest{RunID: "r1", State: run.StateRunning,
		Handle: &driver.Handle{Driver: "fake", Version: driver.HandleVersion, ID: "1"}, Attempts: []run.Attempt{{N: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := run.AppendEvent(filepath.Join(dir, run.EventsFile), json.RawMessage(`{"type":"start","time":"2026-01-01T00:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	if err := run.AppendEvent(filepath.Join(dir, run.EventsFile), json.RawMessage(`{"type":"end","time":"2026-01-01T00:00:05Z","status":"interrupted","step":9}`)); err != nil {
		t.Fatal(err)
	}

	if err := stopRun(context.Background(), &Options{Factory: f, RunID: "r1", Grace: time.Second}); err != nil {
		t.Fatal(err)
	}
	if d.Stopped != 1 {
		t.Fatalf("driver Stop called %d times", d.Stopped)
	}
	m, _ := run.ReadManifest(dir)
	if m.State != run.StateInterrupted || !strings.Contains(out.String(), "checkpoint-9 (step 9)") || !strings.Contains(out.String(), "--resume r1") {
		t.Fatalf("state %s, output:\n%s", m.State, out)
	}
	// Stopping again is a no-op that says so.
	out.Reset()
	if err := stopRun(context.Background(), &Options{Factory: f, RunID: "r1", Grace: time.Second}); err != nil || !strings.Contains(out.String(), "already interrupted") || d.Stopped != 1 {
		t.Fatalf("second stop: %v %q (stops %d)", err, out, d.Stopped)
	}
}

// unreachable is a driver that accepts the stop but whose task never ends as far as
// anyone can tell (a cluster that does not answer).
type unreachable struct{ cmdtest.Driver }

func (d *unreachable) Stop(context.Context, *driver.Handle, time.Duration) error { return nil }

func TestStopUnconfirmedFails(t *testing.T) {
	d := &unreachable{cmdtest.Driver{State: driver.StateRunning}}
	f, out, _ := cmdtest.Factory(t, d)
	dir := filepath.Join(f.RunsDir(), "r1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := run.WriteManifest(dir, &run.Manifest{RunID: "r1", State: run.StateRunning,
		Handle: &driver.Handle{Driver: "fake", Version: driver.HandleVersion, ID: "1"}, Attempts: []run.Attempt{{N: 1}}}); err != nil {
		t.Fatal(err)
	}
	err := stopRun(context.Background(), &Options{Factory: f, RunID: "r1", Grace: time.Second, Confirm: 300 * time.Millisecond})
	if cmdutil.ExitCode(err) != 1 || !strings.Contains(err.Error(), "still shows running") {
		t.Fatalf("exit %d (%v), output %q", cmdutil.ExitCode(err), err, out)
	}
}

// When the run's lock cannot even be created (a read-only or full store), a dead run
// is still refreshed from its driver and not shown as running. (test/e2e's fault suite
// covers a really read-only store, where the state cannot be recorded either.)
func TestStopDeadRunOnReadOnlyStore(t *testing.T) {
	d := &cmdtest.Driver{State: driver.StateExited}
	f, out, _ := cmdtest.Factory(t, d)
	dir := filepath.Join(f.RunsDir(), "r1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := run.WriteManifest(dir, &run.Manifest{RunID: "r1", State: run.StateRunning,
		Handle: &driver.Handle{Driver: "fake", Version: driver.HandleVersion, ID: "1"}, Attempts: []run.Attempt{{N: 1}}}); err != nil {
		t.Fatal(err)
	}
	// A lock file that cannot be created stands in for a read-only or full store
	// (file modes do not stop root; the fault suite mounts a read-only store for real).
	if err := os.Mkdir(filepath.Join(dir, ".lock"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := stopRun(context.Background(), &Options{Factory: f, RunID: "r1", Grace: time.Second, Confirm: time.Second}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "already interrupted") {
		t.Fatalf("output %q", out)
	}

}
