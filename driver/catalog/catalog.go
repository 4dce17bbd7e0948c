// Package catalog finds a driver by its config name: a built-in driver registered in
// this process, or else an external executable loractl-driver-<name> from the
// plugins dir or PATH, launched over go-plugin. Either way the caller gets a
// driver.Driver and cannot tell the difference.
//
// It lives apart from package driver so that driver (the contract) imports no driver
// implementation, while this package may import the built-ins (see Default).
package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/plugin"
)

// Factory builds a built-in driver.
type Factory func() (driver.Driver, error)

// Options configure where external drivers are found and where their logs go.
type Options struct {
	// PluginsDir is searched first for loractl-driver-<name> (--plugins-dir);
	// empty means plugin.DefaultDir() ($LORACTL_PLUGINS_DIR or
	// ~/.config/loractl/plugins).
	PluginsDir string
	// Path is searched after PluginsDir, a PATH-style list; empty means $PATH.
	Path string
	// Logger receives external drivers' logs.
	Logger zerolog.Logger
}

// Catalog maps driver names to drivers. Each driver is built or launched once, on
// first lookup, and shared afterwards (a built-in may keep the tasks it started in
// memory). It is safe for concurrent use.
type Catalog struct {
	opts     Options
	mu       sync.Mutex
	builtins map[string]Factory
	pins     map[string]string
	drivers  map[string]driver.Driver
	plugins  []*plugin.Plugin
}

// New returns a catalog with no built-ins; see Default for one with them.
func New(opts Options) *Catalog {
	return &Catalog{
		opts:     opts,
		builtins: map[string]Factory{},
		pins:     map[string]string{},
		drivers:  map[string]driver.Driver{},
	}
}

// Register adds a built-in driver. A built-in shadows any external driver of the same
// name, so a stray executable on PATH can never replace "local".
func (c *Catalog) Register(name string, f Factory) error {
	if err := plugin.ValidName(name); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.builtins[name]; dup {
		return fmt.Errorf("driver %q registered twice", name)
	}
	c.builtins[name] = f
	return nil
}

// Builtins lists the built-in driver names, sorted.
func (c *Catalog) Builtins() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.builtins))
	for n := range c.builtins {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Pin records the SHA-256 (hex) the external driver name must have, from the user's
// config (driver.plugin.sha256). Lookup then refuses an executable that differs,
// before it runs.
func (c *Catalog) Pin(name, sha256 string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.builtins[name]; ok {
		return fmt.Errorf("driver.plugin.sha256 is set, but %q is a built-in driver, not a plugin", name)
	}
	if _, launched := c.drivers[name]; launched {
		return fmt.Errorf("driver %q is already running; pin its checksum before first use", name)
	}
	c.pins[name] = sha256
	return nil
}

// ValidateOptions checks a built-in driver's config section with the driver's own
// rules (driver.OptionsValidator). External drivers check theirs when a task starts:
// asking them here would launch a plugin for every config read (render, plan, data).
func (c *Catalog) ValidateOptions(name string, raw json.RawMessage) error {
	c.mu.Lock()
	_, builtin := c.builtins[name]
	c.mu.Unlock()
	if !builtin {
		return nil
	}
	d, err := c.Lookup(name)
	if err != nil {
		return err
	}
	if v, ok := d.(driver.OptionsValidator); ok {
		return v.ValidateOptions(raw)
	}
	return nil
}

// Lookup returns the driver called name, launching its executable on first use.
func (c *Catalog) Lookup(name string) (driver.Driver, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.drivers[name]; ok {
		return d, nil
	}
	if f, ok := c.builtins[name]; ok {
		d, err := f()
		if err != nil {
			return nil, fmt.Errorf("driver %s: %w", name, err)
		}
		c.drivers[name] = d
		return d, nil
	}
	d, err := c.launch(name)
	if err != nil {
		return nil, err
	}
	c.drivers[name] = d
	return d, nil
}

func (c *Catalog) launch(name string) (driver.Driver, error) {
	dir := c.opts.PluginsDir
	if dir == "" {
		var err error
		if dir, err = plugin.DefaultDir(); err != nil {
			return nil, err
		}
	}
	path := c.opts.Path
	if path == "" {
		path = os.Getenv("PATH")
	}
	exe, err := plugin.Find(name, dir, path)
	if errors.Is(err, plugin.ErrNotFound) {
		builtins := make([]string, 0, len(c.builtins))
		for n := range c.builtins {
			builtins = append(builtins, n)
		}
		sort.Strings(builtins)
		return nil, fmt.Errorf("unknown driver %q: not built in %q, and %w", name, builtins, err)
	}
	if err != nil {
		return nil, err
	}
	if c.pins[name] == "" {
		if err := plugin.CheckTrusted(exe); err != nil {
			return nil, fmt.Errorf("driver %q: %w", name, err)
		}
	}
	p, err := plugin.Launch(plugin.LaunchConfig{Path: exe, SHA256: c.pins[name], Logger: c.opts.Logger})
	if err != nil {
		return nil, err
	}
	d := p.Driver()
	if d.Name() != name {
		p.Close()
		return nil, fmt.Errorf("%s serves driver %q, not %q", exe, d.Name(), name)
	}
	c.plugins = append(c.plugins, p)
	c.opts.Logger.Debug().Str("driver", name).Str("path", exe).Msg("external driver started")
	return d, nil
}

// Close stops every external driver process this catalog launched. Their tasks keep
// running where the driver lets them and are reattached through their handles.
func (c *Catalog) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.plugins {
		p.Close()
	}
	c.plugins = nil
	for name := range c.drivers {
		if _, builtin := c.builtins[name]; !builtin {
			delete(c.drivers, name)
		}
	}
}
