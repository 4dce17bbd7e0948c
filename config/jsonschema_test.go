package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

var update = flag.Bool("update", false, "rewrite testdata/resolved.schema.json")

// compiled compiles one of the generated schemas with a real JSON Schema validator.
func compiled(t *testing.T, resolved bool) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(SchemaJSON(resolved)))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("loractl.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("loractl.schema.json")
	if err != nil {
		t.Fatalf("the generated schema does not compile: %v", err)
	}
	return s
}

// yamlValue reads YAML into the JSON value model the validator checks.
func yamlValue(t *testing.T, src string) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(src), &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The shipped configs and the starter are valid, and stay so.
func TestSchemaAcceptsTheShippedConfigs(t *testing.T) {
	s := compiled(t, false)
	paths, _ := filepath.Glob(filepath.Join("..", "configs", "*.yaml"))
	paths = append(paths, filepath.Join("..", "internal", "cmd", "init", "starter.yaml"))
	n := 0
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "\nparameters:") {
			continue // a sweep file, not a run config
		}
		n++
		if err := s.Validate(yamlValue(t, string(b))); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if n < 5 {
		t.Fatalf("validated %d configs", n)
	}
}

// The schema agrees with Load on what a key may hold: each case is checked by both.
func TestSchemaAgreesWithLoad(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "model"), 0o755)
	os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte("{}\n"), 0o644)
	s := compiled(t, false)
	base := "model: ./model\ndata:\n  train: train.jsonl\n"
	tests := []struct {
		name, yaml string
		ok         bool
	}{
		{"minimal", "", true},
		{"unknown top-level key", "modle: x\n", false},
		{"unknown nested key", "train:\n  lr: 1e-4\n", false},
		{"unknown lora key", "lora:\n  rank: 8\n", false},
		{"batch auto", "train:\n  batch_size: auto\n  effective_batch_size: 16\n", true},
		{"batch word", "train:\n  batch_size: big\n", false},
		{"target list", "lora:\n  target_modules: [q_proj, v_proj]\n", true},
		{"target all-linear", "lora:\n  target_modules: all-linear\n", true},
		{"target one name", "lora:\n  target_modules: q_proj\n", true},
		{"target number", "lora:\n  target_modules: 3\n", false},
		{"quantization string", "quantization: 4bit\n", true},
		{"quantization object", "quantization:\n  mode: 4bit\n  quant_type: fp4\n", true},
		{"quantization bad", "quantization: 3bit\n", false},
		{"float as a string", "train:\n  learning_rate: '2e-4'\n", true},
		{"float word", "train:\n  learning_rate: fast\n", false},
		{"enum", "train:\n  scheduler: cosine\n", true},
		{"enum typo", "train:\n  scheduler: cosin\n", false},
		{"auto or bool", "train:\n  padding_free: auto\n  liger: false\n", true},
		{"auto or bool word", "train:\n  padding_free: sometimes\n", false},
		{"metrics", "eval:\n  metrics: [chrf, {regex: '^A'}]\n", true},
		{"driver section", "driver:\n  name: slurm\n  slurm:\n    partition: gpu\n", true},
		{"gpu list", "gpu: [0, 1]\ndistributed: {nproc_per_node: auto}\n", true},
		{"gpu word", "gpu: first\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := base + tt.yaml
			schemaErr := s.Validate(yamlValue(t, src))
			if (schemaErr == nil) != tt.ok {
				t.Errorf("schema: %v, want ok=%v", schemaErr, tt.ok)
			}
			p := filepath.Join(dir, "c.yaml")
			os.WriteFile(p, []byte(src), 0o644)
			if _, err := Load(p, nil); (err == nil) != tt.ok {
				t.Errorf("Load: %v, want ok=%v (the schema and the loader disagree)", err, tt.ok)
			}
		})
	}
}

// resolved.json as the controller writes it is valid against its schema; every key
// is required and no other is allowed. testdata/resolved.schema.json is the schema as
// the trainer's tests read it (python/tests/test_support.py compares _SCHEMA with it).
func TestResolvedSchema(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "model"), 0o755)
	os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte("{}\n"), 0o644)
	p := filepath.Join(dir, "c.yaml")
	os.WriteFile(p, []byte("model: ./model\ndata:\n  train: train.jsonl\n  eval_split: 0.1\ndistributed: {nproc_per_node: 2}\n"), 0o644)
	cfg, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cfg.Resolved)
	s := compiled(t, true)
	v, _ := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err := s.Validate(v); err != nil {
		t.Fatalf("resolved.json does not validate: %v\n%s", err, b)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	m["train"].(map[string]any)["lr"] = 0.1
	if s.Validate(m) == nil {
		t.Error("an unknown key in resolved.json validates")
	}
	delete(m["train"].(map[string]any), "lr")
	delete(m["train"].(map[string]any), "seed")
	if s.Validate(m) == nil {
		t.Error("a resolved.json without train.seed validates")
	}

	golden := filepath.Join("testdata", "resolved.schema.json")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, SchemaJSON(true), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(golden); err != nil || !bytes.Equal(b, SchemaJSON(true)) {
		t.Errorf("%s is not the generated schema (go test ./config -run TestResolvedSchema -update): %v", golden, err)
	}
}
