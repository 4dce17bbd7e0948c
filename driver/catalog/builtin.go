package catalog

import (
	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/container"
	"github.com/loractl/loractl/driver/local"
	"github.com/loractl/loractl/driver/slurm"
)

// Default returns a catalog holding every built-in driver, falling back to external
// drivers for any other name.
func Default(opts Options) *Catalog {
	c := New(opts)
	for name, f := range map[string]Factory{
		local.Name:               func() (driver.Driver, error) { return local.New(), nil },
		string(container.Docker): func() (driver.Driver, error) { return container.New(container.Docker) },
		string(container.Podman): func() (driver.Driver, error) { return container.New(container.Podman) },
		slurm.Name:               func() (driver.Driver, error) { return slurm.New(), nil },
	} {
		// Names here are constants; a clash is a programming error caught by the tests.
		_ = c.Register(name, f)
	}
	return c
}
