package slurm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/drivertest"
	"github.com/loractl/loractl/driver/slurm"
)

// needCluster skips unless the test harness started a cluster (scripts/ci/slurm-up.sh
// writes LORACTL_SLURM_TEST=1 and SLURM_CONF into BASE/env). It returns a run-dir base
// whose path the batch script accepts (t.TempDir names may hold unusual characters).
func needCluster(t *testing.T) string {
	t.Helper()
	if os.Getenv("LORACTL_SLURM_TEST") != "1" {
		t.Skip("no Slurm test cluster: run scripts/ci/slurm-up.sh and source the env file it prints (sets LORACTL_SLURM_TEST=1)")
	}
	if _, err := exec.LookPath("sbatch"); err != nil {
		t.Fatal("LORACTL_SLURM_TEST=1 but sbatch is not on PATH")
	}
	base, err := os.MkdirTemp("", "loractl-slurm-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(base)
		}
	})
	return base
}

// newDriver polls often: the test cluster answers in milliseconds.
func newDriver() *slurm.Driver { return &slurm.Driver{PollInterval: 200 * time.Millisecond} }

func testDriver(*testing.T) driver.Driver { return newDriver() }

// unknownHandle names a job id the cluster never issued.
func unknownHandle(valid *driver.Handle) *driver.Handle {
	u := *valid
	var st map[string]any
	_ = json.Unmarshal(valid.State, &st)
	st["job_id"] = "999999999"
	delete(st, "array_task_id")
	u.State, _ = json.Marshal(st)
	u.ID = "999999999"
	return &u
}

// TestContract runs the driver contract suite against the real cluster. Requeueing is
// off here: the suite expects a USR1 to end the trainer with 75, while the tests below
// cover USR1 → checkpoint → requeue → resume.
func TestContract(t *testing.T) {
	base := needCluster(t)
	drivertest.Run(t, testDriver,
		drivertest.WithOptions(json.RawMessage(`{"max_requeues": 0}`)),
		drivertest.WithRunDirBase(base),
		drivertest.WithTimeout(150*time.Second),
		drivertest.WithUnknownHandle(unknownHandle))
}

var runSeq atomic.Int32

// newTask makes a run dir under base and a task that runs testdata/resume_trainer.sh.
func newTask(t *testing.T, base string, env map[string]string, opts string) *driver.Task {
	t.Helper()
	trainer, err := filepath.Abs("testdata/resume_trainer.sh")
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%s-%d", strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())), runSeq.Add(1))
	dir := filepath.Join(base, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "resolved.json"), []byte(`{"version": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if opts == "" {
		opts = "{}"
	}
	return &driver.Task{
		RunID:   id,
		RunDir:  dir,
		Command: []string{"/bin/sh", trainer, "--config", filepath.Join(dir, "resolved.json"), "--run-dir", dir},
		Env:     env,
		LogPath: filepath.Join(dir, "train.log"),
		Options: json.RawMessage(opts),
	}
}

func start(t *testing.T, ctx context.Context, d *slurm.Driver, task *driver.Task) *driver.Handle {
	t.Helper()
	h, err := d.Start(ctx, task)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background(), h, 0) })
	return h
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// readEvents parses RUN_DIR/events.jsonl.
func readEvents(t *testing.T, dir string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "events.jsonl"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	lines := strings.Split(string(b), "\n")
	for i, line := range lines {
		if line == "" {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			if i == len(lines)-1 {
				break // still being written
			}
			t.Fatalf("%s/events.jsonl:%d: %v", dir, i+1, err)
		}
		out = append(out, ev)
	}
	return out
}

func ofType(evs []map[string]any, typ string) []map[string]any {
	var out []map[string]any
	for _, e := range evs {
		if e["type"] == typ {
			out = append(out, e)
		}
	}
	return out
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tail returns the last n lines of a file, as a failed run's report shows them.
func tail(t *testing.T, path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func scontrolField(t *testing.T, id, key string) string {
	out, err := exec.Command("scontrol", "-o", "show", "job", id).Output()
	if err != nil {
		t.Fatalf("scontrol show job %s: %v", id, err)
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// TestJobRunsEndToEnd submits a job that asks for a GPU, watches it run, and reads its
// end from a fresh driver (a new controller) and from accounting.
func TestJobRunsEndToEnd(t *testing.T) {
	base := needCluster(t)
	t.Parallel()
	ctx := testCtx(t, 2*time.Minute)
	d := newDriver()
	task := newTask(t, base, map[string]string{"FAKE_STEPS": "10"}, `{"gpus": 1, "cpus_per_task": 1, "mem": "256M", "time": "10", "signal_grace": 30}`)
	task.PassEnv = []string{"LORACTL_SLURM_SECRET"}
	d.Env = append(os.Environ(), "LORACTL_SLURM_SECRET=not-in-any-file")
	h := start(t, ctx, d, task)
	waitFor(t, ctx, "the trainer's start event", func() bool { return len(ofType(readEvents(t, task.RunDir), "start")) > 0 })
	st, err := d.Inspect(ctx, h)
	if err != nil || st.State != driver.StateRunning || st.StartedAt.IsZero() {
		t.Errorf("Inspect while running = %+v, %v", st, err)
	}

	stored, _ := json.Marshal(h)
	var again driver.Handle
	if err := json.Unmarshal(stored, &again); err != nil {
		t.Fatal(err)
	}
	res, err := newDriver().Wait(ctx, &again)
	if err != nil || !res.Successful() || res.Reason != "COMPLETED" {
		t.Fatalf("Wait from a new driver = %+v, %v\n%s", res, err, tail(t, task.LogPath, 20))
	}

	evs := readEvents(t, task.RunDir)
	if s := ofType(evs, "start")[0]; s["cuda_visible_devices"] != "0" {
		t.Errorf("the job asked for a GPU but saw CUDA_VISIBLE_DEVICES=%v", s["cuda_visible_devices"])
	}
	if n := len(ofType(evs, "log")); n != 10 {
		t.Errorf("%d log events, want 10", n)
	}
	as, err := slurm.ReadAttempts(task.RunDir)
	if err != nil || len(as) != 1 || as[0].ExitCode == nil || *as[0].ExitCode != 0 || as[0].Node == "" {
		t.Errorf("attempts = %+v, %v; want one that exited 0", as, err)
	}
	log := tail(t, task.LogPath, 50)
	for _, want := range []string{"loractl: attempt 1 of job", "resume trainer: starting at step 0", "loractl: trainer exited with status 0"} {
		if !strings.Contains(log, want) {
			t.Errorf("train.log lacks %q:\n%s", want, log)
		}
	}
	for _, f := range []string{"slurm.sbatch", "train.log", "attempts.jsonl"} {
		if b, _ := os.ReadFile(filepath.Join(task.RunDir, f)); strings.Contains(string(b), "not-in-any-file") {
			t.Errorf("%s holds the value of a PassEnv variable", f)
		}
	}
	if strings.Contains(string(stored), "not-in-any-file") {
		t.Error("the handle holds the value of a PassEnv variable")
	}

	// Once the job ages out of the controller, accounting (here the job-completion
	// log) gives the same answer.
	acc, err := d.AccountingStatus(ctx, h)
	if err != nil || acc.State != driver.StateExited || !acc.Exit.Successful() {
		t.Errorf("accounting status = %+v, %v; want exited successfully", acc, err)
	}
}

// TestFailingJobReportsCodeAndLog: the trainer's exit code comes back through Slurm,
// and the log tail shows why.
func TestFailingJobReportsCodeAndLog(t *testing.T) {
	base := needCluster(t)
	t.Parallel()
	ctx := testCtx(t, 2*time.Minute)
	d := newDriver()
	task := newTask(t, base, map[string]string{"FAKE_STEPS": "2", "FAKE_EXIT": "3"}, "")
	h := start(t, ctx, d, task)
	res, err := d.Wait(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || res.Successful() || res.Reason != "FAILED" {
		t.Errorf("Wait = %+v, want exit code 3, FAILED", res)
	}
	st, err := d.Inspect(ctx, h)
	if err != nil || st.Reason != "FAILED: NonZeroExitCode" {
		t.Errorf("Inspect = %+v, %v; want reason FAILED: NonZeroExitCode", st, err)
	}
	if log := tail(t, task.LogPath, 5); !strings.Contains(log, "RuntimeError: resume trainer asked to fail with 3") {
		t.Errorf("the log tail does not show the error:\n%s", log)
	}
	acc, err := d.AccountingStatus(ctx, h)
	if err != nil || acc.Exit == nil || acc.Exit.ExitCode != 3 {
		t.Errorf("accounting status = %+v, %v; want exit code 3", acc, err)
	}
}

// checkResumed checks a run that was interrupted and requeued: every attempt but the
// last exited 75 after a USR1 and was requeued, each attempt resumed at the step its
// predecessor checkpointed, and the run reached its last step.
func checkResumed(t *testing.T, task *driver.Task, steps int, signal string) []slurm.Attempt {
	t.Helper()
	as, err := slurm.ReadAttempts(task.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) < 2 {
		t.Fatalf("%d attempts, want at least 2: %+v\n%s", len(as), as, tail(t, task.LogPath, 30))
	}
	for i, a := range as {
		last := i == len(as)-1
		switch {
		case a.ExitCode == nil:
			t.Errorf("attempt %d recorded no end: %+v", i+1, a)
		case !last && (*a.ExitCode != 75 || a.Signal != signal || a.Requeued != (signal == "USR1")):
			// After USR1 the script requeues the job; after a preemption's TERM, Slurm does.
			t.Errorf("attempt %d = %+v, want exit 75 after %s, requeued by the script: %v", i+1, a, signal, signal == "USR1")
		case last && (*a.ExitCode != 0 || a.Requeued):
			t.Errorf("last attempt = %+v, want exit 0", a)
		}
		if a.RestartCount != i {
			t.Errorf("attempt %d has restart count %d", i+1, a.RestartCount)
		}
	}
	evs := readEvents(t, task.RunDir)
	starts, ckpts := ofType(evs, "start"), ofType(evs, "checkpoint")
	if len(starts) != len(as) || len(ckpts) != len(as)-1 {
		t.Fatalf("%d starts and %d checkpoints for %d attempts", len(starts), len(ckpts), len(as))
	}
	if starts[0]["resume_step"].(float64) != 0 {
		t.Errorf("the first attempt resumed: %v", starts[0])
	}
	for i, c := range ckpts {
		if got, want := starts[i+1]["resume_step"], c["step"]; got != want {
			t.Errorf("attempt %d resumed at step %v, want the checkpoint's step %v", i+2, got, want)
		}
	}
	// Steps continue across attempts: every step logged once, in order.
	logs := ofType(evs, "log")
	for i, l := range logs {
		if int(l["step"].(float64)) != i+1 {
			t.Fatalf("log event %d has step %v: the step count did not continue", i, l["step"])
		}
	}
	if len(logs) != steps {
		t.Errorf("%d steps logged, want %d", len(logs), steps)
	}
	return as
}

// TestUSR1CheckpointRequeueResume is Slurm's warning before a time limit or preemption,
// delivered by hand as the cluster would: USR1 to the batch shell. The trainer saves a
// checkpoint and exits 75, the script requeues the job, and the next attempt resumes.
func TestUSR1CheckpointRequeueResume(t *testing.T) {
	base := needCluster(t)
	t.Parallel()
	ctx := testCtx(t, 2*time.Minute)
	d := newDriver()
	task := newTask(t, base, map[string]string{"FAKE_STEPS": "30", "FAKE_STEP_SECONDS": "0.1"}, "")
	h := start(t, ctx, d, task)
	id, _ := slurm.JobID(h)
	waitFor(t, ctx, "step 5", func() bool { return len(ofType(readEvents(t, task.RunDir), "log")) >= 5 })
	if out, err := exec.Command("scancel", "--signal=USR1", "--batch", id).CombinedOutput(); err != nil {
		t.Fatalf("scancel --signal=USR1 --batch: %v\n%s", err, out)
	}
	sawRequeue := false
	waitFor(t, ctx, "the requeued job to be pending", func() bool {
		st, err := d.Inspect(ctx, h)
		if err == nil && st.State == driver.StatePending && strings.HasPrefix(st.Reason, "requeued") {
			sawRequeue = true
		}
		return sawRequeue || len(ofType(readEvents(t, task.RunDir), "start")) > 1
	})
	res, err := d.Wait(ctx, h)
	if err != nil || !res.Successful() {
		t.Fatalf("Wait = %+v, %v\n%s", res, err, tail(t, task.LogPath, 30))
	}
	as := checkResumed(t, task, 30, "USR1")
	if len(as) != 2 {
		t.Errorf("%d attempts, want 2", len(as))
	}
	if got := scontrolField(t, id, "Restarts"); got != "1" {
		t.Errorf("Slurm counts %s restarts, want 1", got)
	}
	if !sawRequeue {
		t.Log("the requeued job started again before Inspect saw it pending")
	}
}

// TestPreemptionRequeueResume: a job in the test cluster's "urgent" partition needs
// the GPUs this run holds in "debug" (PreemptType=preempt/partition_prio,
// PreemptMode=REQUEUE, GraceTime=5). Slurm sends TERM when the grace time ends, the
// trainer checkpoints and exits 75, Slurm requeues the job, the urgent job runs, and
// the next attempt resumes from the checkpoint. Not parallel: the urgent job must
// find this run, and only this run, on the GPUs.
func TestPreemptionRequeueResume(t *testing.T) {
	base := needCluster(t)
	ctx := testCtx(t, 3*time.Minute)
	d := newDriver()
	task := newTask(t, base, map[string]string{"FAKE_STEPS": "60", "FAKE_STEP_SECONDS": "0.4"}, `{"gpus": 2, "partition": "debug"}`)
	h := start(t, ctx, d, task)
	id, _ := slurm.JobID(h)
	waitFor(t, ctx, "step 3", func() bool { return len(ofType(readEvents(t, task.RunDir), "log")) >= 3 })
	out, err := exec.Command("sbatch", "--parsable", "--partition=urgent", "--gres=gpu:2", "--output=/dev/null", "--wrap", "sleep 2").CombinedOutput()
	if err != nil {
		t.Fatalf("sbatch the urgent job: %v\n%s", err, out)
	}
	urgent := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("scancel", urgent).Run() })
	res, err := d.Wait(ctx, h)
	if err != nil || !res.Successful() {
		t.Fatalf("Wait = %+v, %v\n%s", res, err, tail(t, task.LogPath, 30))
	}
	if as := checkResumed(t, task, 60, "TERM"); len(as) != 2 {
		t.Errorf("%d attempts, want 2", len(as))
	}
	if got := scontrolField(t, id, "Restarts"); got != "1" {
		t.Errorf("Slurm counts %s restarts, want 1", got)
	}
	if got := scontrolField(t, urgent, "JobState"); got != "COMPLETED" {
		t.Errorf("the urgent job is %s, want COMPLETED", got)
	}
}

// TestNodeFailureRequeueResume: the run's node is marked DOWN (what slurmctld does
// when a node stops responding). Slurm cancels the job "due to node failure" with TERM,
// the trainer checkpoints and exits 75, Slurm requeues the job (--requeue), the node
// returns to service (ReturnToService=2) and the next attempt resumes from the
// checkpoint. It takes the whole test cluster down for a moment, so it runs only when
// asked, alone: scripts/test.sh runs it after the other suites.
func TestNodeFailureRequeueResume(t *testing.T) {
	base := needCluster(t)
	if os.Getenv("LORACTL_SLURM_NODEFAIL_TEST") != "1" {
		t.Skip("LORACTL_SLURM_NODEFAIL_TEST is not set: it takes the node down, so scripts/test.sh runs it alone")
	}
	ctx := testCtx(t, 3*time.Minute)
	d := newDriver()
	task := newTask(t, base, map[string]string{"FAKE_STEPS": "50", "FAKE_STEP_SECONDS": "0.3"}, "")
	h := start(t, ctx, d, task)
	id, _ := slurm.JobID(h)
	waitFor(t, ctx, "step 10", func() bool { return len(ofType(readEvents(t, task.RunDir), "log")) >= 10 })
	node := scontrolField(t, id, "NodeList")
	t.Cleanup(func() { _ = exec.Command("scontrol", "update", "nodename="+node, "state=resume").Run() })
	if out, err := exec.Command("scontrol", "update", "nodename="+node, "state=down", "reason=loractl-test").CombinedOutput(); err != nil {
		t.Fatalf("scontrol update state=down: %v\n%s", err, out)
	}
	res, err := d.Wait(ctx, h)
	if err != nil || !res.Successful() {
		t.Fatalf("Wait = %+v, %v\n%s", res, err, tail(t, task.LogPath, 30))
	}
	if as := checkResumed(t, task, 50, "TERM"); len(as) != 2 {
		t.Errorf("%d attempts, want 2", len(as))
	}
	if log := tail(t, task.LogPath, 30); !strings.Contains(log, "DUE TO NODE FAILURE") {
		t.Errorf("the first attempt did not end by node failure:\n%s", log)
	}
}

// TestTimeLimitCheckpointRequeueResume lets Slurm deliver the warning itself: a one
// minute limit with --signal=B:USR1@45 sends USR1 about 15 s into every attempt.
func TestTimeLimitCheckpointRequeueResume(t *testing.T) {
	base := needCluster(t)
	t.Parallel()
	ctx := testCtx(t, 4*time.Minute)
	d := newDriver()
	task := newTask(t, base, map[string]string{"FAKE_STEPS": "60", "FAKE_STEP_SECONDS": "0.5"},
		`{"time": "1", "signal_grace": 45, "max_requeues": 5}`)
	h := start(t, ctx, d, task)
	res, err := d.Wait(ctx, h)
	if err != nil || !res.Successful() {
		t.Fatalf("Wait = %+v, %v\n%s", res, err, tail(t, task.LogPath, 30))
	}
	as := checkResumed(t, task, 60, "USR1")
	for i, a := range as {
		if took := a.FinishedAt.Sub(a.StartedAt); took >= time.Minute {
			t.Errorf("attempt %d ran %v, past the time limit", i+1, took)
		}
	}
}

// TestStopAndCancelLeaveCheckpoint: loractl stop (Driver.Stop) and a user's plain
// scancel both reach the trainer with TERM; it checkpoints and the run is resumable.
func TestStopAndCancelLeaveCheckpoint(t *testing.T) {
	base := needCluster(t)
	t.Parallel()
	for _, how := range []string{"stop", "scancel"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t, 2*time.Minute)
			d := newDriver()
			task := newTask(t, base, map[string]string{"FAKE_STEPS": "1000"}, "")
			h := start(t, ctx, d, task)
			waitFor(t, ctx, "step 3", func() bool { return len(ofType(readEvents(t, task.RunDir), "log")) >= 3 })
			if how == "stop" {
				if err := d.Stop(ctx, h, 30*time.Second); err != nil {
					t.Fatal(err)
				}
			} else {
				id, _ := slurm.JobID(h)
				if out, err := exec.Command("scancel", id).CombinedOutput(); err != nil {
					t.Fatalf("scancel: %v\n%s", err, out)
				}
			}
			res, err := d.Wait(ctx, h)
			if err != nil || res.ExitCode != 75 || res.Successful() {
				t.Errorf("Wait = %+v, %v; want exit 75 (checkpoint saved)", res, err)
			}
			if how == "scancel" && res.Reason != "CANCELLED" {
				t.Errorf("reason %q, want CANCELLED", res.Reason)
			}
			ck := ofType(readEvents(t, task.RunDir), "checkpoint")
			if len(ck) != 1 {
				t.Fatalf("%d checkpoints, want 1\n%s", len(ck), tail(t, task.LogPath, 20))
			}
			if _, err := os.Stat(filepath.Join(task.RunDir, "checkpoints", fmt.Sprintf("checkpoint-%v", ck[0]["step"]), "loractl-complete.json")); err != nil {
				t.Error(err)
			}
			as, _ := slurm.ReadAttempts(task.RunDir)
			if len(as) != 1 || as[0].Requeued || as[0].Signal != "TERM" {
				t.Errorf("attempts = %+v, want one, ended by TERM, not requeued", as)
			}
		})
	}
}

// TestArrayWithCap runs three runs as one array with at most two at a time.
func TestArrayWithCap(t *testing.T) {
	base := needCluster(t)
	t.Parallel()
	ctx := testCtx(t, 2*time.Minute)
	d := newDriver()
	var tasks []*driver.Task
	for i := range 3 {
		tasks = append(tasks, newTask(t, base, map[string]string{"FAKE_STEPS": "8", "FAKE_EXIT": fmt.Sprint(i)}, `{"gpus": 1}`))
	}
	hs, err := d.StartArray(ctx, tasks, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		t.Cleanup(func() { _ = d.Stop(context.Background(), h, 0) })
	}
	arrayID, _, _ := strings.Cut(hs[0].ID, "_")
	if got := scontrolField(t, hs[2].ID, "ArrayTaskThrottle"); got != "2" {
		t.Errorf("ArrayTaskThrottle = %q, want 2", got)
	}
	type span struct{ from, to float64 }
	var spans []span
	for i, h := range hs {
		if want := fmt.Sprintf("%s_%d", arrayID, i); h.ID != want {
			t.Errorf("handle %d is %s, want %s", i, h.ID, want)
		}
		res, err := d.Wait(ctx, h)
		if err != nil || res.ExitCode != i {
			t.Errorf("task %d: Wait = %+v, %v; want exit %d\n%s", i, res, err, i, tail(t, tasks[i].LogPath, 10))
			continue
		}
		evs := readEvents(t, tasks[i].RunDir)
		s, e := ofType(evs, "start"), ofType(evs, "end")
		if len(s) != 1 || len(e) != 1 {
			t.Fatalf("task %d: %d starts and %d ends", i, len(s), len(e))
		}
		spans = append(spans, span{s[0]["t"].(float64), e[0]["t"].(float64)})
		log, _ := os.ReadFile(tasks[i].LogPath)
		if !strings.Contains(string(log), "resume trainer: starting at step 0 of 8") {
			t.Errorf("task %d's output is not in its own train.log:\n%s", i, log)
		}
		as, _ := slurm.ReadAttempts(tasks[i].RunDir)
		if len(as) != 1 || as[0].ArrayJobID != arrayID || as[0].ArrayTaskID != fmt.Sprint(i) {
			t.Errorf("task %d attempts = %+v", i, as)
		}
		if acc, err := d.AccountingStatus(ctx, h); err != nil || acc.Exit == nil || acc.Exit.ExitCode != i {
			t.Errorf("task %d: accounting status = %+v, %v; want exit %d", i, acc, err, i)
		}
	}
	if len(spans) != 3 {
		return
	}
	// At no moment did more than two trainers run.
	type edge struct {
		at    float64
		delta int
	}
	var edges []edge
	for _, s := range spans {
		edges = append(edges, edge{s.from, 1}, edge{s.to, -1})
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at != edges[j].at {
			return edges[i].at < edges[j].at
		}
		return edges[i].delta < edges[j].delta
	})
	running, peak := 0, 0
	for _, e := range edges {
		running += e.delta
		peak = max(peak, running)
	}
	if peak != 2 {
		t.Errorf("%d trainers ran at once, want 2 (cap 2, three tasks)", peak)
	}
}
