package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEnumsAgreeWithValidation: every value completion offers is accepted, and a
// value outside the list is refused, key by key.
func TestEnumsAgreeWithValidation(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "model"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte("model: ./model\ndata:\n  train: train.jsonl\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for key, values := range Enums {
		for _, v := range values {
			sets := []string{key + "=" + v}
			if strings.HasPrefix(key, "quantization") && key != "quantization" && key != "quantization.mode" {
				sets = append([]string{"quantization.mode=4bit"}, sets...)
			}
			if _, err := Load(cfg, sets); err != nil {
				t.Errorf("%s=%s offered by completion but refused: %v", key, v, err)
			}
		}
		if key == "lora.target_modules" || key == "driver.name" {
			continue // free-form lists; external drivers
		}
		if _, err := Load(cfg, []string{key + "=no-such-value"}); err == nil {
			t.Errorf("%s=no-such-value accepted: the validation allows more than Enums lists", key)
		}
	}
}
