package runs

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/internal/cmdtest"
	"github.com/loractl/loractl/run"
)

func seed(t *testing.T, base string) {
	t.Helper()
	before, after := 2.5, 1.25
	improved := true
	for _, m := range []*run.Manifest{
		{RunID: "done-1", State: run.StateCompleted, Driver: "local", CreatedAt: time.Unix(100, 0), StartedAt: time.Unix(100, 0), EndedAt: time.Unix(160, 0),
			Result: &run.Result{Step: 30, EvalLossBefore: &before, EvalLossAfter: &after, Improved: &improved}},
		// A detached run whose trainer has since stopped: runs must bring it up to date.
		{RunID: "gone-2", State: run.StateRunning, Driver: "fake", CreatedAt: time.Unix(200, 0), StartedAt: time.Unix(200, 0),
			Handle: &driver.Handle{Driver: "fake", Version: driver.HandleVersion, ID: "1"}, Attempts: []run.Attempt{{N: 1, State: run.StateRunning}}},
	} {
		dir := filepath.Join(base, m.RunID)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := run.WriteManifest(dir, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := run.AppendEvent(filepath.Join(base, "gone-2", run.EventsFile), json.RawMessage(`{"type":"start","time":"2026-01-01T00:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	if err := run.AppendEvent(filepath.Join(base, "gone-2", run.EventsFile), json.RawMessage(`{"type":"end","time":"2026-01-01T00:00:09Z","status":"interrupted","step":7}`)); err != nil {
		t.Fatal(err)
	}
}

func TestRunsTableRefreshesDetachedRuns(t *testing.T) {
	d := &cmdtest.Driver{State: driver.StateExited}
	f, out, _ := cmdtest.Factory(t, d)
	seed(t, f.RunsDir())
	if err := runsRun(context.Background(), &Options{Factory: f}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "RUN") {
		t.Fatalf("table:\n%s", out)
	}
	// Newest first; the detached run is now interrupted at step 7.
	if !strings.Contains(lines[1], "gone-2") || !strings.Contains(lines[1], "interrupted") || !strings.Contains(lines[1], " 7 ") {
		t.Errorf("refreshed row: %q", lines[1])
	}
	if !strings.Contains(lines[2], "2.5000 -> 1.2500") || !strings.Contains(lines[2], " adopt ") || !strings.Contains(lines[2], "1m0s") {
		t.Errorf("completed row: %q", lines[2])
	}
	m, _ := run.ReadManifest(filepath.Join(f.RunsDir(), "gone-2"))
	if m.State != run.StateInterrupted {
		t.Errorf("manifest not updated: %s", m.State)
	}
}

func TestRunsJSONAndEmptyStore(t *testing.T) {
	f, out, _ := cmdtest.Factory(t, &cmdtest.Driver{State: driver.StateRunning})
	if err := runsRun(context.Background(), &Options{Factory: f, JSON: true}); err != nil || strings.TrimSpace(out.String()) != "[]" {
		t.Fatalf("empty store: %q %v", out, err)
	}
	out.Reset()
	seed(t, f.RunsDir())
	if err := runsRun(context.Background(), &Options{Factory: f, JSON: true}); err != nil {
		t.Fatal(err)
	}
	var ms []run.Manifest
	if err := json.Unmarshal(out.Bytes(), &ms); err != nil || len(ms) != 2 || ms[0].State != run.StateRunning {
		t.Fatalf("json: %v %+v", err, ms)
	}
}

// TestUnreadableManifestIsReported: a run whose manifest is damaged is not silently
// missing from the list; the trainer's store dirs are not runs.
func TestUnreadableManifestIsReported(t *testing.T) {
	f, out, errOut := cmdtest.Factory(t, &cmdtest.Driver{State: driver.StateExited})
	l := zerolog.New(errOut)
	f.Log = &l
	seed(t, f.RunsDir())
	bad := filepath.Join(f.RunsDir(), "torn-3")
	if err := os.MkdirAll(bad, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bad, run.ManifestFile), []byte(`{"version":1,"run_id":`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(f.RunsDir(), ".trainer", "abc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := runsRun(context.Background(), &Options{Factory: f}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut.String(), "torn-3") || !strings.Contains(errOut.String(), "cannot be read") || strings.Contains(errOut.String(), ".trainer") {
		t.Errorf("stderr:\n%s", errOut)
	}
	if strings.Count(strings.TrimSpace(out.String()), "\n") != 2 {
		t.Errorf("table:\n%s", out)
	}
}

// The task evaluation's verdict wins over the eval-loss comparison.
func TestVerdictColumn(t *testing.T) {
	yes, no := true, false
	cases := []struct {
		r    *run.Result
		want string
	}{
		{nil, "-"},
		{&run.Result{}, "-"},
		{&run.Result{Improved: &yes}, "adopt"},
		{&run.Result{Improved: &no}, "do_not_adopt"},
		{&run.Result{Improved: &no, Verdict: "inconclusive"}, "inconclusive"},
	}
	for _, tc := range cases {
		if got := verdict(&run.Manifest{Result: tc.r}); got != tc.want {
			t.Errorf("verdict(%+v) = %q, want %q", tc.r, got, tc.want)
		}
	}
}

func TestDriverColumnShowsLayout(t *testing.T) {
	m := &run.Manifest{Driver: "slurm"}
	if got := driverCol(m); got != "slurm" {
		t.Errorf("single process: %q", got)
	}
	m.Distributed = &run.Distributed{WorldSize: 8, Nodes: 2, NprocPerNode: 4, Strategy: "ddp", Backend: "nccl"}
	if got := driverCol(m); got != "slurm 2×4 ddp/nccl" {
		t.Errorf("distributed: %q", got)
	}
}
