package train

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/gputest"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/iostreams"
	"github.com/loractl/loractl/launch"
	"github.com/loractl/loractl/plan"
	"github.com/loractl/loractl/run"
)

// fakeTrainer completes instantly: it writes a start and an end event.
type fakeTrainer struct {
	started int
	task    *driver.Task // the last task started
	caps    driver.Capabilities
}

func (d *fakeTrainer) Name() string { return "fake" }
func (d *fakeTrainer) Start(ctx context.Context, t *driver.Task) (*driver.Handle, error) {
	d.started++
	d.task = t
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
func (d *fakeTrainer) Capabilities() driver.Capabilities { return d.caps }

// setup writes a config for a model the built-in architecture table knows, and a
// factory whose driver is the fake trainer. The config names the local driver, one
// that runs the trainer on this machine, so the GPU pre-flight applies.
func setup(t *testing.T) (*Options, *fakeTrainer, string) {
	t.Helper()
	return setupWith(t, "local", "")
}

// setupWith is setup with the config's driver.name and extra YAML lines (a lora:
// section, say) appended.
func setupWith(t *testing.T, driverName, extra string) (*Options, *fakeTrainer, string) {
	t.Helper()
	dir := t.TempDir()
	data, _ := filepath.Abs(filepath.Join("..", "..", "..", "examples", "data"))
	cfg := filepath.Join(dir, "c.yaml")
	yaml := "name: big\nmodel: Qwen/Qwen2.5-7B-Instruct\ndata:\n  train: " + filepath.Join(data, "train.jsonl") +
		"\n  eval: " + filepath.Join(data, "eval.jsonl") + "\ntrain:\n  batch_size: 1\n  max_length: 512\ndriver:\n  name: " + driverName + "\n" + extra
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LORACTL_PYTHON", "/bin/true")
	io, _, _, _ := iostreams.Test()
	l := zerolog.Nop()
	runs := filepath.Join(dir, "runs")
	// The fake stands in for the named driver: one on this machine gets the pre-flight.
	fake := &fakeTrainer{caps: driver.Capabilities{Local: driverName == "local" || driverName == "docker" || driverName == "podman"}}
	f := &cmdutil.Factory{IO: io, Log: &l, RunsDir: func() string { return runs },
		Driver: func(string) (driver.Driver, error) { return fake, nil }}
	o := &Options{Factory: f, Config: cfg, GPU: -1, Signals: make(chan os.Signal)}
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

// TestQuantizationWithoutGPUIsRefused: QLoRA on a machine without a GPU is refused
// before launch (exit 2), leaving no run dir; without quantization it trains on the CPU.
func TestQuantizationWithoutGPUIsRefused(t *testing.T) {
	for _, tt := range []struct {
		name, extra string
		code        int
	}{
		{"4bit", "quantization: 4bit\n", cmdutil.ExitInvalid},
		{"8bit", "quantization: 8bit\n", cmdutil.ExitInvalid},
		{"none", "", cmdutil.ExitOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, fake, runs := setupWith(t, "local", tt.extra)
			o.GPUManager = func() gpu.Manager { return gputest.New() }
			err := trainRun(context.Background(), o)
			if code := cmdutil.ExitCode(err); code != tt.code {
				t.Fatalf("exit %d (%v), want %d", code, err, tt.code)
			}
			if tt.code == cmdutil.ExitOK {
				return
			}
			if !strings.Contains(err.Error(), "needs an NVIDIA GPU") || fake.started != 0 {
				t.Fatalf("error %v, started %d", err, fake.started)
			}
			if entries, _ := os.ReadDir(runs); len(entries) != 0 {
				t.Fatal("a refused run left a run dir")
			}
		})
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
	if !strings.Contains(out, "reserved, ") || !strings.Contains(out, "(torch); estimate without the CUDA context") || !strings.Contains(out, "measured/estimate") {
		t.Errorf("summary lacks torch's peak beside the estimate without the CUDA context:\n%s", out)
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
	if err := os.WriteFile(t.LogPath, []byte("loading\nTraceback (most recent call last):\nRuntimeError: boom\n"), 0o644); err != nil {
		return nil, err
	}
	if err := run.AppendEvent(filepath.Join(t.RunDir, run.EventsFile), json.RawMessage(
		`{"type":"error","time":"2026-01-01T00:00:00Z","error_type":"OutOfMemoryError","message":"CUDA out of memory","hint":"lower train.batch_size"}`)); err != nil {
		return nil, err
	}
	return &driver.Handle{Driver: "fake", Version: driver.HandleVersion, ID: "1"}, nil
}

func (d *failingTrainer) Wait(context.Context, *driver.Handle) (*driver.ExitResult, error) {
	return &driver.ExitResult{ExitCode: 1}, nil
}

// --detach with the local driver is refused before anything runs: the trainer would
// be stopped as soon as loractl exits.
// --wait-gpu [TIMEOUT]: the timeout may follow the flag after a space, wherever the
// config sits; with `=` the next argument is never taken.
func TestWaitGPUFlag(t *testing.T) {
	tests := []struct {
		args       []string
		wantConfig string
		wantResume string
		wantWait   time.Duration
		wantErr    string
	}{
		{[]string{"c.yaml"}, "c.yaml", "", 0, ""},
		{[]string{"c.yaml", "--wait-gpu", "10m"}, "c.yaml", "", 10 * time.Minute, ""},
		{[]string{"--wait-gpu", "10m", "c.yaml"}, "c.yaml", "", 10 * time.Minute, ""},
		{[]string{"--resume", "r1", "--wait-gpu", "10m"}, "", "r1", 10 * time.Minute, ""},
		{[]string{"c.yaml", "--wait-gpu"}, "c.yaml", "", 24 * time.Hour, ""},
		{[]string{"--wait-gpu", "c.yaml"}, "c.yaml", "", 24 * time.Hour, ""},
		{[]string{"c.yaml", "--wait-gpu=10m"}, "c.yaml", "", 10 * time.Minute, ""},
		{[]string{"--wait-gpu=90s", "2h"}, "2h", "", 90 * time.Second, ""},
		{[]string{"c.yaml", "--wait-gpu", "10m", "d.yaml"}, "", "", 0, "accepts at most 1 arg"},
		{[]string{"c.yaml", "d.yaml"}, "", "", 0, "accepts at most 1 arg"},
		{[]string{"c.yaml", "--wait-gpu=soon"}, "", "", 0, "wait-gpu"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			got, err := parseTrain(t, tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Config != tt.wantConfig || got.Resume != tt.wantResume || got.WaitGPU != tt.wantWait {
				t.Errorf("config %q resume %q wait %s; want %q %q %s", got.Config, got.Resume, got.WaitGPU, tt.wantConfig, tt.wantResume, tt.wantWait)
			}
		})
	}
	cmd := NewCmdTrain(&cmdutil.Factory{}, nil)
	if usage := cmd.Flags().FlagUsages(); !strings.Contains(usage, "--wait-gpu 10m") {
		t.Errorf("--wait-gpu help does not show the space-separated form:\n%s", usage)
	}
}

// parseTrain runs the train command's flag and argument handling only.
func parseTrain(t *testing.T, args []string) (*Options, error) {
	t.Helper()
	ios, _, _, _ := iostreams.Test()
	var got *Options
	cmd := NewCmdTrain(&cmdutil.Factory{IO: ios}, func(o *Options) error { got = o; return nil })
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	err := cmd.Execute()
	return got, err
}

// --gpu takes an index or -1; anything below is refused (exit 2) naming the flag, as
// plan refuses it, instead of silently meaning "any GPU".
func TestGPUFlagRange(t *testing.T) {
	for _, tt := range []struct {
		gpu  string
		code int
	}{{"-7", cmdutil.ExitInvalid}, {"-2", cmdutil.ExitInvalid}, {"-1", cmdutil.ExitOK}, {"0", cmdutil.ExitOK}, {"3", cmdutil.ExitOK}} {
		_, err := parseTrain(t, []string{"c.yaml", "--gpu", tt.gpu})
		if code := cmdutil.ExitCode(err); code != tt.code {
			t.Errorf("--gpu %s: exit %d (%v), want %d", tt.gpu, code, err, tt.code)
		}
		if tt.code != cmdutil.ExitOK && (err == nil || !strings.Contains(err.Error(), "--gpu "+tt.gpu)) {
			t.Errorf("--gpu %s: error %v does not name the flag", tt.gpu, err)
		}
	}
}

func TestResumeTakesNoConfig(t *testing.T) {
	_, err := parseTrain(t, []string{"c.yaml", "--resume", "demo-0123456789"})
	if code := cmdutil.ExitCode(err); code != cmdutil.ExitInvalid || !strings.Contains(err.Error(), "takes no CONFIG") {
		t.Fatalf("exit %d (%v), want 2 saying --resume takes no CONFIG", code, err)
	}
	if _, err := parseTrain(t, []string{"--resume", "demo-0123456789"}); err != nil {
		t.Fatalf("--resume alone: %v", err)
	}
}

// A driver that runs the trainer elsewhere (Slurm, an external plugin) must not be
// steered by this machine's GPU: no CUDA_VISIBLE_DEVICES from the login node's NVML,
// no refusal because the login node's GPU is busy. The estimate is still recorded.
func TestRemoteDriversSkipTheLocalGPU(t *testing.T) {
	gpus := map[string]func() *gputest.Manager{
		// A small, busy GPU here: the local pre-flight would refuse with exit 3.
		"busy": func() *gputest.Manager { return gputest.New(gputest.GPU("NVIDIA T4", 16<<30, 1<<30)) },
		// An idle one: the local pre-flight would export CUDA_VISIBLE_DEVICES=1.
		"idle": func() *gputest.Manager {
			return gputest.New(gputest.GPU("NVIDIA T4", 16<<30, 1<<30), gputest.GPU("NVIDIA H100 80GB HBM3", 80<<30, 79<<30))
		},
	}
	for _, name := range []string{"slurm", "my-plugin"} {
		for state, mgr := range gpus {
			t.Run(name+" "+state, func(t *testing.T) {
				o, fake, runs := setupWith(t, name, "")
				o.GPUManager = func() gpu.Manager { return mgr() }
				o.WaitGPU, o.WaitPoll = 50*time.Millisecond, 5*time.Millisecond
				if err := trainRun(context.Background(), o); err != nil {
					t.Fatalf("exit %d: %v", cmdutil.ExitCode(err), err)
				}
				if fake.started != 1 {
					t.Fatal("not launched")
				}
				if v, ok := fake.task.Env["CUDA_VISIBLE_DEVICES"]; ok {
					t.Errorf("launch env sets CUDA_VISIBLE_DEVICES=%q from this machine's GPU", v)
				}
				if len(fake.task.GPUs) != 0 {
					t.Errorf("task GPUs %v come from this machine", fake.task.GPUs)
				}
				ms, _ := (&run.Store{Base: runs}).List()
				if len(ms) != 1 || ms[0].GPU != nil || len(ms[0].Estimate) == 0 {
					t.Fatalf("manifest should hold the estimate and no local GPU: %+v", ms)
				}
			})
		}
	}
	// The same config with the local driver is refused.
	o, fake, _ := setupWith(t, "local", "")
	o.GPUManager = func() gpu.Manager { return gputest.New(gputest.GPU("NVIDIA T4", 16<<30, 1<<30)) }
	if err := trainRun(context.Background(), o); cmdutil.ExitCode(err) != cmdutil.ExitNoFit || fake.started != 0 {
		t.Fatalf("local driver: exit %d (%v), started %d", cmdutil.ExitCode(err), err, fake.started)
	}
}

// A model or target the estimator cannot handle is no reason to refuse training:
// the run launches without an estimate and the warning says why.
func TestNoEstimateIsAWarning(t *testing.T) {
	hub := t.TempDir()
	snap := filepath.Join(hub, "models--acme--neox", "snapshots", "main")
	if err := os.MkdirAll(snap, 0o755); err != nil {
		t.Fatal(err)
	}
	neox := `{"model_type": "gpt_neox", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
 "num_attention_heads": 16, "vocab_size": 50304}`
	if err := os.WriteFile(filepath.Join(snap, "config.json"), []byte(neox), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HF_HUB_CACHE", hub)
	tests := []struct {
		name, extra, model string
		wantReason         string // "" : an estimate is made
	}{
		{"unknown model_type", "", "acme/neox", `model_type \"gpt_neox\"`},
		{"target the estimator does not know", "lora:\n  target_modules: [query_key_value]\n", "", "query_key_value"},
		{"PEFT-style suffix", "lora:\n  target_modules: [self_attn.q_proj, self_attn.v_proj]\n", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, fake, runs := setupWith(t, "local", tt.extra)
			if tt.model != "" {
				src, _ := os.ReadFile(o.Config)
				if err := os.WriteFile(o.Config, []byte(strings.Replace(string(src), "Qwen/Qwen2.5-7B-Instruct", tt.model, 1)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var logBuf strings.Builder
			l := zerolog.New(&logBuf)
			o.Factory.Log = &l
			o.GPUManager = func() gpu.Manager { return gputest.New(gputest.GPU("NVIDIA H100 80GB HBM3", 80<<30, 79<<30)) }
			if err := trainRun(context.Background(), o); err != nil {
				t.Fatalf("exit %d: %v\n%s", cmdutil.ExitCode(err), err, logBuf.String())
			}
			if fake.started != 1 {
				t.Fatal("not launched")
			}
			ms, _ := (&run.Store{Base: runs}).List()
			if len(ms) != 1 {
				t.Fatalf("runs: %+v", ms)
			}
			if tt.wantReason == "" {
				if len(ms[0].Estimate) == 0 || strings.Contains(logBuf.String(), "no memory estimate") {
					t.Errorf("no estimate for a target PEFT accepts:\n%s", logBuf.String())
				}
				return
			}
			if len(ms[0].Estimate) != 0 {
				t.Errorf("an estimate was recorded: %s", ms[0].Estimate)
			}
			if !strings.Contains(logBuf.String(), "no memory estimate") || !strings.Contains(logBuf.String(), tt.wantReason) {
				t.Errorf("warning does not name the reason %q:\n%s", tt.wantReason, logBuf.String())
			}
		})
	}
}

// The summary compares torch's reserved peak with the estimate less the CUDA
// context, and NVML's peak (less what was in use before) with the full estimate.
func TestMemoryLinesCompareLikeWithLike(t *testing.T) {
	est := &plan.Estimate{PeakBytes: 10 << 30, Terms: []plan.Term{{Name: "base_weights", Bytes: 10<<30 - 600<<20}, {Name: "cuda_context", Bytes: 600 << 20}}}
	check := &launch.Result{Estimate: est, NVMLComparable: true, BaseUsed: 1 << 30}
	lines := memoryLines(check, 11<<30, 9<<30, 8<<30)
	if len(lines) != 2 {
		t.Fatalf("lines = %q", lines)
	}
	for _, want := range []string{"9.0 GiB reserved", "(torch)", "without the CUDA context 9.4 GiB", "measured/estimate 0.96"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("torch line %q lacks %q", lines[0], want)
		}
	}
	for _, want := range []string{"10.0 GiB used (NVML", "1.0 GiB in use before launch", "full estimate 10.0 GiB", "measured/estimate 1.00"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("NVML line %q lacks %q", lines[1], want)
		}
	}
	// No NVML line on a MIG slice (the sampler reads the whole GPU) or without samples.
	check.NVMLComparable = false
	if lines := memoryLines(check, 11<<30, 9<<30, 8<<30); len(lines) != 1 {
		t.Errorf("MIG: lines = %q", lines)
	}
}

// A data error about the whole file (too few examples) names the file, not "file:0".
func TestWholeFileDataErrorHasNoLineZero(t *testing.T) {
	o, fake, _ := setup(t)
	dir := filepath.Dir(o.Config)
	small := filepath.Join(dir, "small.jsonl")
	line := `{"messages":[{"role":"user","content":"q%d"},{"role":"assistant","content":"a"}]}` + "\n"
	var b strings.Builder
	for i := 0; i < 3; i++ {
		fmt.Fprintf(&b, line, i)
	}
	if err := os.WriteFile(small, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	o.Sets = []string{"data.train=" + small, "data.eval=null"}
	err := trainRun(context.Background(), o)
	errOut := o.Factory.IO.ErrOut.(interface{ String() string }).String()
	if cmdutil.ExitCode(err) != cmdutil.ExitInvalid || fake.started != 0 {
		t.Fatalf("exit %d (%v), started %d\n%s", cmdutil.ExitCode(err), err, fake.started, errOut)
	}
	if !strings.Contains(errOut, small+": ") || strings.Contains(errOut, small+":0") {
		t.Errorf("whole-file error location:\n%s", errOut)
	}
}
