package container

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loractl/loractl/driver"
)

// trainerEnv is what running the real trainer in the test image needs: the virtualenv's
// interpreter and the read-only host paths that make it work inside the container.
type trainerEnv struct {
	python   string
	scripts  string // the repo's python/ directory
	readOnly []string
}

// newTrainerEnv finds the virtualenv and what it links to. The venv's interpreter is a
// symlink into its base Python install (pyenv's, on CI), so that install is mounted too,
// at the same path; the test image's bookworm libraries satisfy it. A venv made from
// Debian's own /usr python needs no mount: the image has the same python3.11.
func newTrainerEnv(t *testing.T) *trainerEnv {
	t.Helper()
	py := os.Getenv(envPython)
	if py == "" {
		t.Fatalf("%s is not set: export %s=$(scripts/setup-python.sh | tail -n1)", envPython, envPython)
	}
	venv := filepath.Dir(filepath.Dir(py))
	out, err := exec.Command(py, "-c", "import sys; print(sys.base_prefix)").Output()
	if err != nil {
		t.Fatalf("%s: %v", py, err)
	}
	scripts, err := filepath.Abs("../../python")
	if err != nil {
		t.Fatal(err)
	}
	env := &trainerEnv{python: py, scripts: scripts, readOnly: []string{venv, scripts}}
	if base := strings.TrimSpace(string(out)); base != "/usr" && !strings.HasPrefix(base, "/usr/") {
		env.readOnly = append(env.readOnly, base)
	}
	return env
}

// writeTrainerInputs makes a tiny chat dataset, a tiny random model and resolved.json.
func writeTrainerInputs(t *testing.T, env *trainerEnv, work, runDir string, maxSteps int) {
	t.Helper()
	var b strings.Builder
	words := strings.Fields("the cat sat on a mat and the dog ran to help you with your question please")
	for i := range 48 {
		u := make([]string, 8)
		a := make([]string, 8)
		for j := range 8 {
			u[j] = words[(i*7+j*3)%len(words)]
			a[j] = words[(i*5+j*11)%len(words)]
		}
		line, _ := json.Marshal(map[string]any{"messages": []map[string]string{
			{"role": "user", "content": strings.Join(u, " ")},
			{"role": "assistant", "content": strings.Join(a, " ")},
		}})
		b.Write(line)
		b.WriteByte('\n')
	}
	data := filepath.Join(work, "data", "train.jsonl")
	model := filepath.Join(work, "model")
	if err := os.MkdirAll(filepath.Dir(data), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(env.python, filepath.Join(env.scripts, "make_tiny_model.py"), model, "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("make_tiny_model.py: %v\n%s", err, out)
	}
	// safetensors writes model.safetensors mode 0600; the container's uid differs from
	// the test's (root) and must read it.
	if err := filepath.WalkDir(model, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		return os.Chmod(p, 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	resolved := map[string]any{
		"version": 1, "name": "container-e2e",
		"model":        map[string]any{"name_or_path": model, "revision": "", "trust_remote_code": false},
		"data":         map[string]any{"train": data, "eval": "", "eval_split": 0.125},
		"lora":         map[string]any{"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": []string{"q_proj", "v_proj"}, "bias": "none", "use_rslora": false, "use_dora": false},
		"quantization": map[string]any{"mode": "none", "quant_type": "nf4", "double_quant": true},
		"train": map[string]any{
			"epochs": 1, "max_steps": maxSteps, "learning_rate": 0.001, "batch_size": 2, "eval_batch_size": 2,
			"grad_accum": 1, "max_length": 64, "warmup": 0, "scheduler": "constant", "seed": 1,
			"gradient_checkpointing": false, "packing": false, "assistant_only_loss": "auto",
			"logging_steps": 1, "eval_steps": 0, "save_steps": 5, "save_total_limit": 2,
			"precision": "fp32", "weight_decay": 0.0, "max_grad_norm": 1.0, "optim": "adamw_torch", "loss_type": "nll",
		},
	}
	js, _ := json.MarshalIndent(resolved, "", " ")
	if err := os.WriteFile(filepath.Join(runDir, "resolved.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestEngineTrainerEndToEnd runs python/train_lora.py on a tiny model on the CPU inside
// the container: stopped after its first checkpoint it exits 75 with a complete
// checkpoint; started again for the same run it resumes from it and completes, saving
// the adapter. Every file it wrote belongs to the container's user.
func TestEngineTrainerEndToEnd(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *testEngine) {
		env := newTrainerEnv(t)
		work := t.TempDir()
		runID := fmt.Sprintf("e2e-%s-%d", e.d.engine, os.Getpid())
		runDir := filepath.Join(work, "runs", runID)
		if err := os.MkdirAll(runDir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeTrainerInputs(t, env, work, runDir, 120)
		// As root, run the trainer as an ordinary uid with no entry in the image's
		// passwd, as a workstation user's would be.
		uid, gid := os.Getuid(), os.Getgid()
		opts := map[string]any{"python": env.python, "shm_size": "256m"}
		if uid == 0 {
			uid, gid = 4242, 4343
			opts["user"] = "4242:4343"
			if err := os.Chown(runDir, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		task := &driver.Task{
			RunID:  runID,
			RunDir: runDir,
			Command: []string{env.python, filepath.Join(env.scripts, "train_lora.py"),
				"--config", filepath.Join(runDir, "resolved.json"), "--run-dir", runDir, "--resume", "auto"},
			Env:      map[string]string{"HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"},
			ReadOnly: append([]string{filepath.Join(work, "data"), filepath.Join(work, "model")}, env.readOnly...),
			LogPath:  filepath.Join(runDir, "train.log"),
			Options:  e.options(t, opts),
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()

		began := time.Now()
		h := start(t, e, task)
		ckpt := waitEvent(t, runDir, "checkpoint", 3*time.Minute)
		t.Logf("%s: first checkpoint (step %v) %.1fs after Start", e.d.engine, ckpt["step"], time.Since(began).Seconds())
		if err := e.d.Stop(ctx, h, time.Minute); err != nil {
			t.Fatal(err)
		}
		res, err := e.d.Wait(ctx, h)
		if err != nil || res.ExitCode != 75 {
			t.Fatalf("Wait after Stop = %+v, %v; want 75 (interrupted, resumable)\n%s", res, err, tail(t, task.LogPath))
		}
		end := lastOf(readEvents(t, runDir), "end")
		if end == nil || end["status"] != "interrupted" || end["signal"] != "SIGTERM" {
			t.Errorf("end event %v, want interrupted by SIGTERM", end)
		}
		complete, _ := filepath.Glob(filepath.Join(runDir, "checkpoints", "checkpoint-*", "loractl-complete.json"))
		if len(complete) == 0 {
			t.Fatalf("no complete checkpoint after Stop\n%s", tail(t, task.LogPath))
		}

		began = time.Now()
		h = start(t, e, task)
		res, err = e.d.Wait(ctx, h)
		if err != nil || !res.Successful() {
			t.Fatalf("resumed run = %+v, %v\n%s", res, err, tail(t, task.LogPath))
		}
		evs := readEvents(t, runDir)
		t.Logf("%s: resumed run completed in %.1fs (%s)", e.d.engine, time.Since(began).Seconds(), phases(evs))
		if st := lastOf(evs, "start"); st == nil || st["resume_step"] == nil || st["resume_step"].(float64) <= 0 {
			t.Errorf("the second start did not resume: %v", st)
		}
		if end := lastOf(evs, "end"); end == nil || end["status"] != "completed" {
			t.Errorf("end event %v, want completed", end)
		}
		if _, err := os.Stat(filepath.Join(runDir, "adapter", "adapter_model.safetensors")); err != nil {
			t.Errorf("no adapter: %v", err)
		}
		if log := readFile(t, task.LogPath); !strings.Contains(log, "train_runtime") {
			t.Errorf("train.log lacks the trainer's output:\n%s", tail(t, task.LogPath))
		}
		// Everything but resolved.json (written by the test) is the trainer's.
		err = filepath.WalkDir(runDir, func(p string, de fs.DirEntry, err error) error {
			if err != nil || p == runDir || de.Name() == "resolved.json" {
				return err
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return err
			}
			if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != gid {
				t.Errorf("%s is owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// readEvents parses the run's events.jsonl.
func readEvents(t *testing.T, runDir string) []map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join(runDir, "events.jsonl"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev map[string]any
		// A line being written may be partial; the next poll sees it whole.
		if json.Unmarshal(sc.Bytes(), &ev) == nil {
			evs = append(evs, ev)
		}
	}
	return evs
}

func lastOf(evs []map[string]any, typ string) map[string]any {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i]["type"] == typ {
			return evs[i]
		}
	}
	return nil
}

// waitEvent polls events.jsonl until an event of type typ appears.
func waitEvent(t *testing.T, runDir, typ string, within time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		evs := readEvents(t, runDir)
		if ev := lastOf(evs, typ); ev != nil {
			return ev
		}
		if end := lastOf(evs, "end"); end != nil {
			t.Fatalf("the trainer ended (%v) before a %q event\n%s", end["status"], typ, tail(t, filepath.Join(runDir, "train.log")))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no %q event within %v\n%s", typ, within, tail(t, filepath.Join(runDir, "train.log")))
	return nil
}

// phases summarises the last attempt's timing from its events: start to first step,
// and the steps' rate, to tell a slow start (imports) from slow training.
func phases(evs []map[string]any) string {
	var start, first, last time.Time
	var steps float64
	for _, ev := range evs {
		ts, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(ev["time"]))
		switch ev["type"] {
		case "start":
			start, first, steps = ts, time.Time{}, 0
		case "log":
			if first.IsZero() {
				first = ts
			}
			last = ts
			steps++
		}
	}
	if start.IsZero() || first.IsZero() || steps < 2 {
		return "no step timing"
	}
	return fmt.Sprintf("start to first step %.1fs, %.0f steps at %.0f ms/step", first.Sub(start).Seconds(), steps, last.Sub(first).Seconds()*1000/(steps-1))
}

// tail is the end of a log, for failure messages.
func tail(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no %s: %v)", path, err)
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
