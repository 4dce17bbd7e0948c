package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loractl/loractl/run"
)

func TestTrainEndToEnd(t *testing.T) {
	f := newFixture(t, "")

	// render writes nothing.
	if r := f.loractl(t, "render", f.config); r.code != 0 || !strings.Contains(r.stdout, `"max_steps": 24`) {
		t.Fatalf("render: %+v", r)
	}
	if _, err := os.Stat(f.runs); !os.IsNotExist(err) {
		t.Fatalf("render created %s", f.runs)
	}

	r := f.loractl(t, "train", f.config, "--json")
	if r.code != 0 {
		t.Fatalf("train exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	events, final := jsonLines(t, r.stdout)
	runID, _ := final["run_id"].(string)
	if final["state"] != "completed" || runID == "" {
		t.Fatalf("result: %v", final)
	}

	// Events arrive in order: start, eval before, logs with rising steps, checkpoints,
	// eval after, end.
	var order []string
	var logs []*run.Event
	var checkpoints []*run.Event
	var before, after *float64
	for _, e := range events {
		order = append(order, e.Type)
		switch e.Type {
		case run.EventLog:
			if len(logs) > 0 && e.Step <= logs[len(logs)-1].Step {
				t.Errorf("log step %d after %d", e.Step, logs[len(logs)-1].Step)
			}
			logs = append(logs, e)
		case run.EventCheckpoint:
			checkpoints = append(checkpoints, e)
		case run.EventEval:
			switch e.Phase {
			case "before":
				before = e.EvalLoss
				if len(logs) > 0 {
					t.Error("eval before came after training steps")
				}
			case "after":
				after = e.EvalLoss
			}
		}
	}
	if order[0] != run.EventStart || order[len(order)-1] != run.EventEnd {
		t.Fatalf("event order %v", order)
	}
	if len(logs) < 2 || *logs[len(logs)-1].Loss >= *logs[0].Loss {
		t.Errorf("loss did not fall: first %v last %v", *logs[0].Loss, *logs[len(logs)-1].Loss)
	}
	if before == nil || after == nil || *after >= *before {
		t.Errorf("eval loss before %v after %v: want after < before", before, after)
	}
	if len(checkpoints) < 2 {
		t.Errorf("%d checkpoints, want at least 2", len(checkpoints))
	}
	for _, cp := range checkpoints {
		if _, err := os.Stat(filepath.Join(cp.Path, run.CompleteMarker)); err != nil {
			t.Errorf("checkpoint %s announced before it was complete", cp.Path)
		}
	}

	// The trainer's interpreter was started while the data check counted tokens
	// (driver/local/warm.go): its heavy imports were done when its run began.
	if imports := endTiming(t, filepath.Join(f.runs, runID), "imports"); imports > 0.5 {
		t.Errorf("the trainer spent %.2fs importing after its launch: not warm-started", imports)
	}

	// The adapter loads with PEFT.
	adapter := filepath.Join(f.runs, runID, "adapter")
	load := exec.Command(f.python, "-c", `import sys
from transformers import AutoModelForCausalLM
from peft import PeftModel
base = AutoModelForCausalLM.from_pretrained(sys.argv[1])
m = PeftModel.from_pretrained(base, sys.argv[2])
print("loaded", type(m).__name__)`, filepath.Join(f.dir, "model"), adapter)
	if out, err := load.CombinedOutput(); err != nil || !strings.Contains(string(out), "loaded PeftModel") {
		t.Fatalf("adapter does not load: %v\n%s", err, out)
	}

	// The manifest says what ran.
	m, err := run.ReadManifest(filepath.Join(f.runs, runID))
	if err != nil {
		t.Fatal(err)
	}
	if m.State != run.StateCompleted || m.Result == nil || m.Result.Improved == nil || !*m.Result.Improved ||
		m.Versions["peft"] == "" || len(m.Data) != 2 || m.Trainer.SHA256 == "" || len(m.Attempts) != 1 {
		t.Errorf("manifest incomplete: %+v", m)
	}

	// The same config and data give the same run id, and a completed run is not
	// trained twice.
	again := f.loractl(t, "train", f.config)
	if again.code != 2 || !strings.Contains(again.stderr, runID) || !strings.Contains(again.stderr, "already completed") {
		t.Errorf("second train: exit %d, stderr %s", again.code, again.stderr)
	}

	// logs replays the same events; runs lists the run.
	replay := f.loractl(t, "logs", runID, "--json")
	if n := strings.Count(replay.stdout, "\n"); n != len(events) {
		t.Errorf("logs replayed %d events, train streamed %d", n, len(events))
	}
	if list := f.loractl(t, "runs"); !strings.Contains(list.stdout, runID) || !strings.Contains(list.stdout, "completed") {
		t.Errorf("runs: %s", list.stdout)
	}
}

// SIGINT mid-run leaves a complete checkpoint and exits 130; --resume continues from
// that checkpoint's step to the end.
func TestInterruptAndResume(t *testing.T) {
	f := newFixture(t, "")
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
	for sc.Scan() {
		e, err := run.ParseEvent(sc.Bytes())
		if err != nil {
			continue
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
	dir := filepath.Join(f.runs, runID)
	cp, found, err := run.LatestComplete(dir)
	if err != nil || !found {
		t.Fatalf("no complete checkpoint after SIGINT: %v", err)
	}
	m, _ := run.ReadManifest(dir)
	if m.State != run.StateInterrupted {
		t.Fatalf("state after SIGINT: %s", m.State)
	}

	start := time.Now()
	r := f.loractl(t, "train", "--resume", runID, "--json")
	if r.code != 0 {
		t.Fatalf("resume exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	events, final := jsonLines(t, r.stdout)
	var firstLog *run.Event
	for _, e := range events {
		if e.Type == run.EventStart && e.ResumeStep != cp.Step {
			t.Errorf("trainer resumed at step %d, checkpoint is at %d", e.ResumeStep, cp.Step)
		}
		if e.Type == run.EventLog && firstLog == nil {
			firstLog = e
		}
	}
	if firstLog == nil || firstLog.Step <= cp.Step {
		t.Fatalf("first step after resume %v does not follow checkpoint step %d", firstLog, cp.Step)
	}
	if final["step"] != float64(24) {
		t.Errorf("resumed run ended at step %v, want 24", final["step"])
	}
	m, _ = run.ReadManifest(dir)
	if len(m.Attempts) != 2 || m.Attempts[1].ResumeFrom != cp.Path || m.State != run.StateCompleted {
		t.Errorf("attempts after resume: %+v (state %s)", m.Attempts, m.State)
	}
	t.Logf("resume took %s", time.Since(start).Round(time.Second))

	// Reproducing the resumed run from scratch gives the same training: train_loss
	// (which covers only the resumed part) is left out, the per-step losses, eval
	// losses and adapter weights match bit for bit.
	r = f.loractl(t, "reproduce", runID[:len(runID)-3], "--json")
	var rep struct {
		Reproduced bool     `json:"reproduced"`
		Notes      []string `json:"notes"`
		StepLosses struct {
			Steps int `json:"steps"`
		} `json:"step_losses"`
		Metrics []struct {
			Name string `json:"name"`
		} `json:"metrics"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 0 || !rep.Reproduced {
		t.Fatalf("reproduce of a resumed run (by id prefix): exit %d %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	if len(rep.Notes) == 0 || rep.StepLosses.Steps == 0 {
		t.Errorf("no resume note or no per-step comparison: %+v", rep)
	}
	for _, m := range rep.Metrics {
		if m.Name == "train_loss" {
			t.Error("train_loss compared although the original was resumed")
		}
	}
}

// endTiming is one phase's seconds in the end event of the run in dir (the trainer's
// timings, which run.Event does not carry).
func endTiming(t *testing.T, dir, phase string) float64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, run.EventsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e struct {
			Type    string             `json:"type"`
			Timings map[string]float64 `json:"timings"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Type == run.EventEnd {
			if v, ok := e.Timings[phase]; ok {
				return v
			}
		}
	}
	t.Fatalf("%s: no %s timing in the end event", dir, phase)
	return 0
}
