// Package gpu is loractl's narrow view of the NVIDIA GPUs on this machine: an inventory
// for `loractl gpu`, the free memory the pre-flight check compares an estimate with, and
// the samples the controller records while a run is live.
//
// NVML sits behind the Manager and Device interfaces so that nothing above this package
// touches go-nvml, and tests drive the real implementation with go-nvml's mock machines.
// A Manager is built in main (or a command) and passed down; nothing here is global.
package gpu

import (
	"errors"
	"fmt"
)

// ErrNoDriver means NVML could not be loaded or initialised: there is no NVIDIA driver
// on this machine (or it is not usable). loractl then runs on the CPU.
var ErrNoDriver = errors.New("no NVIDIA driver")

// Manager is the entry point to the GPUs of one machine. Init must succeed before the
// other methods are used, and every successful Init is paired with a Shutdown.
type Manager interface {
	// Init loads and initialises the driver library. It returns an error wrapping
	// ErrNoDriver when there is no usable NVIDIA driver.
	Init() error
	// Shutdown releases the driver library.
	Shutdown() error
	// System reports the driver's versions.
	System() (System, error)
	// Devices lists the GPUs in NVML index order.
	Devices() ([]Device, error)
}

// Device is one physical GPU.
type Device interface {
	// Index is the NVML index, the number CUDA_VISIBLE_DEVICES uses by default.
	Index() int
	// Info reads the device's identity, memory, utilisation, MIG state and processes.
	Info() (Info, error)
	// Sample reads the few fast-changing values recorded during a run.
	Sample() (Sample, error)
}

// System holds machine-wide driver facts.
type System struct {
	// DriverVersion is the kernel driver's version, e.g. "550.54.15".
	DriverVersion string `json:"driver_version"`
	// CUDADriverVersion is the newest CUDA the driver supports, e.g. "12.4".
	CUDADriverVersion string `json:"cuda_driver_version"`
}

// Info is a point-in-time description of one GPU.
type Info struct {
	Index             int    `json:"index"`
	Name              string `json:"name"`
	UUID              string `json:"uuid"`
	MemoryTotalBytes  uint64 `json:"memory_total_bytes"`
	MemoryUsedBytes   uint64 `json:"memory_used_bytes"`
	MemoryFreeBytes   uint64 `json:"memory_free_bytes"`
	UtilizationPct    int    `json:"utilization_percent"`
	ComputeCapability string `json:"compute_capability"`
	// MIGEnabled is the current MIG mode. A MIG-enabled GPU is used through one of
	// its MIG devices, never as a whole.
	MIGEnabled bool        `json:"mig_enabled"`
	MIGDevices []MIGDevice `json:"mig_devices,omitempty"`
	// Processes are the compute processes using the GPU (other users' jobs on a
	// shared workstation show up here).
	Processes []Process `json:"processes"`
	// ProcessesUnknown, when set, says why the processes could not be listed (no
	// permission, as on a MIG-enabled GPU without root, or not supported);
	// Processes is then empty, which does not mean the GPU is idle.
	ProcessesUnknown string `json:"processes_unknown,omitempty"`
}

// MIGDevice is one MIG instance of a MIG-enabled GPU. CUDA selects it by UUID.
type MIGDevice struct {
	UUID             string `json:"uuid"`
	MemoryTotalBytes uint64 `json:"memory_total_bytes"`
	MemoryUsedBytes  uint64 `json:"memory_used_bytes"`
	MemoryFreeBytes  uint64 `json:"memory_free_bytes"`
}

// Process is one compute process holding GPU memory.
type Process struct {
	PID             uint32 `json:"pid"`
	UsedMemoryBytes uint64 `json:"used_memory_bytes"`
	// UsedMemoryUnknown is set when the driver does not report the process's memory
	// (NVML_VALUE_NOT_AVAILABLE, common under MIG and in containers);
	// UsedMemoryBytes is then 0.
	UsedMemoryUnknown bool `json:"used_memory_unknown,omitempty"`
}

// Sample is what the controller records every few seconds while a run is live. Its
// JSON form is the body of the `gpu` event in events.jsonl.
type Sample struct {
	Index           int     `json:"index"`
	MemoryUsedBytes uint64  `json:"memory_used_bytes"`
	UtilizationPct  int     `json:"utilization_percent"`
	PowerWatts      float64 `json:"power_watts"`
	TemperatureC    int     `json:"temperature_c"`
}

// Snapshot is the whole inventory `loractl gpu` prints.
type Snapshot struct {
	System  System `json:"system"`
	Devices []Info `json:"devices"`
}

// Inventory reads System and every device's Info in one pass.
func Inventory(m Manager) (*Snapshot, error) {
	sys, err := m.System()
	if err != nil {
		return nil, err
	}
	devs, err := m.Devices()
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{System: sys, Devices: make([]Info, 0, len(devs))}
	for _, d := range devs {
		info, err := d.Info()
		if err != nil {
			return nil, fmt.Errorf("gpu %d: %w", d.Index(), err)
		}
		snap.Devices = append(snap.Devices, info)
	}
	return snap, nil
}

// Open initialises m. When there is no NVIDIA driver it returns a None manager that
// carries the reason, so callers can say so and carry on on the CPU; any other failure
// is an error. The caller must Shutdown the result.
func Open(m Manager) (Manager, error) {
	err := m.Init()
	if err == nil {
		return m, nil
	}
	if errors.Is(err, ErrNoDriver) {
		return None{Reason: err}, nil
	}
	return nil, err
}

// GiB is 2^30 bytes.
const GiB = 1 << 30

// FormatBytes renders n as GiB (or MiB below one GiB) with one decimal, the unit
// people read GPU memory in.
func FormatBytes(n uint64) string {
	if n >= GiB {
		return fmt.Sprintf("%.1f GiB", float64(n)/GiB)
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}
