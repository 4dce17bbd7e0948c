// Package gputest provides a fake gpu.Manager whose devices' memory can change while a
// test runs (another job finishing, a run allocating), for tests of code above package
// gpu: the pre-flight check, the sampler's consumers, the commands.
package gputest

import (
	"errors"
	"sync"

	"github.com/loractl/loractl/gpu"
)

// Manager is an in-memory gpu.Manager. The zero value has no devices; InitErr makes
// Init fail (wrap gpu.ErrNoDriver to act as a machine without a driver).
type Manager struct {
	mu      sync.Mutex
	Sys     gpu.System
	devices []*Device
	InitErr error
	inits   int
}

// Device is one fake GPU. Its Info is returned as is; OnRead, when set, runs before
// each read with the info to update, which lets a test make memory free up over time.
type Device struct {
	mgr    *Manager
	info   gpu.Info
	OnRead func(reads int, info *gpu.Info)
	reads  int
}

// New returns a fake manager holding the given devices (their Index fields are set
// from their position).
func New(infos ...gpu.Info) *Manager {
	m := &Manager{Sys: gpu.System{DriverVersion: "550.54.15", CUDADriverVersion: "12.4"}}
	for i, info := range infos {
		info.Index = i
		if info.Processes == nil {
			info.Processes = []gpu.Process{}
		}
		m.devices = append(m.devices, &Device{mgr: m, info: info})
	}
	return m
}

// Device returns the fake device at index i.
func (m *Manager) Device(i int) *Device { return m.devices[i] }

// Init succeeds unless InitErr is set.
func (m *Manager) Init() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.InitErr != nil {
		return m.InitErr
	}
	m.inits++
	return nil
}

// Shutdown pairs with Init.
func (m *Manager) Shutdown() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inits == 0 {
		return errors.New("shutdown without init")
	}
	m.inits--
	return nil
}

// Open reports whether Init has been called more often than Shutdown.
func (m *Manager) Open() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inits > 0
}

// System returns Sys.
func (m *Manager) System() (gpu.System, error) { return m.Sys, nil }

// Devices returns the fake devices.
func (m *Manager) Devices() ([]gpu.Device, error) {
	out := make([]gpu.Device, len(m.devices))
	for i, d := range m.devices {
		out[i] = d
	}
	return out, nil
}

// Index is the device's position.
func (d *Device) Index() int { return d.info.Index }

// Info returns the device's current info, after OnRead has had its say.
func (d *Device) Info() (gpu.Info, error) {
	d.mgr.mu.Lock()
	defer d.mgr.mu.Unlock()
	d.reads++
	if d.OnRead != nil {
		d.OnRead(d.reads, &d.info)
	}
	return d.info, nil
}

// Sample reports the current memory use with fixed utilisation, power and
// temperature.
func (d *Device) Sample() (gpu.Sample, error) {
	info, err := d.Info()
	return gpu.Sample{Index: info.Index, MemoryUsedBytes: info.MemoryUsedBytes, UtilizationPct: info.UtilizationPct,
		PowerWatts: 300, TemperatureC: 60}, err
}

// SetFree sets a device's free memory (used = total - free).
func (d *Device) SetFree(free uint64) {
	d.mgr.mu.Lock()
	defer d.mgr.mu.Unlock()
	d.info.MemoryFreeBytes = free
	d.info.MemoryUsedBytes = d.info.MemoryTotalBytes - free
}

// GPU builds an Info for a GPU of total bytes with free bytes free.
func GPU(name string, total, free uint64) gpu.Info {
	return gpu.Info{Name: name, UUID: "GPU-fake-" + name, MemoryTotalBytes: total, MemoryFreeBytes: free,
		MemoryUsedBytes: total - free, ComputeCapability: "9.0", Processes: []gpu.Process{}}
}
