package cmdutil

import (
	"encoding/json"
	"errors"
	"os"

	"github.com/loractl/loractl/config"
)

// LoadConfig loads and validates a run config, including the chosen driver's own
// section; every problem becomes an invalid-input error (exit 2). driverName, when
// set, overrides driver.name (render --driver).
func LoadConfig(f *Factory, path string, sets []string, driverName string) (*config.Config, error) {
	if driverName != "" {
		sets = append(append([]string(nil), sets...), "driver.name="+driverName)
	}
	cfg, err := config.Load(path, sets)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, Invalidf("config %s does not exist", path)
		}
		return nil, Invalid(err)
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
