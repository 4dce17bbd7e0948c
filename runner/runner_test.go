package runner

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/run/runtest"
)

// fakeDriver "runs" a trainer by writing the events the test scripts into the run dir
// and exiting with the scripted code.
type fakeDriver struct {
	mu     sync.Mutex
	events []string
	exit   int
	tasks  []*driver.Task
	state  driver.TaskState // what Inspect reports; default exited
	// files are written into the run dir at Start, by path relative to it (what a
	// trainer leaves behind: eval/generations.jsonl).
	files map[string]string
}

func (d *fakeDriver) Name() string { return "fake" }

func (d *fakeDriver) Start(ctx context.Context, t *driver.Task) (*driver.Handle, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tasks = append(d.tasks, t)
	for name, body := range d.files {
		p := filepath.Join(t.RunDir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	for _, e := range d.events {
		if err := run.AppendEvent(filepath.Join(t.RunDir, run.EventsFile), json.RawMessage(e)); err != nil {
			return nil, err
		}
	}
	return &driver.Handle{Driver: "fake", Version: driver.HandleVersion, ID: "1"}, nil
}

func (d *fakeDriver) Wait(ctx context.Context, h *driver.Handle) (*driver.ExitResult, error) {
	return &driver.ExitResult{ExitCode: d.exit}, nil
}
func (d *fakeDriver) Signal(context.Context, *driver.Handle, string) error { return nil }
func (d *fakeDriver) Stop(context.Context, *driver.Handle, time.Duration) error {
	return nil
}
func (d *fakeDriver) Capabilities() driver.Capabilities { return driver.Capabilities{} }

func (d *fakeDriver) Inspect(context.Context, *driver.Handle) (*driver.Status, error) {
	if d.state != "" {
		return &driver.Status{State: d.state}, nil
	}
	return &driver.Status{State: driver.StateExited, Exit: &driver.ExitResult{ExitCode: d.exit}}, nil
}

func prepared(t *testing.T, dir, yaml string) *Prepared {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "model"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := Prepare(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

const cfgYAML = "name: t\nmodel: ./model\ndata:\n  train: train.jsonl\n  eval_split: 0.1\n"

var completedEvents = []string{
	`{"type":"start","time":"2026-01-01T00:00:00Z","versions":{"peft":"0.21"},"device":"cpu"}`,
	`{"type":"log","time":"2026-01-01T00:00:01Z","step":1,"loss":2}`,
	`{"type":"end","time":"2026-01-01T00:00:02Z","status":"completed","step":1,"eval_loss_before":2.0,"eval_loss_after":2.5,"adapter_path":"/x/adapter"}`,
}

const distStart = `{"type":"start","time":"2026-01-01T00:00:00Z","device":"cpu","distributed":{"world_size":2,"nodes":1,"nproc_per_node":2,"strategy":"ddp","backend":"gloo"}}`

func launchAndWait(t *testing.T, store *run.Store, p *Prepared, d *fakeDriver, o LaunchOptions) (*Outcome, error) {
	t.Helper()
	o.Driver, o.Python = d, "python3"
	a, err := Launch(context.Background(), store, p, o)
	if err != nil {
		return nil, err
	}
	return a.Wait(context.Background(), nil)
}

func TestOutcomeAndRefusals(t *testing.T) {
	dir := t.TempDir()
	store, _ := run.NewStore(filepath.Join(dir, "runs"))
	p := prepared(t, dir, cfgYAML)

	out, err := launchAndWait(t, store, p, &fakeDriver{events: completedEvents}, LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := store.Manifest(p.RunID)
	if out.State != run.StateCompleted || m.State != run.StateCompleted || m.Versions["peft"] != "0.21" {
		t.Fatalf("outcome %s, manifest %+v", out.State, m)
	}
	// Eval loss rose: the run completed, but the adapter is not adopted.
	if m.Result == nil || m.Result.Improved == nil || *m.Result.Improved {
		t.Fatalf("verdict: %+v", m.Result)
	}
	for _, f := range []string{run.ConfigFile, run.ResolvedFile} {
		if _, err := os.Stat(filepath.Join(store.Dir(p.RunID), f)); err != nil {
			t.Errorf("run dir lacks %s", f)
		}
	}

	// A completed run is not trained again without --force, nor resumed.
	if _, err := launchAndWait(t, store, p, &fakeDriver{}, LaunchOptions{}); !errors.Is(err, ErrCompleted) {
		t.Fatalf("second launch: %v", err)
	}
	if _, err := launchAndWait(t, store, p, &fakeDriver{}, LaunchOptions{Resume: ResumeAuto}); !errors.Is(err, ErrCompleted) {
		t.Fatalf("resume of completed: %v", err)
	}
	// --force keeps the old run aside.
	if _, err := launchAndWait(t, store, p, &fakeDriver{events: completedEvents}, LaunchOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	aside, _ := os.ReadDir(filepath.Join(store.Base, ".superseded"))
	if len(aside) != 1 {
		t.Fatalf("superseded runs: %d", len(aside))
	}
}

func TestStateFromExit(t *testing.T) {
	cases := []struct {
		name   string
		exit   int
		events []string
		want   run.State
	}{
		{"completed", 0, completedEvents, run.StateCompleted},
		{"exit 0 without end event is a failure", 0, completedEvents[:2], run.StateFailed},
		{"interrupted", 75, []string{`{"type":"end","time":"2026-01-01T00:00:02Z","status":"interrupted","step":3}`}, run.StateInterrupted},
		{"failed", 1, []string{`{"type":"error","time":"2026-01-01T00:00:02Z","error_type":"OutOfMemoryError","message":"CUDA out of memory","hint":"lower batch"}`}, run.StateFailed},
		// Under torchrun a rank's 75 comes back as torchrun's 1: rank 0's end event decides.
		{"distributed interrupted, torchrun exit 1", 1, []string{distStart, `{"type":"end","time":"2026-01-01T00:00:02Z","status":"interrupted","step":3}`}, run.StateInterrupted},
		{"distributed completed", 0, []string{distStart, completedEvents[2]}, run.StateCompleted},
		{"distributed without end event", 1, []string{distStart}, run.StateFailed},
		{"one process exit 1 with an interrupted end", 1, []string{`{"type":"end","time":"2026-01-01T00:00:02Z","status":"interrupted","step":3}`}, run.StateFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			store, _ := run.NewStore(filepath.Join(dir, "runs"))
			p := prepared(t, dir, cfgYAML)
			out, err := launchAndWait(t, store, p, &fakeDriver{events: tc.events, exit: tc.exit}, LaunchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if out.State != tc.want {
				t.Fatalf("state %s, want %s", out.State, tc.want)
			}
			m, _ := store.Manifest(p.RunID)
			if m.State != tc.want || m.ExitCode == nil || *m.ExitCode != tc.exit || m.LastAttempt().State != tc.want {
				t.Fatalf("manifest %+v", m)
			}
			if tc.name == "failed" && m.Error != "OutOfMemoryError: CUDA out of memory" {
				t.Errorf("error %q", m.Error)
			}
		})
	}
}

func TestResumeRules(t *testing.T) {
	dir := t.TempDir()
	store, _ := run.NewStore(filepath.Join(dir, "runs"))
	p := prepared(t, dir, cfgYAML)
	interrupted := []string{`{"type":"end","time":"2026-01-01T00:00:02Z","status":"interrupted","step":3}`}
	if _, err := launchAndWait(t, store, p, &fakeDriver{events: interrupted, exit: 75}, LaunchOptions{}); err != nil {
		t.Fatal(err)
	}
	// No complete checkpoint: nothing to resume from.
	if _, err := launchAndWait(t, store, p, &fakeDriver{}, LaunchOptions{Resume: ResumeAuto}); !errors.Is(err, ErrNoCheckpt) {
		t.Fatalf("resume without checkpoint: %v", err)
	}
	cp := filepath.Join(store.Dir(p.RunID), run.CheckpointsDir, "checkpoint-3")
	runtest.Checkpoint(t, cp, 3)
	// With a checkpoint, a fresh start over the interrupted run is refused: resume,
	// or --force.
	if _, err := launchAndWait(t, store, p, &fakeDriver{}, LaunchOptions{}); !errors.Is(err, ErrExists) {
		t.Fatalf("fresh over interrupted: %v", err)
	}
	// A resolved.json lost in a crash (its write is not synced) is restored on resume.
	resolved := filepath.Join(store.Dir(p.RunID), run.ResolvedFile)
	if err := os.WriteFile(resolved, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d := &fakeDriver{events: completedEvents}
	if _, err := launchAndWait(t, store, p, d, LaunchOptions{Resume: ResumeAuto}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(resolved); string(b) != string(p.ResolvedJSON) {
		t.Fatalf("resolved.json not restored on resume: %q", b)
	}
	args := d.tasks[0].Command
	if args[len(args)-2] != "--resume" || args[len(args)-1] != cp {
		t.Fatalf("trainer not told to resume from %s: %v", cp, args)
	}
	// The trainer runs from the store's content-addressed trainer dir, which container
	// drivers mount read-only.
	trainer := run.TrainerDir(store.Base, p.Trainer.SHA256)
	if args[1] != filepath.Join(trainer, run.TrainerFile) || !slices.Contains(d.tasks[0].ReadOnly, trainer) {
		t.Fatalf("trainer path %s, read-only %v", args[1], d.tasks[0].ReadOnly)
	}
	for _, f := range []string{run.TrainerFile, "train_lora_support.py"} {
		if _, err := os.Stat(filepath.Join(trainer, f)); err != nil {
			t.Errorf("trainer dir lacks %s", f)
		}
	}
	m, _ := store.Manifest(p.RunID)
	if len(m.Attempts) != 2 || m.Attempts[1].ResumeFrom != cp {
		t.Fatalf("attempts %+v", m.Attempts)
	}
	// A changed config hash refuses to resume.
	m.State, m.ConfigHash = run.StateInterrupted, "other"
	if err := run.WriteManifest(store.Dir(p.RunID), m); err != nil {
		t.Fatal(err)
	}
	if _, err := launchAndWait(t, store, p, &fakeDriver{}, LaunchOptions{Resume: ResumeAuto}); !errors.Is(err, ErrConfigDiff) {
		t.Fatalf("resume with changed config: %v", err)
	}
}

// A run that failed or stopped before its first checkpoint starts again in place on a
// plain re-run, keeping its history; one whose trainer is still active is never
// started twice, resumed or not.
func TestRestartInPlaceAndActiveRuns(t *testing.T) {
	dir := t.TempDir()
	store, _ := run.NewStore(filepath.Join(dir, "runs"))
	p := prepared(t, dir, cfgYAML)
	failed := []string{`{"type":"error","time":"2026-01-01T00:00:02Z","error_type":"ValueError","message":"bad"}`}
	if _, err := launchAndWait(t, store, p, &fakeDriver{events: failed, exit: 1}, LaunchOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := launchAndWait(t, store, p, &fakeDriver{events: completedEvents}, LaunchOptions{})
	if err != nil || out.State != run.StateCompleted {
		t.Fatalf("restart in place: %v %v", out, err)
	}
	m, _ := store.Manifest(p.RunID)
	if len(m.Attempts) != 2 || m.Attempts[0].State != run.StateFailed || m.Attempts[1].Note == "" || m.Attempts[1].EventsOffset == 0 {
		t.Fatalf("attempts %+v", m.Attempts)
	}

	// A detached run still running: neither a fresh start nor a resume may launch.
	m.State = run.StateRunning
	if err := run.WriteManifest(store.Dir(p.RunID), m); err != nil {
		t.Fatal(err)
	}
	for _, o := range []LaunchOptions{{}, {Force: true}, {Resume: ResumeAuto}} {
		d := &fakeDriver{state: driver.StateRunning}
		if _, err := launchAndWait(t, store, p, d, o); !errors.Is(err, ErrActive) || len(d.tasks) != 0 {
			t.Fatalf("%+v over an active run: %v (started %d)", o, err, len(d.tasks))
		}
	}
}

// A run whose manifest is damaged is refused with a message that names the way out,
// and --force starts it over with the damaged directory kept aside.
func TestDamagedManifest(t *testing.T) {
	dir := t.TempDir()
	store, _ := run.NewStore(filepath.Join(dir, "runs"))
	p := prepared(t, dir, cfgYAML)
	if _, err := launchAndWait(t, store, p, &fakeDriver{}, LaunchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(store.Dir(p.RunID), run.ManifestFile), []byte(`{"version": 1, "state": `), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, o := range []LaunchOptions{{}, {Resume: ResumeAuto}} {
		if _, err := launchAndWait(t, store, p, &fakeDriver{}, o); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "--force") {
			t.Fatalf("%+v over a damaged manifest: %v", o, err)
		}
	}
	if _, err := launchAndWait(t, store, p, &fakeDriver{}, LaunchOptions{Force: true}); err != nil {
		t.Fatalf("--force over a damaged manifest: %v", err)
	}
	if m, err := run.ReadManifest(store.Dir(p.RunID)); err != nil || len(m.Attempts) != 1 || !strings.Contains(m.Attempts[0].Note, "manifest.json was unreadable") {
		t.Fatalf("after --force: %+v %v", m, err)
	}
	if aside, _ := os.ReadDir(filepath.Join(store.Base, ".superseded")); len(aside) != 1 {
		t.Fatalf("the damaged run was not kept aside: %v", aside)
	}
}

// vanishingDriver reports its task gone with no exit status, as the local driver does
// for a detached trainer (not its child) that was killed.
type vanishingDriver struct{ fakeDriver }

func (d *vanishingDriver) Capabilities() driver.Capabilities { return driver.Capabilities{} }

func (d *vanishingDriver) Inspect(context.Context, *driver.Handle) (*driver.Status, error) {
	return &driver.Status{State: driver.StateExited}, nil
}

// TestRefreshVanishedTrainer: a trainer that ended without an end event and without an
// exit status the controller could see (a detached trainer killed with SIGKILL or by
// the OOM killer) is failed with an error that says so, not a bare "failed".
func TestRefreshVanishedTrainer(t *testing.T) {
	dir := t.TempDir()
	store, _ := run.NewStore(filepath.Join(dir, "runs"))
	p := prepared(t, dir, cfgYAML)
	d := &vanishingDriver{fakeDriver{events: completedEvents[:2]}}
	a, err := Launch(context.Background(), store, p, LaunchOptions{Driver: d, Python: "python3", Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	a.Release()
	m, err := store.Manifest(p.RunID)
	if err != nil {
		t.Fatal(err)
	}
	m, err = Refresh(context.Background(), store, m, d)
	if err != nil || m.State != run.StateFailed {
		t.Fatalf("refresh: %v, state %s", err, m.State)
	}
	for _, want := range []string{"without an end event", run.LogFile} {
		if !strings.Contains(m.Error, want) {
			t.Errorf("error %q does not say %q", m.Error, want)
		}
	}
}

func TestDistributedTaskWrapsTorchrun(t *testing.T) {
	base := func() *driver.Task {
		return &driver.Task{Command: []string{"/venv/bin/python", "/t/train_lora.py", "--config", "c"}, Env: map[string]string{}}
	}
	cases := []struct {
		name   string
		d      *config.DistributedConfig
		driver string
		gpus   []int
		pinned int
		want   string
	}{
		{"absent", nil, "local", nil, 0, "/venv/bin/python /t/train_lora.py --config c"},
		{"auto on two GPUs", &config.DistributedConfig{Nodes: 1, Strategy: "ddp", Port: 29500}, "local", []int{0, 3}, 0,
			"/venv/bin/python -m torch.distributed.run --standalone --nproc-per-node 2 --signals-to-handle " + TorchrunSignals + " /t/train_lora.py --config c"},
		{"auto on the CPU", &config.DistributedConfig{Nodes: 1, Strategy: "ddp", Port: 29500}, "docker", nil, 0,
			"/venv/bin/python -m torch.distributed.run --standalone --nproc-per-node 1 --signals-to-handle " + TorchrunSignals + " /t/train_lora.py --config c"},
		{"slurm wraps it itself", &config.DistributedConfig{NprocPerNode: 4, Nodes: 2, Strategy: "fsdp", Port: 29600}, "slurm", nil, 0,
			"/venv/bin/python /t/train_lora.py --config c"},
		{"reproduce pins auto", &config.DistributedConfig{Nodes: 1, Strategy: "ddp", Port: 29500}, "local", nil, 2,
			"/venv/bin/python -m torch.distributed.run --standalone --nproc-per-node 2 --signals-to-handle " + TorchrunSignals + " /t/train_lora.py --config c"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			task := base()
			distributedTask(task, tc.d, tc.driver, tc.gpus, tc.pinned)
			if got := strings.Join(task.Command, " "); got != tc.want {
				t.Errorf("command\n got %s\nwant %s", got, tc.want)
			}
			if (task.Distributed != nil) != (tc.d != nil) {
				t.Fatalf("task.Distributed = %+v", task.Distributed)
			}
			if tc.d != nil && task.Env["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] != ShutdownGrace {
				t.Errorf("env %v", task.Env)
			}
		})
	}
}
