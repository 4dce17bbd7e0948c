package cmdutil

import (
	"encoding/json"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/internal/iostreams"
	"github.com/loractl/loractl/run"
)

// Factory carries the dependencies commands share. main builds one; tests build their
// own with buffers and fakes. Fields are functions where building the value costs
// something (opening NVML, scanning for plugins) so commands that do not need it do
// not pay for it.
type Factory struct {
	IO  *iostreams.IOStreams
	Log *zerolog.Logger
	// LogOut is where Log writes (stderr unless a command swaps it); nil in tests
	// that build a Factory by hand.
	LogOut *iostreams.SwapWriter
	// RunsDir returns the base directory of the run store (--runs-dir,
	// LORACTL_RUNS_DIR, default ./runs).
	RunsDir func() string
	// Driver returns the driver registered under name: a built-in, or an external
	// loractl-driver-<name> plugin.
	Driver func(name string) (driver.Driver, error)
	// PinDriver pins the SHA-256 an external driver's executable must have.
	PinDriver func(name, sha256 string) error
	// PluginsDir is where external drivers are looked up first (--plugins-dir).
	PluginsDir string
	// ValidateDriverOptions checks a driver's config section (nil raw: none given).
	ValidateDriverOptions func(name string, raw json.RawMessage) error
}

// Store opens the run store.
func (f *Factory) Store() (*run.Store, error) { return run.NewStore(f.RunsDir()) }
