package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loractl/loractl/run"
)

const distributedYAML = "distributed:\n  nproc_per_node: 2\n"

// Two trainer processes under torchrun (gloo on the CPU) through the real binary:
// Ctrl-C stops both after the same step with one checkpoint, the run is interrupted
// (decided from rank 0's end event: torchrun itself exits 1), and train --resume with
// two processes finishes it with the step count of one run.
func TestDistributedInterruptAndResume(t *testing.T) {
	f := newFixture(t, distributedYAML)
	cmd := f.command(t, "train", f.config, "--json")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	sent := false
	var runID string
	var start *run.Event
	for sc.Scan() {
		e, err := run.ParseEvent(sc.Bytes())
		if err != nil {
			continue
		}
		if e.Type == run.EventStart {
			start = e
		}
		if e.Type == run.EventCheckpoint && !sent {
			runID = filepath.Base(filepath.Dir(filepath.Dir(e.Path)))
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			sent = true
		}
	}
	err = cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !sent || !ok || ee.ExitCode() != 130 {
		t.Fatalf("interrupted train: sent=%v err=%v\n%s", sent, err, stderr.String())
	}
	if start == nil || start.Distributed == nil || start.Distributed.WorldSize != 2 || start.Distributed.Backend != "gloo" {
		t.Fatalf("start event: %+v", start)
	}
	dir := filepath.Join(f.runs, runID)
	cp, found, err := run.LatestComplete(dir)
	if err != nil || !found {
		t.Fatalf("no complete checkpoint after SIGINT: %v", err)
	}
	for _, rank := range []string{"rng_state_0.pth", "rng_state_1.pth"} {
		if _, err := os.Stat(filepath.Join(cp.Path, rank)); err != nil {
			t.Errorf("checkpoint lacks %s: both ranks save together", rank)
		}
	}
	m, _ := run.ReadManifest(dir)
	if m.State != run.StateInterrupted || m.Distributed == nil || m.Distributed.NprocPerNode != 2 {
		t.Fatalf("manifest after SIGINT: state %s, distributed %+v", m.State, m.Distributed)
	}

	r := f.loractl(t, "train", "--resume", runID, "--json")
	if r.code != 0 {
		t.Fatalf("resume exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	events, final := jsonLines(t, r.stdout)
	starts, ends := 0, 0
	for _, e := range events {
		switch e.Type {
		case run.EventStart:
			starts++
			if e.ResumeStep != cp.Step {
				t.Errorf("resumed at step %d, checkpoint at %d", e.ResumeStep, cp.Step)
			}
		case run.EventEnd:
			ends++
		}
	}
	if starts != 1 || ends != 1 {
		t.Errorf("one event stream expected: %d start and %d end events", starts, ends)
	}
	if final["state"] != "completed" || final["step"] != float64(24) {
		t.Fatalf("resumed result %v", final)
	}
	if _, err := os.Stat(filepath.Join(dir, "adapter", "adapter_model.safetensors")); err != nil {
		t.Errorf("no adapter: %v", err)
	}
	list := f.loractl(t, "runs")
	if !strings.Contains(list.stdout, "local 1×2 ddp/gloo") {
		t.Errorf("runs does not show the layout:\n%s", list.stdout)
	}
}

// driver.slurm.gpus > 1 for one process is refused before anything is written.
func TestSlurmGPUsWithoutDistributedRefused(t *testing.T) {
	f := newFixture(t, "driver:\n  name: slurm\n  slurm:\n    gpus: 4\n")
	r := f.loractl(t, "render", f.config)
	if r.code != 2 || !strings.Contains(r.stderr, "driver.slurm.gpus") || !strings.Contains(r.stderr, "distributed") {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
}

// Through the real Slurm test cluster: a two-process job (srun + torchrun with a c10d
// rendezvous on the allocation's first node; the cluster's GPUs are fake, so the ranks
// use gloo), stopped after its first checkpoint as Slurm would stop it, requeued, and
// resumed by the next attempt:
//   - USR1, Slurm's warning before a time limit, goes to the batch shell, which passes it
//     to srun, torchrun and the ranks; they checkpoint together, the script reads rank
//     0's end event (torchrun exits 1) and requeues the job itself;
//   - preemption: a job in the "urgent" partition needs the GPUs; Slurm sends TERM to the
//     job and requeues it (PreemptMode=REQUEUE).
func TestSlurmDistributedRequeueResume(t *testing.T) {
	requireEnv(t, "LORACTL_SLURM_TEST", "start a cluster with scripts/ci/slurm-up.sh BASE and source BASE/env")
	cases := []struct {
		name, partition, attempt string
		stop                     func(t *testing.T, jobID string)
	}{
		{"usr1", "", `"exit_code":75,"signal":"USR1","requeued":true`, func(t *testing.T, jobID string) {
			if out, err := exec.Command("scancel", "--signal=USR1", "--batch", jobID).CombinedOutput(); err != nil {
				t.Fatalf("scancel --signal=USR1 --batch: %v\n%s", err, out)
			}
		}},
		{"preemption", "    partition: debug\n", `"signal":"TERM"`, func(t *testing.T, jobID string) {
			out, err := exec.Command("sbatch", "--parsable", "--partition=urgent", "--gres=gpu:2", "--output=/dev/null", "--wrap", "sleep 2").CombinedOutput()
			if err != nil {
				t.Fatalf("sbatch the urgent job: %v\n%s", err, out)
			}
			urgent := strings.TrimSpace(string(out))
			t.Cleanup(func() { _ = exec.Command("scancel", urgent).Run() })
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { slurmDistributed(t, tc.partition, tc.attempt, tc.stop) })
	}
}

func slurmDistributed(t *testing.T, partition, wantAttempt string, stop func(t *testing.T, jobID string)) {
	f := newFixture(t, "")
	cfg, _ := os.ReadFile(f.config)
	cfg = []byte(strings.Replace(string(cfg), "  max_steps: 24\n", "  max_steps: 40\n", 1) +
		"distributed:\n  nproc_per_node: auto\n" +
		"driver:\n  name: slurm\n  slurm:\n    gpus: 2\n    time: \"00:20:00\"\n    signal_grace: 60\n    max_requeues: 1\n" + partition +
		"    python: " + f.python + "\n")
	if err := os.WriteFile(f.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := f.loractl(t, "render", f.config); r.code != 0 || !strings.Contains(r.stdout, "--gpus-per-node=2") || !strings.Contains(r.stdout, "'--nproc-per-node' '2'") {
		t.Fatalf("render: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	r := f.loractl(t, "train", f.config, "--detach")
	if r.code != 0 {
		t.Fatalf("train --detach: exit %d\n%s", r.code, r.stderr)
	}
	runID := strings.TrimSpace(r.stdout)
	dir := filepath.Join(f.runs, runID)
	m, err := run.ReadManifest(dir)
	if err != nil || m.Handle == nil {
		t.Fatalf("manifest after detach: %+v %v", m, err)
	}
	events := func() []*run.Event {
		evs, _ := run.ReadEvents(filepath.Join(dir, run.EventsFile))
		return evs
	}
	count := func(evs []*run.Event, typ, status string) int {
		n := 0
		for _, e := range evs {
			if e.Type == typ && (status == "" || e.Status == status) {
				n++
			}
		}
		return n
	}
	waitFor(t, 8*time.Minute, "the first checkpoint", func() bool { return count(events(), run.EventCheckpoint, "") > 0 })
	stop(t, m.Handle.ID)
	waitFor(t, 10*time.Minute, "the requeued attempt to complete", func() bool { return count(events(), run.EventEnd, "completed") > 0 })

	evs := events()
	if n := count(evs, run.EventEnd, "interrupted"); n > 1 {
		t.Errorf("%d interrupted end events, want at most 1 (one stream: rank 0's)", n)
	}
	var starts []*run.Event
	for _, e := range evs {
		if e.Type == run.EventStart {
			starts = append(starts, e)
		}
	}
	if len(starts) != 2 || starts[1].ResumeStep == 0 || starts[1].Distributed == nil || starts[1].Distributed.WorldSize != 2 {
		t.Fatalf("start events: %d, second %+v", len(starts), starts[len(starts)-1])
	}
	attempts, _ := os.ReadFile(filepath.Join(dir, "attempts.jsonl"))
	if !strings.Contains(string(attempts), wantAttempt) {
		t.Errorf("attempts.jsonl does not show %s:\n%s", wantAttempt, attempts)
	}
	waitFor(t, 2*time.Minute, "the manifest to say completed", func() bool {
		f.loractl(t, "runs") // refreshes a detached run's manifest
		m, _ = run.ReadManifest(dir)
		return m.State == run.StateCompleted
	})
	if m.Distributed == nil || m.Distributed.WorldSize != 2 || m.Result == nil || m.Result.Step != 40 {
		t.Errorf("manifest: distributed %+v, result %+v", m.Distributed, m.Result)
	}
}
