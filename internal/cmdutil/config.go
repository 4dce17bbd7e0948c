package cmdutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/loractl/loractl/config"
)

// LoadConfig loads and validates a run config, including the chosen driver's own
// section; every problem becomes an invalid-input error (exit 2). driverName, when
// set, overrides driver.name (render --driver).
func LoadConfig(f *Factory, path string, sets []string, driverName string) (*config.Config, error) {
	src, err := os.ReadFile(path)
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
	if sec := cfg.Spec.Driver.Sections["plugin"]; sec != nil && f.PinDriver != nil {
		sum, _ := sec["sha256"].(string)
		if sum == "" {
			return nil, Invalidf("%s: driver.plugin.sha256: want the hex SHA-256 of loractl-driver-%s", cfg.Path, cfg.DriverName)
		}
		if err := f.PinDriver(cfg.DriverName, sum); err != nil {
			return nil, Invalid(fmt.Errorf("%s: driver.plugin.sha256: %w", cfg.Path, err))
		}
	}
	if f.ValidateDriverOptions != nil {
		err := cfg.ValidateDriver(func(raw json.RawMessage) error {
			return f.ValidateDriverOptions(cfg.DriverName, raw)
		})
		if err != nil {
			return nil, Invalid(err)
		}
	}
	return cfg, nil
}
