package runs

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
)

func seedMany(t *testing.T, base string) {
	t.Helper()
	for i, m := range []*run.Manifest{
		{RunID: "lr-a-0000000001", Name: "lr-a", State: run.StateCompleted, Sweep: "grid-0123456789"},
		{RunID: "lr-b-0000000002", Name: "lr-b", State: run.StateFailed, Sweep: "grid-0123456789"},
		{RunID: "solo-0000000003", Name: "solo", State: run.StateCompleted},
		{RunID: "live-0000000004", Name: "live", State: run.StateRunning, Driver: "fake",
			Handle: &driver.Handle{Driver: "fake", Version: driver.HandleVersion, ID: "1"}, Attempts: []run.Attempt{{N: 1, State: run.StateRunning}}},
	} {
		m.CreatedAt = time.Unix(int64(100*(i+1)), 0)
		dir := filepath.Join(base, m.RunID)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := run.WriteManifest(dir, m); err != nil {
			t.Fatal(err)
		}
	}
	ev := filepath.Join(base, "live-0000000004", run.EventsFile)
	for _, e := range []string{
		`{"type":"start","time":"2026-01-01T00:00:00Z","total_steps":100}`,
		`{"type":"log","time":"2026-01-01T00:00:10Z","step":10,"loss":2.0}`,
		`{"type":"log","time":"2026-01-01T00:00:30Z","step":30,"loss":1.25}`,
	} {
		if err := run.AppendEvent(ev, json.RawMessage(e)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRunsFilters(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{"all", Options{}, []string{"lr-a-0000000001", "lr-b-0000000002", "solo-0000000003", "live-0000000004"}},
		{"state", Options{States: []string{"completed"}}, []string{"lr-a-0000000001", "solo-0000000003"}},
		{"two states", Options{States: []string{"failed", "running"}}, []string{"lr-b-0000000002", "live-0000000004"}},
		{"name glob", Options{Name: "lr-*"}, []string{"lr-a-0000000001", "lr-b-0000000002"}},
		{"name prefix", Options{Name: "sol"}, []string{"solo-0000000003"}},
		{"sweep prefix", Options{Sweep: "grid"}, []string{"lr-a-0000000001", "lr-b-0000000002"}},
		{"sweep and state", Options{Sweep: "grid-01", States: []string{"failed"}}, []string{"lr-b-0000000002"}},
		{"nothing matches", Options{Name: "zzz"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, out, _ := cmdtest.Factory(t, &cmdtest.Driver{State: driver.StateRunning})
			seedMany(t, f.RunsDir())
			o := tt.opts
			o.Factory, o.JSON = f, true
			if err := runsRun(context.Background(), &o); err != nil {
				t.Fatal(err)
			}
			var got []struct {
				RunID string `json:"run_id"`
			}
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			ids := map[string]bool{}
			for _, g := range got {
				ids[g.RunID] = true
			}
			if len(ids) != len(tt.want) {
				t.Fatalf("listed %v, want %v", ids, tt.want)
			}
			for _, w := range tt.want {
				if !ids[w] {
					t.Errorf("listed %v, want %v", ids, tt.want)
				}
			}
		})
	}
}

func TestRunsBadFilters(t *testing.T) {
	for _, o := range []Options{{States: []string{"done"}}, {Name: "lr-[a"}} {
		f, _, _ := cmdtest.Factory(t, &cmdtest.Driver{})
		o.Factory = f
		if err := runsRun(context.Background(), &o); cmdutil.ExitCode(err) != cmdutil.ExitInvalid {
			t.Errorf("%+v: %v, want exit 2", o, err)
		}
	}
}

// TestRunsLiveProgress: a running run shows its latest step, loss and ETA from its events.
func TestRunsLiveProgress(t *testing.T) {
	f, out, _ := cmdtest.Factory(t, &cmdtest.Driver{State: driver.StateRunning})
	seedMany(t, f.RunsDir())
	if err := runsRun(context.Background(), &Options{Factory: f, States: []string{"running"}}); err != nil {
		t.Fatal(err)
	}
	// 20 steps in 20 s, 70 to go: ETA 1m10s.
	for _, want := range []string{"30/100", "1.2500", "1m10s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	out.Reset()
	if err := runsRun(context.Background(), &Options{Factory: f, States: []string{"running"}, JSON: true}); err != nil {
		t.Fatal(err)
	}
	var got []struct {
		Live *liveProgress `json:"live"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || len(got) != 1 || got[0].Live == nil ||
		got[0].Live.Step != 30 || got[0].Live.ETASeconds == nil || *got[0].Live.ETASeconds != 70 {
		t.Fatalf("json live: %s (%v)", out, err)
	}
}

// TestRunsSweepPrefix: --sweep takes a sweep id or a unique prefix of one; a prefix of
// two sweeps' ids is refused with both, not answered with the runs of both.
func TestRunsSweepPrefix(t *testing.T) {
	f, out, _ := cmdtest.Factory(t, &cmdtest.Driver{})
	seedMany(t, f.RunsDir())
	dir := filepath.Join(f.RunsDir(), "lr-c-0000000005")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := run.WriteManifest(dir, &run.Manifest{RunID: "lr-c-0000000005", Name: "lr-c", State: run.StateCompleted, Sweep: "grid-9999999999"}); err != nil {
		t.Fatal(err)
	}
	err := runsRun(context.Background(), &Options{Factory: f, Sweep: "grid", JSON: true})
	if cmdutil.ExitCode(err) != cmdutil.ExitInvalid || !strings.Contains(err.Error(), "grid-0123456789, grid-9999999999") {
		t.Fatalf("ambiguous --sweep: %v (exit %d)\n%s", err, cmdutil.ExitCode(err), out)
	}
	if err := runsRun(context.Background(), &Options{Factory: f, Sweep: "grid-9", JSON: true}); err != nil || !strings.Contains(out.String(), "lr-c-0000000005") || strings.Contains(out.String(), "lr-a") {
		t.Fatalf("unique --sweep prefix: %v\n%s", err, out)
	}
}
