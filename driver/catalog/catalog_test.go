package catalog

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/local"
	"github.com/loractl/loractl/driver/plugin"
)

// isolated is a catalog that can find no external drivers, whatever is installed.
func isolated(t *testing.T) *Catalog {
	c := Default(Options{PluginsDir: t.TempDir(), Path: t.TempDir(), Logger: zerolog.Nop()})
	t.Cleanup(c.Close)
	return c
}

func TestDefaultHasTheBuiltins(t *testing.T) {
	c := isolated(t)
	if got, want := c.Builtins(), []string{"docker", "local", "podman", "slurm"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Builtins() = %v, want %v", got, want)
	}
	for _, name := range c.Builtins() {
		d, err := c.Lookup(name)
		if err != nil {
			t.Fatalf("Lookup(%q): %v", name, err)
		}
		if d.Name() != name {
			t.Errorf("Lookup(%q) returned driver %q", name, d.Name())
		}
	}
}

// TestBuiltinIsShared matters for the local driver: it remembers the trainers it
// started, so every lookup in one controller must reach the same instance.
func TestBuiltinIsShared(t *testing.T) {
	c := isolated(t)
	a, _ := c.Lookup(local.Name)
	b, _ := c.Lookup(local.Name)
	if a != b {
		t.Error("two lookups of a built-in returned different instances")
	}
}

func TestLookupErrors(t *testing.T) {
	tests := []struct {
		name, driver string
		want         []string
		is           error
	}{
		{"unknown lists built-ins and where it looked", "kubernetes",
			[]string{`unknown driver "kubernetes"`, `["docker" "local" "podman" "slurm"]`, "loractl-driver-kubernetes"}, plugin.ErrNotFound},
		{"a name that is a path", "../../bin/sh", []string{"invalid driver name"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := isolated(t).Lookup(tc.driver)
			if err == nil {
				t.Fatalf("Lookup(%q) succeeded", tc.driver)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.is)
			}
		})
	}
}

func TestRegisterAndPin(t *testing.T) {
	c := isolated(t)
	if err := c.Register(local.Name, func() (driver.Driver, error) { return local.New(), nil }); err == nil {
		t.Error("registering a name twice was accepted")
	}
	if err := c.Register("Bad Name", nil); err == nil {
		t.Error("registering an invalid name was accepted")
	}
	if err := c.Pin(local.Name, strings.Repeat("0", 64)); err == nil || !strings.Contains(err.Error(), "built-in") {
		t.Errorf("pinning a built-in = %v, want an error saying it is built in", err)
	}
	boom := errors.New("no engine")
	if err := c.Register("broken", func() (driver.Driver, error) { return nil, boom }); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup("broken"); !errors.Is(err, boom) || !strings.Contains(err.Error(), "broken") {
		t.Errorf("Lookup of a failing built-in = %v, want its error naming the driver", err)
	}
}

// Each built-in checks its own config section; an external driver's is its own to
// check when it starts (no plugin is launched to validate a config).
func TestValidateOptions(t *testing.T) {
	c := isolated(t)
	tests := []struct {
		name, raw string
		wantErr   string
	}{
		{"local", ``, ""},
		{"local", `{"gpus": 1}`, "gpus"},
		{"slurm", `{"partition": "gpu"}`, ""},
		{"slurm", `{"partiton": "gpu"}`, "partiton"},
		{"docker", `{"image": "trainer:1"}`, ""},
		{"podman", `{"imag": "trainer:1"}`, "imag"},
		{"no-such-plugin", `{"anything": true}`, ""},
	}
	for _, tt := range tests {
		err := c.ValidateOptions(tt.name, json.RawMessage(tt.raw))
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("ValidateOptions(%s, %s) = %v, want an error naming %q", tt.name, tt.raw, err, tt.wantErr)
		}
	}
}
