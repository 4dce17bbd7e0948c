package app

import (
	"encoding/json"
	"fmt"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/local"
	"github.com/loractl/loractl/driver/slurm"
	"github.com/loractl/loractl/internal/cmdutil"
)

// wireDrivers connects the driver catalog to the factory.
func wireDrivers(f *cmdutil.Factory) {
	f.Driver = func(name string) (driver.Driver, error) {
		switch name {
		case local.Name:
			return local.New(), nil
		case slurm.Name:
			return slurm.New(), nil
		}
		return nil, fmt.Errorf("unknown driver %q", name)
	}
	f.ValidateDriverOptions = func(name string, raw json.RawMessage) error {
		switch name {
		case local.Name:
			_, err := local.DecodeOptions(raw)
			return err
		case slurm.Name:
			_, err := slurm.DecodeOptions(raw)
			return err
		}
		return fmt.Errorf("unknown driver %q", name)
	}
}
