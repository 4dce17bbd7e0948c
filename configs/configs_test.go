// Package configs holds the example run configs; this test keeps every one of them
// valid as the config schema and the drivers' options evolve.
package configs

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/driver/container"
	"github.com/loractl/loractl/driver/local"
	"github.com/loractl/loractl/driver/slurm"
)

func TestExampleConfigsAreValid(t *testing.T) {
	validate := map[string]func(json.RawMessage) error{
		"local":  func(r json.RawMessage) error { _, err := local.DecodeOptions(r); return err },
		"docker": func(r json.RawMessage) error { _, err := container.DecodeOptionsFor(container.Docker, r); return err },
		"slurm":  func(r json.RawMessage) error { _, err := slurm.DecodeOptions(r); return err },
	}
	paths, _ := filepath.Glob("*.yaml")
	n := 0
	for _, p := range paths {
		if strings.HasPrefix(filepath.Base(p), "sweep") || p == "quickstart.yaml" {
			continue // sweeps have their own schema; the quickstart's model is built by its script
		}
		n++
		t.Run(p, func(t *testing.T) {
			c, err := config.Load(p, nil)
			if err != nil {
				t.Fatal(err)
			}
			v, ok := validate[c.DriverName]
			if !ok {
				t.Fatalf("no validator for driver %s", c.DriverName)
			}
			if err := c.ValidateDriver(v); err != nil {
				t.Fatal(err)
			}
		})
	}
	if n < 4 {
		t.Fatalf("only %d example configs found", n)
	}
}
