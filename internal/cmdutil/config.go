package cmdutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/run"
)

// LoadConfig loads and validates a run config, including the chosen driver's own
// section; every problem becomes an invalid-input error (exit 2). driverName, when
// set, overrides driver.name (render --driver).
func LoadConfig(f *Factory, path string, sets []string, driverName string) (*config.Config, error) {
	src, err := config.ReadFile(path) // a regular file of at most 1 MiB
	if errors.Is(err, os.ErrNotExist) {
		return nil, Invalidf("config %s does not exist", path)
	}
	if err != nil {
		return nil, Invalid(err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, Invalid(err)
	}
	return LoadConfigSource(f, abs, src, sets, driverName)
}

// LoadConfigSource is LoadConfig for a config already read (a run dir's copy of a
// config whose file is gone): the same validation and plugin checksum pin apply.
func LoadConfigSource(f *Factory, path string, src []byte, sets []string, driverName string) (*config.Config, error) {
	if driverName != "" {
		sets = append(append([]string(nil), sets...), "driver.name="+driverName)
	}
	cfg, err := config.Parse(path, src, sets)
	if err != nil {
		return nil, Invalid(err)
	}
	if err := CheckDriver(f, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// CheckDriver applies what a config says about its driver before anything launches it:
// the checksum an external driver's executable must have (driver.plugin.sha256),
// verified before the binary runs, and the driver's own option validation. Every path
// that turns a config into a launch goes through it (train, render, sweep, reproduce).
func CheckDriver(f *Factory, cfg *config.Config) error {
	if sec := cfg.Spec.Driver.Sections["plugin"]; sec != nil && f.PinDriver != nil {
		sum, _ := sec["sha256"].(string)
		if sum == "" {
			return Invalidf("%s: driver.plugin.sha256: want the hex SHA-256 of loractl-driver-%s", cfg.Path, cfg.DriverName)
		}
		if err := f.PinDriver(cfg.DriverName, sum); err != nil {
			return Invalid(fmt.Errorf("%s: driver.plugin.sha256: %w", cfg.Path, err))
		}
	}
	if f.ValidateDriverOptions != nil {
		err := cfg.ValidateDriver(func(raw json.RawMessage) error {
			return f.ValidateDriverOptions(cfg.DriverName, raw)
		})
		if err != nil {
			return Invalid(err)
		}
	}
	return nil
}

// PluginPin is the checksum a config pins for its external driver, "" when none.
func PluginPin(cfg *config.Config) string {
	sum, _ := cfg.Spec.Driver.Sections["plugin"]["sha256"].(string)
	return sum
}

// DriverFor returns the driver that launched a stored run, pinning an external
// driver's executable to the checksum recorded at launch first: a run's plugin is
// verified on every later use (runs, logs -f, stop), not only when it was started.
func DriverFor(f *Factory, m *run.Manifest) (driver.Driver, error) {
	if m.Handle == nil {
		return nil, fmt.Errorf("%s has no launched trainer", m.RunID)
	}
	if sum := m.DriverInfo[run.PluginSHA256]; sum != "" && f.PinDriver != nil {
		if err := f.PinDriver(m.Handle.Driver, sum); err != nil {
			return nil, err
		}
	}
	return f.Driver(m.Handle.Driver)
}
