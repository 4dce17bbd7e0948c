package slurm_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/slurm"
	"github.com/loractl/loractl/internal/pyenv"
)

// trainerPython finds the trainer's interpreter; CI sets LORACTL_REQUIRE_E2E=1 so a
// missing environment fails there instead of skipping.
func trainerPython(t *testing.T) string {
	t.Helper()
	py, _, err := pyenv.Find("")
	if err != nil {
		if os.Getenv("LORACTL_REQUIRE_E2E") == "1" {
			t.Fatalf("trainer environment required: %v", err)
		}
		t.Skipf("no trainer environment (%v); run scripts/setup-python.sh", err)
	}
	return py
}

// TestRealTrainerRequeueResume runs python/train_lora.py on a tiny random model through
// Slurm. After its first checkpoint the job gets Slurm's warning signal (USR1 to the
// batch shell); the trainer saves a complete checkpoint and exits 75, the job requeues,
// and the next attempt resumes from that checkpoint, continues the step count and
// saves the adapter.
func TestRealTrainerRequeueResume(t *testing.T) {
	base := needCluster(t)
	py := trainerPython(t)
	t.Parallel()
	ctx := testCtx(t, 8*time.Minute)
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(repo, "examples", "data")
	model := filepath.Join(base, "model")
	mk := exec.Command(py, filepath.Join(repo, "python", "make_tiny_model.py"), model,
		"--data", filepath.Join(data, "train.jsonl"), "--data", filepath.Join(data, "eval.jsonl"))
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make_tiny_model.py: %v\n%s", err, out)
	}
	runDir := filepath.Join(base, "real-trainer")
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	const steps = 30
	resolved := map[string]any{
		"version": 1, "name": "slurm-e2e",
		"model":        map[string]any{"name_or_path": model, "revision": "", "trust_remote_code": false},
		"data":         map[string]any{"train": filepath.Join(data, "train.jsonl"), "eval": filepath.Join(data, "eval.jsonl"), "eval_split": 0},
		"lora":         map[string]any{"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear", "bias": "none", "use_rslora": false, "use_dora": false},
		"quantization": map[string]any{"mode": "none", "quant_type": "nf4", "double_quant": true},
		"train": map[string]any{
			"epochs": 1, "max_steps": steps, "learning_rate": 0.01, "batch_size": 8, "eval_batch_size": 8,
			"grad_accum": 1, "max_length": 128, "warmup": 0, "scheduler": "constant", "seed": 1,
			"gradient_checkpointing": false, "packing": false, "assistant_only_loss": "auto",
			"logging_steps": 1, "eval_steps": 0, "save_steps": 5, "save_total_limit": 2,
			"precision": "fp32", "weight_decay": 0.0, "max_grad_norm": 1.0, "optim": "adamw_torch", "loss_type": "nll",
		},
	}
	js, _ := json.MarshalIndent(resolved, "", " ")
	if err := os.WriteFile(filepath.Join(runDir, "resolved.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	task := &driver.Task{
		RunID:  "slurm-e2e",
		RunDir: runDir,
		Command: []string{py, filepath.Join(repo, "python", "train_lora.py"),
			"--config", filepath.Join(runDir, "resolved.json"), "--run-dir", runDir},
		Env:     map[string]string{"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
		LogPath: filepath.Join(runDir, "train.log"),
		Options: json.RawMessage(`{"cpus_per_task": 1, "mem": "4G", "signal_grace": 60}`),
	}
	d := newDriver()
	began := time.Now()
	h := start(t, ctx, d, task)
	id, _ := slurm.JobID(h)
	waitFor(t, ctx, "the first checkpoint", func() bool { return len(ofType(readEvents(t, runDir), "checkpoint")) > 0 })
	t.Logf("first checkpoint %.1fs after submission", time.Since(began).Seconds())
	if out, err := exec.Command("scancel", "--signal=USR1", "--batch", id).CombinedOutput(); err != nil {
		t.Fatalf("scancel --signal=USR1 --batch: %v\n%s", err, out)
	}
	res, err := d.Wait(ctx, h)
	if err != nil || !res.Successful() {
		t.Fatalf("Wait = %+v, %v\n%s", res, err, tail(t, task.LogPath, 40))
	}
	t.Logf("completed %.1fs after submission", time.Since(began).Seconds())

	as, err := slurm.ReadAttempts(runDir)
	if err != nil || len(as) != 2 {
		t.Fatalf("attempts = %+v, %v; want 2\n%s", as, err, tail(t, task.LogPath, 40))
	}
	if a := as[0]; a.ExitCode == nil || *a.ExitCode != 75 || a.Signal != "USR1" || !a.Requeued {
		t.Errorf("attempt 1 = %+v, want exit 75 after USR1, requeued", a)
	}
	if a := as[1]; a.ExitCode == nil || *a.ExitCode != 0 || a.RestartCount != 1 {
		t.Errorf("attempt 2 = %+v, want exit 0 on restart 1", a)
	}
	evs := readEvents(t, runDir)
	var ends, starts []map[string]any
	ends, starts = ofType(evs, "end"), ofType(evs, "start")
	if len(starts) != 2 || len(ends) != 2 {
		t.Fatalf("%d start and %d end events, want 2 each", len(starts), len(ends))
	}
	if ends[0]["status"] != "interrupted" || ends[0]["signal"] != "SIGUSR1" {
		t.Errorf("first end = %v, want interrupted by SIGUSR1", ends[0])
	}
	if ends[1]["status"] != "completed" {
		t.Errorf("second end = %v, want completed", ends[1])
	}
	saved := ends[0]["step"].(float64)
	if got := starts[1]["resume_step"]; got != saved || saved <= 0 {
		t.Errorf("the second attempt resumed at step %v, want %v (the interrupted attempt's checkpoint)", got, saved)
	}
	// The step count continues: the first step logged after resuming follows the checkpoint.
	var after []map[string]any
	for i, e := range evs {
		if e["type"] == "start" && i > 0 {
			after = ofType(evs[i:], "log")
			break
		}
	}
	if len(after) == 0 || after[0]["step"].(float64) != saved+1 {
		t.Errorf("first log after resuming = %v, want step %v", after, saved+1)
	}
	if got := ends[1]["step"].(float64); got != steps {
		t.Errorf("the run ended at step %v, want %d", got, steps)
	}
	if _, err := os.Stat(filepath.Join(runDir, "adapter", "adapter_model.safetensors")); err != nil {
		t.Errorf("no adapter: %v", err)
	}
}
