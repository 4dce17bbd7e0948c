package gpu

// None is the Manager of a machine without a usable NVIDIA driver: no devices, no
// versions. Reason says why (nil when it was chosen deliberately, e.g. for CPU runs).
type None struct {
	Reason error
}

// Init always succeeds: there is nothing to load.
func (None) Init() error { return nil }

// Shutdown always succeeds.
func (None) Shutdown() error { return nil }

// System reports empty versions.
func (None) System() (System, error) { return System{}, nil }

// Devices reports no devices.
func (None) Devices() ([]Device, error) { return nil, nil }

// IsNone reports whether m is the no-GPU Manager.
func IsNone(m Manager) bool {
	_, ok := m.(None)
	return ok
}
