package app

import (
	"encoding/json"
	"sync"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/catalog"
	"github.com/loractl/loractl/driver/container"
	"github.com/loractl/loractl/driver/local"
	"github.com/loractl/loractl/driver/slurm"
	"github.com/loractl/loractl/internal/cmdutil"
)

// driverCatalog builds the catalog on first use: commands that never launch (render,
// data check) do not scan for plugins.
type driverCatalog struct {
	f    *cmdutil.Factory
	once sync.Once
	cat  *catalog.Catalog
}

func (d *driverCatalog) get() *catalog.Catalog {
	d.once.Do(func() {
		d.cat = catalog.Default(catalog.Options{PluginsDir: d.f.PluginsDir, Logger: *d.f.Log})
	})
	return d.cat
}

// close stops external driver processes, if any were launched.
func (d *driverCatalog) close() {
	if d.cat != nil {
		d.cat.Close()
	}
}

// validators check each built-in driver's config section; external drivers check
// their own options when a task starts.
var validators = map[string]func(json.RawMessage) error{
	local.Name: func(raw json.RawMessage) error { _, err := local.DecodeOptions(raw); return err },
	"docker": func(raw json.RawMessage) error {
		_, err := container.DecodeOptionsFor(container.Docker, raw)
		return err
	},
	"podman": func(raw json.RawMessage) error {
		_, err := container.DecodeOptionsFor(container.Podman, raw)
		return err
	},
	"slurm": func(raw json.RawMessage) error { _, err := slurm.DecodeOptions(raw); return err },
}

// wireDrivers connects the driver catalog to the factory.
func wireDrivers(f *cmdutil.Factory) *driverCatalog {
	dc := &driverCatalog{f: f}
	f.Driver = func(name string) (driver.Driver, error) { return dc.get().Lookup(name) }
	f.PinDriver = func(name, sha256 string) error { return dc.get().Pin(name, sha256) }
	f.ValidateDriverOptions = func(name string, raw json.RawMessage) error {
		if v, ok := validators[name]; ok {
			return v(raw)
		}
		return nil
	}
	return dc
}
