package gpu

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/iostreams"
)

const gib = uint64(1 << 30)

// twoBusyH100s is a fake DGX with its unset NVML calls filled in: GPU 0 runs two
// other jobs, the rest are idle.
func twoBusyH100s() nvml.Interface {
	s := dgxh100.New()
	for i, d := range s.Devices {
		dev := d.(*server.Device)
		dev.MemoryInfo.Free = dev.MemoryInfo.Total
		procs := []nvml.ProcessInfo(nil)
		util := uint32(0)
		if i == 0 {
			dev.MemoryInfo.Used, dev.MemoryInfo.Free = 70*gib, 10*gib
			procs = []nvml.ProcessInfo{{Pid: 4242, UsedGpuMemory: 50 * gib}, {Pid: 4343, UsedGpuMemory: 20 * gib}}
			util = 97
		}
		dev.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) { return nvml.Memory_v2{}, nvml.ERROR_NOT_SUPPORTED }
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{Gpu: util}, nvml.SUCCESS }
		dev.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return procs, nvml.SUCCESS }
	}
	return s
}

func run(t *testing.T, lib nvml.Interface, jsonOut bool) (string, error) {
	t.Helper()
	ios, _, out, _ := iostreams.Test()
	o := &Options{Factory: &cmdutil.Factory{IO: ios}, JSON: jsonOut,
		Manager: func() gpu.Manager { return &gpu.NVML{Lib: lib} }}
	err := gpuRun(o)
	return out.String(), err
}

func TestGPUHuman(t *testing.T) {
	out, err := run(t, twoBusyH100s(), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"NVIDIA driver 550.54.15, CUDA 12.4, 8 GPU(s)",
		"GPU 0  NVIDIA H100 80GB HBM3  compute 9.0",
		"10.0 GiB free of 80.0 GiB (70.0 GiB used), utilisation 97%",
		"pid 4242 (50.0 GiB), pid 4343 (20.0 GiB)",
		"GPU 7  NVIDIA H100 80GB HBM3",
		"processes    none",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestGPUJSON(t *testing.T) {
	out, err := run(t, twoBusyH100s(), true)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Driver  bool
		System  gpu.System
		Devices []gpu.Info
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if !rep.Driver || rep.System.CUDADriverVersion != "12.4" || len(rep.Devices) != 8 {
		t.Fatalf("report = %+v", rep)
	}
	if d := rep.Devices[0]; d.MemoryFreeBytes != 10*gib || len(d.Processes) != 2 || d.Processes[0].PID != 4242 {
		t.Errorf("gpu 0 = %+v", d)
	}
}

// A MIG-enabled GPU without root answers the process query with NO_PERMISSION:
// `loractl gpu` still succeeds and says the processes are unknown; a process whose
// memory NVML does not report is shown as unknown, not as 16 EiB.
func TestGPUProcessesUnknown(t *testing.T) {
	lib := twoBusyH100s().(*server.Server)
	lib.Devices[1].(*server.Device).GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return nil, nvml.ERROR_NO_PERMISSION
	}
	lib.Devices[2].(*server.Device).GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return []nvml.ProcessInfo{{Pid: 99, UsedGpuMemory: ^uint64(0)}}, nvml.SUCCESS
	}
	out, err := run(t, lib, false)
	if err != nil {
		t.Fatalf("loractl gpu failed: %v", err)
	}
	for _, want := range []string{"processes    unknown: no permission", "pid 99 (memory unknown)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "EiB") || strings.Contains(out, "17179869184") {
		t.Errorf("NVML_VALUE_NOT_AVAILABLE printed as a size:\n%s", out)
	}
	js, err := run(t, lib, true)
	if err != nil || !strings.Contains(js, `"processes_unknown": "no permission`) || !strings.Contains(js, `"used_memory_unknown": true`) {
		t.Errorf("json (%v):\n%s", err, js)
	}
}

func TestNoDriverSaysSoAndSucceeds(t *testing.T) {
	missing := &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }}
	out, err := run(t, missing, false)
	if err != nil || cmdutil.ExitCode(err) != 0 {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(out, "No NVIDIA GPU available (no NVIDIA driver: libnvidia-ml.so.1 was not found)") ||
		!strings.Contains(out, "runs on the CPU") {
		t.Errorf("output:\n%s", out)
	}
	out, err = run(t, missing, true)
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep["driver"] != false || !strings.Contains(rep["reason"].(string), "no NVIDIA driver") || len(rep["devices"].([]any)) != 0 {
		t.Errorf("json = %v", rep)
	}
}

func TestOtherNVMLFailureIsAnError(t *testing.T) {
	broken := &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_UNKNOWN }}
	if _, err := run(t, broken, false); cmdutil.ExitCode(err) != cmdutil.ExitFailed {
		t.Fatalf("err = %v", err)
	}
}

func TestFlags(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	var got *Options
	cmd := NewCmdGPU(&cmdutil.Factory{IO: ios}, func(o *Options) error { got = o; return nil })
	cmd.SetArgs([]string{"--json"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !got.JSON || got.Manager == nil {
		t.Errorf("options = %+v", got)
	}
}
