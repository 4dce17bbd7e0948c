package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

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
