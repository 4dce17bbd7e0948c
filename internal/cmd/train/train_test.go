package train

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/local"
	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/gputest"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/iostreams"
	"github.com/loractl/loractl/run"
)

// fakeTrainer completes instantly: it writes a start and an end event.
type fakeTrainer struct{ started int }

func (d *fakeTrainer) Name() string { return "fake" }
func (d *fakeTrainer) Start(ctx context.Context, t *driver.Task) (*driver.Handle, error) {
	d.started++
	ev := filepath.Join(t.RunDir, run.EventsFile)
	for _, e := range []string{
		`{"type":"start","time":"2026-01-01T00:00:00Z","device":"cuda:0","total_steps":1}`,
		`{"type":"end","time":"2026-01-01T00:00:01Z","status":"completed","step":1,"eval_loss_before":2,"eval_loss_after":1,"peak_memory":{"allocated_bytes":1000,"reserved_bytes":2000}}`,
	} {
		if err := run.AppendEvent(ev, json.RawMessage(e)); err != nil {
			return nil, err
		}
	}
	return &driver.Handle{Driver: "fake", Version: driver.HandleVersion, ID: "1"}, nil
}
func (d *fakeTrainer) Wait(context.Context, *driver.Handle) (*driver.ExitResult, error) {
	return &driver.ExitResult{}, nil
}
func (d *fakeTrainer) Signal(context.Context, *driver.Handle, string) error { return nil }
func (d *fakeTrainer) Stop(context.Context, *driver.Handle, time.Duration) error {
	return nil
}
func (d *fakeTrainer) Inspect(context.Context, *driver.Handle) (*driver.Status, error) {
	return &driver.Status{State: driver.StateExited}, nil
}

// setup writes a config for a model the built-in architecture table knows, and a
// factory whose driver is the fake trainer.
func setup(t *testing.T) (*Options, *fakeTrainer, string) {
	t.Helper()
	dir := t.TempDir()
	data, _ := filepath.Abs(filepath.Join("..", "..", "..", "examples", "data"))
	cfg := filepath.Join(dir, "c.yaml")
	yaml := "name: big\nmodel: Qwen/Qwen2.5-7B-Instruct\ndata:\n  train: " + filepath.Join(data, "train.jsonl") +
		"\n  eval: " + filepath.Join(data, "eval.jsonl") + "\ntrain:\n  batch_size: 1\n  max_length: 512\ndriver:\n  name: fake\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LORACTL_PYTHON", "/bin/true")
	io, _, _, _ := iostreams.Test()
	l := zerolog.Nop()
	runs := filepath.Join(dir, "runs")
	fake := &fakeTrainer{}
	f := &cmdutil.Factory{IO: io, Log: &l, RunsDir: func() string { return runs },
		Driver: func(string) (driver.Driver, error) { return fake, nil }}
	o := &Options{Factory: f, Config: cfg, GPU: -1, gpuIndex: -1, Signals: make(chan os.Signal)}
	return o, fake, runs
}

func TestPreflightRefusesWithExit3(t *testing.T) {
	o, fake, runs := setup(t)
	o.GPUManager = func() gpu.Manager { return gputest.New(gputest.GPU("NVIDIA L4", 24<<30, 8<<30)) }
	err := trainRun(context.Background(), o)
	if cmdutil.ExitCode(err) != cmdutil.ExitNoFit {
		t.Fatalf("exit %d (%v), want 3", cmdutil.ExitCode(err), err)
	}
	if fake.started != 0 {
		t.Fatal("the trainer was launched although the run does not fit")
	}
	if entries, _ := os.ReadDir(runs); len(entries) != 0 {
		t.Fatal("a refused run left a run dir")
	}
}

func TestPreflightForcePlacesAndRecords(t *testing.T) {
	o, fake, runs := setup(t)
	m := gputest.New(gputest.GPU("NVIDIA L4", 24<<30, 6<<30), gputest.GPU("NVIDIA L4", 24<<30, 8<<30))
	o.GPUManager = func() gpu.Manager { return m }
	o.Force = true
	if err := trainRun(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if fake.started != 1 {
		t.Fatal("not launched with --force")
	}
	ms, _ := (&run.Store{Base: runs}).List()
	if len(ms) != 1 || ms[0].GPU == nil || ms[0].GPU.Index != 1 || len(ms[0].Estimate) == 0 {
		t.Fatalf("manifest should name GPU 1 (most free) and hold the estimate: %+v", ms)
	}
	out := o.Factory.IO.Out.(interface{ String() string }).String()
	if !strings.Contains(out, "measured/estimate") {
		t.Errorf("summary lacks the measured peak beside the estimate:\n%s", out)
	}
}

func TestWaitGPUUntilMemoryFrees(t *testing.T) {
	o, fake, _ := setup(t)
	m := gputest.New(gputest.GPU("NVIDIA H100 80GB HBM3", 80<<30, 10<<30))
	m.Device(0).OnRead = func(reads int, info *gpu.Info) {
		if reads >= 2 {
			info.MemoryFreeBytes, info.MemoryUsedBytes = 79<<30, 1<<30
		}
	}
	o.GPUManager = func() gpu.Manager { return m }
	o.WaitGPU, o.WaitPoll = time.Minute, 10*time.Millisecond
	if err := trainRun(context.Background(), o); err != nil {
		t.Fatalf("wait-gpu: %v", err)
	}
	if fake.started != 1 {
		t.Fatal("not launched after memory freed up")
	}
	if status := o.Factory.IO.ErrOut.(interface{ String() string }).String(); !strings.Contains(status, "waiting for GPU memory") {
		t.Errorf("no visible status while waiting: %q", status)
	}
}

// A failed run's summary shows the exit code and the end of the trainer's log.
func TestFailureSummaryShowsLogTail(t *testing.T) {
	o, _, _ := setup(t)
	o.GPUManager = func() gpu.Manager { return &gputest.Manager{InitErr: gpu.ErrNoDriver} }
	o.Factory.Driver = func(string) (driver.Driver, error) { return &failingTrainer{}, nil }
	err := trainRun(context.Background(), o)
	if cmdutil.ExitCode(err) != cmdutil.ExitFailed {
		t.Fatalf("exit %d, want 1", cmdutil.ExitCode(err))
	}
	out := o.Factory.IO.Out.(interface{ String() string }).String()
	for _, want := range []string{"exit       code 1", "| RuntimeError: boom", "CUDA out of memory"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

type failingTrainer struct{ fakeTrainer }

func (d *failingTrainer) Start(ctx context.Context, t *driver.Task) (*driver.Handle, error) {
	os.WriteFile(t.LogPath, []byte("loading\nTraceback (most recent call last):\nRuntimeError: boom\n"), 0o644)
	run.AppendEvent(filepath.Join(t.RunDir, run.EventsFile), json.RawMessage(
		`{"type":"error","time":"2026-01-01T00:00:00Z","error_type":"OutOfMemoryError","message":"CUDA out of memory","hint":"lower train.batch_size"}`))
	return &driver.Handle{Driver: "fake", Version: driver.HandleVersion, ID: "1"}, nil
}

func (d *failingTrainer) Wait(context.Context, *driver.Handle) (*driver.ExitResult, error) {
	return &driver.ExitResult{ExitCode: 1}, nil
}

// --detach with the local driver is refused before anything runs: the trainer would
// be stopped as soon as loractl exits.
func TestDetachRefusedForLocal(t *testing.T) {
	o, _, runs := setup(t)
	o.Factory.Driver = func(string) (driver.Driver, error) { return local.New(), nil }
	o.Detach = true
	if err := trainRun(context.Background(), o); cmdutil.ExitCode(err) != cmdutil.ExitInvalid || !strings.Contains(err.Error(), "--detach") {
		t.Fatalf("got %v", err)
	}
	if entries, _ := os.ReadDir(runs); len(entries) != 0 {
		t.Fatal("a refused detach left a run dir")
	}
}
