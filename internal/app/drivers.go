package app

import (
	"encoding/json"
	"sync"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/catalog"
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

// wireDrivers connects the driver catalog to the factory.
func wireDrivers(f *cmdutil.Factory) *driverCatalog {
	dc := &driverCatalog{f: f}
	f.Driver = func(name string) (driver.Driver, error) { return dc.get().Lookup(name) }
	f.PinDriver = func(name, sha256 string) error { return dc.get().Pin(name, sha256) }
	f.ValidateDriverOptions = func(name string, raw json.RawMessage) error { return dc.get().ValidateOptions(name, raw) }
	return dc
}
