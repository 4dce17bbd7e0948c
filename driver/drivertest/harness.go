// Package drivertest is the contract test suite every loractl driver must pass,
// built-in or external: drivertest.Run(t, factory) drives Start, Wait, Inspect,
// Signal, Stop and reattaching from a decoded handle against a fake trainer that
// honours docs/trainer-contract.md. OverGRPC runs the same suite through an
// in-process go-plugin gRPC round trip.
package drivertest

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/run"
)

//go:embed fake_trainer.sh
var fakeTrainer []byte

// Factory returns a driver ready for use. Run calls it once per test, and again to
// stand in for a new controller process that reattaches to a task by its handle.
type Factory func(t *testing.T) driver.Driver

// Option adjusts the suite for one driver.
type Option func(*config)

type config struct {
	options     json.RawMessage
	shell       string
	runDirBase  string
	timeout     time.Duration
	unknown     func(valid *driver.Handle) *driver.Handle
	exitUnknown bool
	adjust      func(*driver.Task)
}

// WithOptions sets Task.Options (the driver's own config section) on every task.
func WithOptions(raw json.RawMessage) Option { return func(c *config) { c.options = raw } }

// WithShell sets the interpreter that runs the fake trainer where the driver runs it
// (inside a container image, on a cluster node). Default /bin/sh.
func WithShell(path string) Option { return func(c *config) { c.shell = path } }

// WithRunDirBase makes run dirs under base instead of t.TempDir(), for drivers whose
// trainers run elsewhere and need a shared or specially mounted directory.
func WithRunDirBase(base string) Option { return func(c *config) { c.runDirBase = base } }

// WithTimeout bounds each test (default 60s); queueing drivers may need longer.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithUnknownHandle turns a valid handle of this driver into one naming a task that
// does not exist. By default the ID becomes "999999999" and State is kept.
func WithUnknownHandle(f func(valid *driver.Handle) *driver.Handle) Option {
	return func(c *config) { c.unknown = f }
}

// WithReattachExitUnknown declares that the driver cannot learn the exit status of a
// task started by another controller process (the local driver: only a process's
// parent reaps it). After reattaching, Wait may then report ExitCode -1 with a Reason;
// the controller reads the outcome from events.jsonl instead. Such a driver may also
// answer driver.ErrTaskNotFound for a task that is gone, and Inspect may call a task
// it cannot find "exited" with no exit result.
func WithReattachExitUnknown() Option { return func(c *config) { c.exitUnknown = true } }

// WithTaskAdjust lets the driver's test adjust every task before it starts (extra
// read-only mounts, GPUs).
func WithTaskAdjust(f func(*driver.Task)) Option { return func(c *config) { c.adjust = f } }

// Environment the fake trainer reads; see fake_trainer.sh.
const (
	envSteps      = "LORACTL_FAKE_STEPS"
	envExit       = "LORACTL_FAKE_EXIT"
	envIgnoreTerm = "LORACTL_FAKE_IGNORE_TERM"
	envValue      = "LORACTL_FAKE_VALUE"
	envSecret     = "LORACTL_FAKE_SECRET"
	// secretValue is set in the controller's environment and passed by name only; it
	// must reach the trainer and never appear in a handle or a rendering.
	secretValue = "s3cret-passed-by-name"
)

// harness is one suite run's shared state.
type harness struct {
	cfg     config
	factory Factory
	mu      sync.Mutex
	seq     int
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9-]+`)

// newTask makes a run dir holding the fake trainer and a resolved.json, and a task
// that runs it with env. Run ids are
// lowercase, digits and dashes so every driver can use them as container or job names.
func (h *harness) newTask(t *testing.T, env map[string]string) *driver.Task {
	t.Helper()
	h.mu.Lock()
	h.seq++
	seq := h.seq
	h.mu.Unlock()
	base := h.cfg.runDirBase
	if base == "" {
		base = t.TempDir()
	}
	name := strings.Trim(unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	runID := fmt.Sprintf("drivertest-%s-%d-%d", strings.Trim(name, "-"), os.Getpid(), seq)
	runDir := filepath.Join(base, runID)
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(runDir, "fake_trainer.sh")
	resolved := filepath.Join(runDir, "resolved.json")
	if err := os.WriteFile(script, fakeTrainer, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(resolved, []byte(`{"version": 1}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	task := &driver.Task{
		RunID:   runID,
		RunDir:  runDir,
		Command: []string{h.cfg.shell, script, "--config", resolved, "--run-dir", runDir},
		Env:     env,
		PassEnv: []string{envSecret},
		LogPath: filepath.Join(runDir, "train.log"),
		Options: h.cfg.options,
	}
	if h.cfg.adjust != nil {
		h.cfg.adjust(task)
	}
	return task
}

// events reads the run's events.jsonl; a missing file is no events yet.
func events(t *testing.T, runDir string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(runDir, "events.jsonl"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%s/events.jsonl:%d: %v", runDir, i+1, err)
		}
		out = append(out, ev)
	}
	return out
}

// lastEvent returns the last event of type typ, or nil.
func lastEvent(evs []map[string]any, typ string) map[string]any {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i]["type"] == typ {
			return evs[i]
		}
	}
	return nil
}

// checkpointComplete reports whether the run dir holds a checkpoint with its
// completion marker, as the trainer contract defines "complete".
func checkpointComplete(runDir string) bool {
	m, _ := filepath.Glob(filepath.Join(runDir, run.CheckpointsDir, run.CheckpointPrefix+"*", run.CompleteMarker))
	return len(m) > 0
}
