package gpu_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/loractl/loractl/gpu"
)

const gib = uint64(1 << 30)

// idle fills in what go-nvml's fake machines leave unset (their calls would panic)
// with an idle GPU: everything free, no processes. v2 memory reports NOT_SUPPORTED so
// the v1 fallback is exercised; tests that need v2 override it.
func idle(s *server.Server) *server.Server {
	for _, d := range s.Devices {
		dev := d.(*server.Device)
		dev.MemoryInfo.Free = dev.MemoryInfo.Total
		dev.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) { return nvml.Memory_v2{}, nvml.ERROR_NOT_SUPPORTED }
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{}, nvml.SUCCESS }
		dev.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
		dev.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 71_500, nvml.SUCCESS }
		dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 34, nvml.SUCCESS }
	}
	return s
}

func inventory(t *testing.T, lib nvml.Interface) *gpu.Snapshot {
	t.Helper()
	m, err := gpu.Open(&gpu.NVML{Lib: lib})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer func() {
		if err := m.Shutdown(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()
	snap, err := gpu.Inventory(m)
	if err != nil {
		t.Fatalf("inventory: %v", err)
	}
	return snap
}

func TestInventoryFakeMachines(t *testing.T) {
	tests := []struct {
		name     string
		lib      *server.Server
		wantName string
		wantCC   string
		wantMem  uint64
	}{
		{"dgx h100", dgxh100.New(), "NVIDIA H100 80GB HBM3", "9.0", 80 * gib},
		{"dgx a100", dgxa100.New(), "Mock NVIDIA A100-SXM4-40GB", "8.0", 40 * gib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := inventory(t, idle(tt.lib))
			if snap.System.DriverVersion != "550.54.15" || snap.System.CUDADriverVersion != "12.4" {
				t.Errorf("system = %+v", snap.System)
			}
			if len(snap.Devices) != 8 {
				t.Fatalf("devices = %d, want 8", len(snap.Devices))
			}
			seen := map[string]bool{}
			for i, d := range snap.Devices {
				if d.Index != i || d.Name != tt.wantName || d.ComputeCapability != tt.wantCC {
					t.Errorf("device %d = %+v", i, d)
				}
				if d.MemoryTotalBytes != tt.wantMem || d.MemoryFreeBytes != tt.wantMem || d.MemoryUsedBytes != 0 {
					t.Errorf("device %d memory = %d/%d/%d", i, d.MemoryTotalBytes, d.MemoryUsedBytes, d.MemoryFreeBytes)
				}
				if !strings.HasPrefix(d.UUID, "GPU-") || seen[d.UUID] {
					t.Errorf("device %d uuid %q not unique", i, d.UUID)
				}
				seen[d.UUID] = true
				if d.MIGEnabled || len(d.Processes) != 0 {
					t.Errorf("device %d: unexpected MIG or processes: %+v", i, d)
				}
			}
		})
	}
}

func TestBusyGPU(t *testing.T) {
	s := idle(dgxh100.New())
	busy := s.Devices[3].(*server.Device)
	// v2 memory is preferred when the driver has it: it does not count the
	// driver's own reservation as used.
	busy.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) {
		return nvml.Memory_v2{Total: 80 * gib, Reserved: gib / 2, Used: 70 * gib, Free: 80*gib - gib/2 - 70*gib}, nvml.SUCCESS
	}
	busy.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{Gpu: 97, Memory: 40}, nvml.SUCCESS }
	busy.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return []nvml.ProcessInfo{{Pid: 4242, UsedGpuMemory: 50 * gib}, {Pid: 4343, UsedGpuMemory: 20 * gib}}, nvml.SUCCESS
	}
	snap := inventory(t, s)
	d := snap.Devices[3]
	if d.MemoryUsedBytes != 70*gib || d.MemoryFreeBytes != 80*gib-gib/2-70*gib || d.UtilizationPct != 97 {
		t.Errorf("busy device = %+v", d)
	}
	want := []gpu.Process{{PID: 4242, UsedMemoryBytes: 50 * gib}, {PID: 4343, UsedMemoryBytes: 20 * gib}}
	if len(d.Processes) != 2 || d.Processes[0] != want[0] || d.Processes[1] != want[1] {
		t.Errorf("processes = %+v, want %+v", d.Processes, want)
	}
	if other := snap.Devices[2]; other.MemoryFreeBytes != 80*gib || len(other.Processes) != 0 {
		t.Errorf("idle neighbour = %+v", other)
	}
}

func TestMIG(t *testing.T) {
	s := idle(dgxh100.New())
	parent := s.Devices[1].(*server.Device)
	if _, ret := parent.SetMigMode(nvml.DEVICE_MIG_ENABLE); ret != nvml.SUCCESS {
		t.Fatal(ret)
	}
	mig := func(uuid string, total, used uint64) nvml.Device {
		return &mock.Device{
			GetUUIDFunc:          func() (string, nvml.Return) { return uuid, nvml.SUCCESS },
			GetMemoryInfo_v2Func: func() (nvml.Memory_v2, nvml.Return) { return nvml.Memory_v2{}, nvml.ERROR_NOT_SUPPORTED },
			GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
				return nvml.Memory{Total: total, Used: used, Free: total - used}, nvml.SUCCESS
			},
		}
	}
	slots := []nvml.Device{mig("MIG-a", 40*gib, gib), nil, mig("MIG-b", 20*gib, 0)}
	parent.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) { return len(slots), nvml.SUCCESS }
	parent.GetMigDeviceHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
		if slots[i] == nil {
			return nil, nvml.ERROR_NOT_FOUND
		}
		return slots[i], nvml.SUCCESS
	}
	d := inventory(t, s).Devices[1]
	if !d.MIGEnabled {
		t.Fatal("MIG mode not reported")
	}
	want := []gpu.MIGDevice{
		{UUID: "MIG-a", MemoryTotalBytes: 40 * gib, MemoryUsedBytes: gib, MemoryFreeBytes: 39 * gib},
		{UUID: "MIG-b", MemoryTotalBytes: 20 * gib, MemoryFreeBytes: 20 * gib},
	}
	if len(d.MIGDevices) != len(want) || d.MIGDevices[0] != want[0] || d.MIGDevices[1] != want[1] {
		t.Errorf("MIG devices = %+v, want %+v", d.MIGDevices, want)
	}
}

func TestNoDriver(t *testing.T) {
	tests := []struct {
		name string
		lib  nvml.Interface
	}{
		// The real library pointed at a path that does not exist: the same dlopen
		// failure as a machine without the driver.
		{"real library missing", nvml.New(nvml.WithLibraryPath("/nonexistent/libnvidia-ml.so.1"))},
		{"mock library not found", &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }}},
		{"mock driver not loaded", &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED }}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (&gpu.NVML{Lib: tt.lib}).Init()
			if !errors.Is(err, gpu.ErrNoDriver) {
				t.Fatalf("init error = %v, want ErrNoDriver", err)
			}
			m, err := gpu.Open(&gpu.NVML{Lib: tt.lib})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			if !gpu.IsNone(m) {
				t.Fatalf("open returned %T, want gpu.None", m)
			}
			if n := m.(gpu.None); !errors.Is(n.Reason, gpu.ErrNoDriver) {
				t.Errorf("reason = %v", n.Reason)
			}
			devs, err := m.Devices()
			if err != nil || len(devs) != 0 {
				t.Errorf("devices = %v, %v", devs, err)
			}
		})
	}
}

func TestOpenOtherInitFailure(t *testing.T) {
	lib := &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_NO_PERMISSION }}
	if _, err := gpu.Open(&gpu.NVML{Lib: lib}); err == nil || errors.Is(err, gpu.ErrNoDriver) {
		t.Fatalf("open error = %v, want a real error", err)
	}
}

func TestSamplerWritesGPUEvents(t *testing.T) {
	s := idle(dgxh100.New())
	dev := s.Devices[2].(*server.Device)
	dev.MemoryInfo.Used, dev.MemoryInfo.Free = 12*gib, 68*gib
	dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{Gpu: 88}, nvml.SUCCESS }
	m := &gpu.NVML{Lib: s}
	if err := m.Init(); err != nil {
		t.Fatal(err)
	}
	devs, err := m.Devices()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	emit := gpu.EventWriter(&buf)
	n := 0
	ctx, cancel := context.WithCancel(context.Background())
	smp := &gpu.Sampler{Device: devs[2], Interval: time.Millisecond, Emit: func(at time.Time, s gpu.Sample) {
		emit(at, s)
		if n++; n == 3 {
			cancel()
		}
	}}
	done := make(chan struct{})
	go func() { smp.Run(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("sampler did not stop")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines:\n%s", len(lines), buf.String())
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"type": "gpu", "index": 2.0, "memory_used_bytes": float64(12 * gib),
		"utilization_percent": 88.0, "power_watts": 71.5, "temperature_c": 34.0}
	for k, v := range want {
		if ev[k] != v {
			t.Errorf("event[%s] = %v, want %v", k, ev[k], v)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, ev["time"].(string)); err != nil {
		t.Errorf("time: %v", err)
	}
}

func TestSampleToleratesMissingSensors(t *testing.T) {
	s := idle(dgxh100.New())
	dev := s.Devices[0].(*server.Device)
	dev.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 0, nvml.ERROR_UNKNOWN }
	m := &gpu.NVML{Lib: s}
	devs, _ := m.Devices()
	got, err := devs[0].Sample()
	if err == nil || !strings.Contains(err.Error(), "temperature") {
		t.Errorf("error = %v, want the temperature failure", err)
	}
	if got.PowerWatts != 0 || got.Index != 0 {
		t.Errorf("sample = %+v", got)
	}
}

// On a MIG-enabled GPU without root the aggregate process query answers
// NO_PERMISSION; some boards answer NOT_SUPPORTED. Neither may abort the inventory:
// the processes are unknown, the rest is read. A process whose memory the driver
// does not report (NVML_VALUE_NOT_AVAILABLE) has unknown memory, not 16 EiB.
func TestProcessesUnknown(t *testing.T) {
	tests := []struct {
		name        string
		ret         nvml.Return
		procs       []nvml.ProcessInfo
		wantUnknown string
		wantProcs   []gpu.Process
	}{
		{"no permission", nvml.ERROR_NO_PERMISSION, nil, "no permission to list them (MIG-enabled GPUs list processes only for root)", []gpu.Process{}},
		{"not supported", nvml.ERROR_NOT_SUPPORTED, nil, "not supported by this GPU or driver", []gpu.Process{}},
		{"memory not available", nvml.SUCCESS,
			[]nvml.ProcessInfo{{Pid: 7, UsedGpuMemory: ^uint64(0)}, {Pid: 8, UsedGpuMemory: 3 * gib}}, "",
			[]gpu.Process{{PID: 7, UsedMemoryUnknown: true}, {PID: 8, UsedMemoryBytes: 3 * gib}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := idle(dgxh100.New())
			dev := s.Devices[0].(*server.Device)
			dev.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return tt.procs, tt.ret }
			d := inventory(t, s).Devices[0]
			if d.ProcessesUnknown != tt.wantUnknown || d.MemoryTotalBytes != 80*gib {
				t.Errorf("device = %+v, want processes unknown %q", d, tt.wantUnknown)
			}
			if len(d.Processes) != len(tt.wantProcs) {
				t.Fatalf("processes = %+v, want %+v", d.Processes, tt.wantProcs)
			}
			for i := range d.Processes {
				if d.Processes[i] != tt.wantProcs[i] {
					t.Errorf("process %d = %+v, want %+v", i, d.Processes[i], tt.wantProcs[i])
				}
			}
		})
	}
	// Any other failure is still an error.
	s := idle(dgxh100.New())
	s.Devices[0].(*server.Device).GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.ERROR_UNKNOWN }
	m := &gpu.NVML{Lib: s}
	devs, _ := m.Devices()
	if _, err := devs[0].Info(); err == nil || !strings.Contains(err.Error(), "compute processes") {
		t.Errorf("unknown failure: %v", err)
	}
}
