// Package e2e runs the real loractl binary against the real trainer on tiny
// random-weight models on the CPU.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/loractl/loractl/internal/pyenv"
	"github.com/loractl/loractl/run"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// repoRoot is the module root (two levels above this file).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// loractlBin builds the loractl binary once per test process.
func loractlBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "loractl-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "loractl")
		cmd := exec.Command("go", "build", "-buildvcs=auto", "-o", binPath, "./cmd/loractl")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build loractl: %v\n%s", buildErr, binPath)
	}
	return binPath
}

// pythonOrSkip finds the trainer's interpreter. Without one the end-to-end tests
// cannot run; CI sets LORACTL_REQUIRE_E2E=1 so a missing environment fails there.
func pythonOrSkip(t *testing.T) string {
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

// fixture is a temp dir with a tiny model built from the bundled sample data, and a
// config that trains it for a few dozen CPU steps.
type fixture struct {
	dir, python, config, runs string
}

func newFixture(t *testing.T, extraYAML string) *fixture {
	t.Helper()
	py := pythonOrSkip(t)
	dir := t.TempDir()
	data := filepath.Join(repoRoot(), "examples", "data")
	cmd := exec.Command(py, filepath.Join(repoRoot(), "python", "make_tiny_model.py"), filepath.Join(dir, "model"),
		"--data", filepath.Join(data, "train.jsonl"), "--data", filepath.Join(data, "eval.jsonl"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make_tiny_model: %v\n%s", err, out)
	}
	cfg := `name: e2e
model: ./model
data:
  train: ` + filepath.Join(data, "train.jsonl") + `
  eval: ` + filepath.Join(data, "eval.jsonl") + `
lora:
  r: 8
  alpha: 16
  target_modules: all-linear
train:
  max_steps: 24
  batch_size: 8
  max_length: 128
  learning_rate: 1.0e-2
  warmup: 0
  logging_steps: 2
  save_steps: 8
  gradient_checkpointing: false
` + extraYAML
	path := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return &fixture{dir: dir, python: py, config: path, runs: filepath.Join(dir, "runs")}
}

// command prepares a loractl invocation against the fixture's run store.
func (f *fixture) command(t *testing.T, args ...string) *exec.Cmd {
	cmd := exec.Command(loractlBin(t), append(args, "--runs-dir", f.runs)...)
	cmd.Dir = f.dir
	cmd.Env = append(os.Environ(), "LORACTL_PYTHON="+f.python, "OMP_NUM_THREADS=1")
	return cmd
}

type result struct {
	code           int
	stdout, stderr string
}

func (f *fixture) loractl(t *testing.T, args ...string) result {
	t.Helper()
	cmd := f.command(t, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

// jsonLines splits `--json` output into events and the final result object.
func jsonLines(t *testing.T, s string) (events []*run.Event, final map[string]any) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Bytes()
		var probe struct{ Type string }
		if err := json.Unmarshal(line, &probe); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		if probe.Type == "result" {
			final = map[string]any{}
			_ = json.Unmarshal(line, &final)
			continue
		}
		e, err := run.ParseEvent(line)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}
	return events, final
}
