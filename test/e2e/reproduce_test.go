package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loractl/loractl/run"
)

// TestReproduceBitForBit trains a run, reproduces it from its manifest into a new
// run dir and requires identical metrics and adapter weights (CPU, fixed seed); once
// the data has changed, the run can no longer be reproduced.
func TestReproduceBitForBit(t *testing.T) {
	f := newFixture(t, "")
	// A private copy of the data, so the test can change it afterwards.
	for _, name := range []string{"train.jsonl", "eval.jsonl"} {
		b, err := os.ReadFile(filepath.Join(repoRoot(), "examples", "data", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(f.dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(f.dir, "repro.yaml")
	if err := os.WriteFile(cfg, []byte(`name: repro
model: ./model
data:
  train: train.jsonl
  eval: eval.jsonl
lora:
  r: 4
  alpha: 8
  dropout: 0.1
  target_modules: all-linear
train:
  max_steps: 6
  batch_size: 4
  max_length: 64
  learning_rate: 1.0e-2
  warmup: 0
  logging_steps: 2
  save_steps: 3
  seed: 1234
  gradient_checkpointing: false
`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := f.loractl(t, "train", cfg, "--json")
	_, final := jsonLines(t, r.stdout)
	id, _ := final["run_id"].(string)
	if r.code != 0 || id == "" {
		t.Fatalf("train exit %d\n%s", r.code, r.stderr)
	}

	r = f.loractl(t, "reproduce", id, "--json")
	if r.code != 0 {
		t.Fatalf("reproduce exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var rep struct {
		Reproduction string `json:"reproduction"`
		Reproduced   bool   `json:"reproduced"`
		Tolerance    float64
		Metrics      []struct {
			Name  string `json:"name"`
			Match bool   `json:"match"`
		} `json:"metrics"`
		Weights struct {
			Tensors   int `json:"tensors"`
			Identical int `json:"identical"`
		} `json:"weights"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if !rep.Reproduced || rep.Reproduction != id+"-repro-1" || rep.Tolerance != 0 {
		t.Fatalf("report %+v", rep)
	}
	names := map[string]bool{}
	for _, m := range rep.Metrics {
		names[m.Name] = m.Match
	}
	if !names["eval_loss_after"] || !names["eval_loss_before"] || !names["train_loss"] {
		t.Errorf("metrics compared: %v", names)
	}
	if rep.Weights.Tensors == 0 || rep.Weights.Identical != rep.Weights.Tensors {
		t.Errorf("weights %+v", rep.Weights)
	}
	// Checked here too, independently of the comparison code: the bytes are equal.
	orig, _ := os.ReadFile(filepath.Join(f.runs, id, run.AdapterDir, "adapter_model.safetensors"))
	again, _ := os.ReadFile(filepath.Join(f.runs, rep.Reproduction, run.AdapterDir, "adapter_model.safetensors"))
	if len(orig) == 0 || !bytes.Equal(orig, again) {
		t.Errorf("adapter files differ (%d and %d bytes)", len(orig), len(again))
	}
	m := manifest(t, f, rep.Reproduction)
	if m.State != run.StateCompleted || m.ConfigHash != manifest(t, f, id).ConfigHash {
		t.Errorf("reproduction manifest: %s, config hash %s", m.State, m.ConfigHash)
	}

	// Changed data: refused before anything runs (exit 2), naming the file.
	fh, err := os.OpenFile(filepath.Join(f.dir, "train.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(filepath.Join(repoRoot(), "examples", "data", "train.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.Write(first[:bytes.IndexByte(first, '\n')+1]); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	r = f.loractl(t, "reproduce", id)
	if r.code != 2 || !strings.Contains(r.stderr, "train data") || !strings.Contains(r.stderr, "changed since the run") {
		t.Fatalf("changed data: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(f.runs, id+"-repro-2")); !os.IsNotExist(err) {
		t.Error("a refused reproduction left a run dir")
	}
}
