package cmdutil

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/run"
)

// A config read from a run dir's copy (its file is gone) gets the same driver checks
// as a config file: the plugin checksum pin and the driver's own option validation.
func TestLoadConfigSourcePinsAndValidates(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "gone.yaml")
	src := []byte("model: org/m\ndata:\n  train: train.jsonl\ndriver:\n  name: remote\n  plugin:\n    sha256: abc123\n  remote:\n    host: gpu1\n")

	var pinned []string
	var validated json.RawMessage
	f := &Factory{
		PinDriver: func(name, sum string) error { pinned = append(pinned, name+"="+sum); return nil },
		ValidateDriverOptions: func(name string, raw json.RawMessage) error {
			validated = raw
			return nil
		},
	}
	if _, err := LoadConfigSource(f, path, src, nil, ""); err != nil {
		t.Fatal(err)
	}
	if len(pinned) != 1 || pinned[0] != "remote=abc123" || string(validated) != `{"host":"gpu1"}` {
		t.Fatalf("pinned %v, validated %s", pinned, validated)
	}

	f.ValidateDriverOptions = func(string, json.RawMessage) error { return errors.New("host: unreachable") }
	if _, err := LoadConfigSource(f, path, src, nil, ""); ExitCode(err) != ExitInvalid || !strings.Contains(err.Error(), "driver.remote") {
		t.Fatalf("invalid driver options: %v", err)
	}
}

// A stored run's external driver is pinned to the checksum recorded at launch before
// any later command (runs, logs -f, stop) starts it.
func TestDriverForPinsRecordedChecksum(t *testing.T) {
	var pinned []string
	f := &Factory{
		PinDriver: func(name, sum string) error { pinned = append(pinned, name+"="+sum); return nil },
		Driver:    func(name string) (driver.Driver, error) { return nil, errors.New("looked up " + name) },
	}
	m := &run.Manifest{RunID: "r", Handle: &driver.Handle{Driver: "remote"}, DriverInfo: map[string]string{run.PluginSHA256: "abc"}}
	_, err := DriverFor(f, m)
	if len(pinned) != 1 || pinned[0] != "remote=abc" || err == nil || err.Error() != "looked up remote" {
		t.Fatalf("pinned %v, err %v: want the pin before the lookup", pinned, err)
	}
	f.PinDriver = func(string, string) error { return errors.New("checksum mismatch") }
	if _, err := DriverFor(f, m); err == nil || err.Error() != "checksum mismatch" {
		t.Fatalf("a failed pin must stop the lookup: %v", err)
	}
}
