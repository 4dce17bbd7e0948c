package gpu

import (
	"errors"
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// NVML is the Manager backed by the NVIDIA Management Library. Lib is any
// nvml.Interface: the real library from NewNVML, or a go-nvml mock machine in tests.
type NVML struct {
	Lib nvml.Interface
}

// NewNVML returns the Manager for the real libnvidia-ml.so.1. Loading happens in Init,
// so this never fails, even on a machine without a driver.
func NewNVML() *NVML { return &NVML{Lib: nvml.New()} }

// nvmlError turns an NVML return code into an error naming the call that failed.
func nvmlError(call string, ret nvml.Return) error {
	return fmt.Errorf("nvml %s: %s", call, nvml.ErrorString(ret))
}

// Init loads NVML. A missing library or an unloaded kernel driver wraps ErrNoDriver.
func (m *NVML) Init() error {
	ret := m.Lib.Init()
	switch ret {
	case nvml.SUCCESS:
		return nil
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return fmt.Errorf("%w: libnvidia-ml.so.1 was not found", ErrNoDriver)
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return fmt.Errorf("%w: the NVIDIA kernel driver is not loaded", ErrNoDriver)
	default:
		return nvmlError("init", ret)
	}
}

// Shutdown releases NVML.
func (m *NVML) Shutdown() error {
	if ret := m.Lib.Shutdown(); ret != nvml.SUCCESS {
		return nvmlError("shutdown", ret)
	}
	return nil
}

// System reads the driver and CUDA driver versions.
func (m *NVML) System() (System, error) {
	var s System
	v, ret := m.Lib.SystemGetDriverVersion()
	if ret != nvml.SUCCESS {
		return s, nvmlError("driver version", ret)
	}
	s.DriverVersion = v
	cuda, ret := m.Lib.SystemGetCudaDriverVersion()
	if ret != nvml.SUCCESS {
		return s, nvmlError("CUDA driver version", ret)
	}
	// NVML encodes 12.4 as 12040.
	s.CUDADriverVersion = fmt.Sprintf("%d.%d", cuda/1000, (cuda%1000)/10)
	return s, nil
}

// Devices lists every GPU NVML reports.
func (m *NVML) Devices() ([]Device, error) {
	n, ret := m.Lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, nvmlError("device count", ret)
	}
	devs := make([]Device, 0, n)
	for i := 0; i < n; i++ {
		h, ret := m.Lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, nvmlError(fmt.Sprintf("device %d", i), ret)
		}
		devs = append(devs, &nvmlDevice{index: i, h: h})
	}
	return devs, nil
}

type nvmlDevice struct {
	index int
	h     nvml.Device
}

// Index is the NVML index.
func (d *nvmlDevice) Index() int { return d.index }

// memory prefers the v2 query: on recent drivers v1's "used" includes memory the
// driver reserves for itself, which makes a GPU look busier than it is. Drivers (and
// mocks) without v2 fall back to v1.
func memory(h nvml.Device) (total, used, free uint64, err error) {
	if m2, ret := h.GetMemoryInfo_v2(); ret == nvml.SUCCESS {
		return m2.Total, m2.Used, m2.Free, nil
	}
	m1, ret := h.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return 0, 0, 0, nvmlError("memory info", ret)
	}
	return m1.Total, m1.Used, m1.Free, nil
}

// optional treats "not supported" (common on MIG devices and some boards) as absent.
func optional(ret nvml.Return) bool {
	return ret == nvml.ERROR_NOT_SUPPORTED || ret == nvml.ERROR_NOT_FOUND
}

// Info reads identity, memory, utilisation, MIG state and processes.
func (d *nvmlDevice) Info() (Info, error) {
	info := Info{Index: d.index, Processes: []Process{}}
	var ret nvml.Return
	if info.Name, ret = d.h.GetName(); ret != nvml.SUCCESS {
		return info, nvmlError("name", ret)
	}
	if info.UUID, ret = d.h.GetUUID(); ret != nvml.SUCCESS {
		return info, nvmlError("uuid", ret)
	}
	var err error
	if info.MemoryTotalBytes, info.MemoryUsedBytes, info.MemoryFreeBytes, err = memory(d.h); err != nil {
		return info, err
	}
	if u, ret := d.h.GetUtilizationRates(); ret == nvml.SUCCESS {
		info.UtilizationPct = int(u.Gpu)
	} else if !optional(ret) {
		return info, nvmlError("utilization", ret)
	}
	major, minor, ret := d.h.GetCudaComputeCapability()
	if ret != nvml.SUCCESS {
		return info, nvmlError("compute capability", ret)
	}
	info.ComputeCapability = fmt.Sprintf("%d.%d", major, minor)
	current, _, ret := d.h.GetMigMode()
	switch {
	case ret == nvml.SUCCESS:
		info.MIGEnabled = current == nvml.DEVICE_MIG_ENABLE
	case !optional(ret):
		return info, nvmlError("MIG mode", ret)
	}
	if info.MIGEnabled {
		if info.MIGDevices, err = migDevices(d.h); err != nil {
			return info, err
		}
	}
	procs, ret := d.h.GetComputeRunningProcesses()
	switch {
	case ret == nvml.SUCCESS:
	case ret == nvml.ERROR_NO_PERMISSION || optional(ret):
		// Without root, a MIG-enabled GPU refuses the aggregate query: the rest of
		// the inventory is still right, only the processes are unknown.
		info.ProcessesUnknown = "not supported by this GPU or driver"
		if ret == nvml.ERROR_NO_PERMISSION {
			info.ProcessesUnknown = "no permission to list them (MIG-enabled GPUs list processes only for root)"
		}
		return info, nil
	default:
		return info, nvmlError("compute processes", ret)
	}
	for _, p := range procs {
		proc := Process{PID: p.Pid, UsedMemoryBytes: p.UsedGpuMemory}
		if p.UsedGpuMemory == valueNotAvailable {
			proc.UsedMemoryBytes, proc.UsedMemoryUnknown = 0, true
		}
		info.Processes = append(info.Processes, proc)
	}
	return info, nil
}

// valueNotAvailable is NVML_VALUE_NOT_AVAILABLE as an unsigned long long: the
// driver's "unknown" for a process's used memory (it would read as 16 EiB).
const valueNotAvailable = ^uint64(0)

// migDevices lists the MIG instances that exist (slots without one report NOT_FOUND).
func migDevices(h nvml.Device) ([]MIGDevice, error) {
	n, ret := h.GetMaxMigDeviceCount()
	if ret != nvml.SUCCESS {
		return nil, nvmlError("MIG device count", ret)
	}
	var out []MIGDevice
	for i := 0; i < n; i++ {
		mh, ret := h.GetMigDeviceHandleByIndex(i)
		if optional(ret) {
			continue
		}
		if ret != nvml.SUCCESS {
			return nil, nvmlError(fmt.Sprintf("MIG device %d", i), ret)
		}
		uuid, ret := mh.GetUUID()
		if ret != nvml.SUCCESS {
			return nil, nvmlError("MIG device uuid", ret)
		}
		total, used, free, err := memory(mh)
		if err != nil {
			return nil, err
		}
		out = append(out, MIGDevice{UUID: uuid, MemoryTotalBytes: total, MemoryUsedBytes: used, MemoryFreeBytes: free})
	}
	return out, nil
}

// Sample reads memory used, utilisation, power and temperature.
func (d *nvmlDevice) Sample() (Sample, error) {
	s := Sample{Index: d.index}
	var err error
	if _, s.MemoryUsedBytes, _, err = memory(d.h); err != nil {
		return s, err
	}
	// Power and temperature are missing on some boards; a sample without them is
	// still worth recording.
	var errs []error
	if u, ret := d.h.GetUtilizationRates(); ret == nvml.SUCCESS {
		s.UtilizationPct = int(u.Gpu)
	} else if !optional(ret) {
		errs = append(errs, nvmlError("utilization", ret))
	}
	if mw, ret := d.h.GetPowerUsage(); ret == nvml.SUCCESS {
		s.PowerWatts = float64(mw) / 1000
	} else if !optional(ret) {
		errs = append(errs, nvmlError("power", ret))
	}
	if t, ret := d.h.GetTemperature(nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
		s.TemperatureC = int(t)
	} else if !optional(ret) {
		errs = append(errs, nvmlError("temperature", ret))
	}
	return s, errors.Join(errs...)
}
