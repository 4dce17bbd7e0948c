package e2e

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/sweep"
)

// tinyBase is a base config for sweeps: six CPU steps on 64-token sequences, a
// checkpoint every three, so each point trains in seconds.
func tinyBase(t *testing.T, f *fixture, extra string) string {
	t.Helper()
	data := filepath.Join(repoRoot(), "examples", "data")
	cfg := `name: sw
model: ./model
data:
  train: ` + filepath.Join(data, "train.jsonl") + `
  eval: ` + filepath.Join(data, "eval.jsonl") + `
lora:
  r: 4
  alpha: 8
  target_modules: [q_proj, v_proj]
train:
  max_steps: 6
  batch_size: 4
  max_length: 64
  learning_rate: 1.0e-2
  warmup: 0
  logging_steps: 1
  save_steps: 3
  gradient_checkpointing: false
` + extra
	path := filepath.Join(f.dir, "base.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeSweep(t *testing.T, f *fixture, body string) string {
	t.Helper()
	path := filepath.Join(f.dir, "sweep.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// dryRunIDs lists the sweep's id and its points' run ids without running anything.
func dryRunIDs(t *testing.T, f *fixture, sweepPath string) (string, []string) {
	t.Helper()
	r := f.loractl(t, "sweep", sweepPath, "--dry-run", "--json")
	if r.code != 0 {
		t.Fatalf("dry run exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var out struct {
		ID     string `json:"sweep_id"`
		Points []struct {
			RunID string `json:"run_id"`
		} `json:"points"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(out.Points))
	for i, p := range out.Points {
		ids[i] = p.RunID
	}
	return out.ID, ids
}

func manifest(t *testing.T, f *fixture, id string) *run.Manifest {
	t.Helper()
	m, err := run.ReadManifest(filepath.Join(f.runs, id))
	if err != nil {
		t.Fatalf("run %s: %v", id, err)
	}
	return m
}

// waitFor polls cond every 100ms until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSweepKilledControllerContinues kills the sweep controller (SIGKILL) while the
// second point trains. Running the sweep again must not touch the finished point and
// must continue the other; a third run has nothing to do.
func TestSweepKilledControllerContinues(t *testing.T) {
	f := newFixture(t, "")
	tinyBase(t, f, "")
	sw := writeSweep(t, f, `name: resume
base: base.yaml
parameters:
  lora.r: [2, 4]
  lora.alpha:
    tied: 2 * lora.r
`)
	id, runs := dryRunIDs(t, f, sw)
	if len(runs) != 2 || !strings.HasPrefix(id, "resume-") {
		t.Fatalf("dry run: %s %v", id, runs)
	}
	if _, err := os.Stat(f.runs); !os.IsNotExist(err) {
		t.Fatal("--dry-run wrote the run store")
	}

	cmd := f.command(t, "sweep", sw)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	logged := func(id string) bool {
		select {
		case <-exited:
			t.Fatalf("the sweep ended before it was killed:\n%s", out.String())
		default:
		}
		events, _ := run.ReadEvents(filepath.Join(f.runs, id, run.EventsFile))
		for _, e := range events {
			if e.Type == run.EventLog {
				return true
			}
		}
		return false
	}
	// Poll often: on an idle machine a point trains in seconds.
	waitFor(t, 4*time.Minute, "point 1 to train", func() bool { return logged(runs[1]) })
	if m := manifest(t, f, runs[0]); m.State != run.StateCompleted {
		t.Fatalf("point 0 is %s when point 1 started", m.State)
	}
	_ = cmd.Process.Kill()
	<-exited
	// The trainer gets SIGTERM when its controller dies, saves a checkpoint and exits.
	pid, _ := strconv.Atoi(manifest(t, f, runs[1]).Handle.ID)
	waitFor(t, time.Minute, "the orphaned trainer to exit", func() bool { return syscall.Kill(pid, 0) != nil })
	first := manifest(t, f, runs[0])

	r := f.loractl(t, "sweep", sw)
	if r.code != 0 {
		t.Fatalf("second run exit %d\n%s\n%s\nfirst run:\n%s", r.code, r.stdout, r.stderr, out.String())
	}
	t.Logf("second run:\n%s", r.stdout)
	if strings.HasPrefix(r.stdout, "point 0 ") || strings.Contains(r.stdout, "\npoint 0 ") {
		t.Errorf("the completed point was touched:\n%s", r.stdout)
	}
	again := manifest(t, f, runs[0])
	if len(again.Attempts) != 1 || !again.EndedAt.Equal(first.EndedAt) {
		t.Errorf("point 0 ran again: %d attempts", len(again.Attempts))
	}
	m1 := manifest(t, f, runs[1])
	if m1.State != run.StateCompleted || m1.Sweep != id {
		t.Fatalf("point 1: %s, sweep %q", m1.State, m1.Sweep)
	}
	if strings.Contains(r.stdout, "point 1   resumed ") {
		if last := m1.LastAttempt(); len(m1.Attempts) != 2 || last.ResumeFrom == "" {
			t.Errorf("point 1 resumed but its attempts are %+v", m1.Attempts)
		}
	} else if !strings.Contains(r.stdout, "point 1   restarted ") {
		t.Errorf("point 1 neither resumed nor restarted:\n%s", r.stdout)
	}

	// Finished: a third run launches nothing.
	start := time.Now()
	r = f.loractl(t, "sweep", sw)
	if r.code != 0 || strings.Contains(r.stdout, "started") || strings.Contains(r.stdout, "resumed") || time.Since(start) > 10*time.Second {
		t.Fatalf("third run (%s) exit %d:\n%s", time.Since(start), r.code, r.stdout)
	}

	// status and results read the sweep's state.
	r = f.loractl(t, "sweep", "status", id, "--json")
	var tbl sweep.Table
	if err := json.Unmarshal([]byte(r.stdout), &tbl); err != nil || len(tbl.Rows) != 2 {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	for _, row := range tbl.Rows {
		if row.State != run.StateCompleted || row.EvalLossBefore == nil || row.EvalLossAfter == nil || row.WallSeconds <= 0 {
			t.Errorf("row %+v", row)
		}
	}
	r = f.loractl(t, "sweep", "results", id, "--csv")
	recs, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil || len(recs) != 3 || recs[1][0] != "1" || recs[2][0] != "2" {
		t.Fatalf("results --csv: %v\n%s", err, r.stdout)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "sweeps", id, sweep.ResultsFileName)); err != nil {
		t.Errorf("no results table in the sweep dir: %v", err)
	}
}

// TestSweepParallelWithRetry runs two good points at once and a failing one that is
// retried once and then reported, without stopping the others.
func TestSweepParallelWithRetry(t *testing.T) {
	f := newFixture(t, "")
	tinyBase(t, f, "")
	sw := writeSweep(t, f, `name: par
base: base.yaml
max_parallel: 2
retries: 1
parameters:
  lora.target_modules: [[q_proj, v_proj], [k_proj, o_proj], [no_such_proj]]
`)
	id, runs := dryRunIDs(t, f, sw)
	r := f.loractl(t, "sweep", sw)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1 (a point failed)\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "running 2 point(s) at a time on the CPU") {
		t.Errorf("output:\n%s", r.stdout)
	}
	a, b := manifest(t, f, runs[0]), manifest(t, f, runs[1])
	if a.State != run.StateCompleted || b.State != run.StateCompleted {
		t.Fatalf("good points: %s, %s\n%s", a.State, b.State, r.stdout)
	}
	if !a.StartedAt.Before(b.EndedAt) || !b.StartedAt.Before(a.EndedAt) {
		t.Errorf("the two good points did not overlap: %s-%s and %s-%s", a.StartedAt, a.EndedAt, b.StartedAt, b.EndedAt)
	}
	bad := manifest(t, f, runs[2])
	if bad.State != run.StateFailed || !strings.Contains(bad.Error, "no_such_proj") {
		t.Errorf("failing point: %s %q", bad.State, bad.Error)
	}
	st, err := sweep.ReadState(filepath.Join(f.dir, "sweeps", id))
	if err != nil {
		t.Fatal(err)
	}
	if p := st.Points[2]; p.Launches != 2 || p.Failures != 2 {
		t.Errorf("failing point launched %d times, %d failures; want 2 and 2", p.Launches, p.Failures)
	}
	// The retry ran in the same run dir: both failed attempts are in its history.
	if len(bad.Attempts) != 2 || bad.Attempts[0].State != run.StateFailed || bad.Attempts[1].State != run.StateFailed {
		t.Errorf("failing point's attempts: %+v", bad.Attempts)
	}
	if aside, _ := filepath.Glob(filepath.Join(f.runs, ".superseded", runs[2]+"-*")); len(aside) != 0 {
		t.Errorf("a retry moved the run aside: %v", aside)
	}
	var tbl sweep.Table
	r = f.loractl(t, "sweep", "results", id, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &tbl); err != nil || tbl.Best == nil {
		t.Fatalf("results --json: %v\n%s", err, r.stdout)
	}
	if _, err := os.Stat(filepath.Join(tbl.Best.AdapterPath, "adapter_model.safetensors")); err != nil {
		t.Errorf("best adapter: %v", err)
	}
	if tbl.Rows[2].Rank != 0 || tbl.Rows[2].State != run.StateFailed {
		t.Errorf("failed point ranked: %+v", tbl.Rows[2])
	}
}

// TestSweepSlurmArray runs a sweep as one job array on the real single-node cluster.
func TestSweepSlurmArray(t *testing.T) {
	if os.Getenv("LORACTL_SLURM_TEST") != "1" {
		t.Skip("no Slurm test cluster: run scripts/ci/slurm-up.sh and source the env file it prints")
	}
	if _, err := exec.LookPath("sbatch"); err != nil {
		t.Fatal("LORACTL_SLURM_TEST=1 but sbatch is not on PATH")
	}
	f := newFixture(t, "")
	// The batch script accepts plain absolute run dirs only.
	plain, err := os.MkdirTemp("", "loractl-e2e-sweep-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(plain) })
	f.runs = filepath.Join(plain, "runs")
	tinyBase(t, f, "driver:\n  name: slurm\n  slurm:\n    time: \"00:15:00\"\n    cpus_per_task: 1\n    max_requeues: 0\n")
	sw := writeSweep(t, f, `name: arr
base: base.yaml
max_parallel: 2
parameters:
  lora.r: [2, 4]
`)
	id, runs := dryRunIDs(t, f, sw)
	// Submit and return; then a second controller follows the array to its end.
	r := f.loractl(t, "sweep", sw, "--detach")
	if r.code != 0 || !strings.Contains(r.stdout, "submitted 2 points as one slurm job array (at most 2 at a time)") {
		t.Fatalf("--detach exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = f.loractl(t, "sweep", sw)
	if r.code != 0 || strings.Contains(r.stdout, "submitted") {
		t.Fatalf("following exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = f.loractl(t, "sweep", "status", id, "--json")
	var tbl sweep.Table
	if err := json.Unmarshal([]byte(r.stdout), &tbl); err != nil || len(tbl.Rows) != 2 || tbl.Best == nil {
		t.Fatalf("status: %v\n%s", err, r.stdout)
	}
	jobs := map[string]bool{}
	for i, rid := range runs {
		m := manifest(t, f, rid)
		if m.State != run.StateCompleted || m.Driver != "slurm" || m.Handle == nil || m.Sweep != id {
			t.Fatalf("point %d: %s driver %s\n%s", i, m.State, m.Driver, r.stdout)
		}
		var hs struct {
			JobID string `json:"job_id"`
			Task  *int   `json:"array_task_id"`
		}
		_ = json.Unmarshal(m.Handle.State, &hs)
		if hs.Task == nil || *hs.Task != i {
			t.Errorf("point %d handle %s", i, m.Handle.State)
		}
		jobs[hs.JobID] = true
		if _, err := os.Stat(filepath.Join(m.Result.AdapterPath, "adapter_model.safetensors")); err != nil {
			t.Errorf("point %d adapter: %v", i, err)
		}
	}
	if len(jobs) != 1 {
		t.Errorf("points in %d jobs, want one array: %v", len(jobs), jobs)
	}
	scripts, _ := filepath.Glob(filepath.Join(f.runs, "slurm-array-*.sbatch"))
	if len(scripts) != 1 {
		t.Fatalf("array scripts %v", scripts)
	}
	if b, _ := os.ReadFile(scripts[0]); !bytes.Contains(b, []byte("#SBATCH --array=0-1%2")) {
		t.Errorf("array script:\n%s", b)
	}
}
