package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
	if err := os.Mkdir(filepath.Join(dir, "model"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
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
			if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(p, nil); (err == nil) != tt.ok {
				t.Errorf("Load: %v, want ok=%v (the schema and the loader disagree)", err, tt.ok)
			}
		})
	}
}

// resolved.json as the controller writes it is valid against its schema; every key
// is required and no other is allowed. python/resolved_schema.py is the schema as the
// trainer validates with it.
func TestResolvedSchema(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "model"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(p, []byte("model: ./model\ndata:\n  train: train.jsonl\n  eval_split: 0.1\ndistributed: {nproc_per_node: 2}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
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
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["train"].(map[string]any)["lr"] = 0.1
	if s.Validate(m) == nil {
		t.Error("an unknown key in resolved.json validates")
	}
	delete(m["train"].(map[string]any), "lr")
	delete(m["train"].(map[string]any), "seed")
	if s.Validate(m) == nil {
		t.Error("a resolved.json without train.seed validates")
	}

	golden := filepath.Join("..", "python", "resolved_schema.py")
	if *update {
		if err := os.WriteFile(golden, pythonSchemaModule(t), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(golden); err != nil || !bytes.Equal(b, pythonSchemaModule(t)) {
		t.Errorf("%s is not the generated schema (go test ./config -run TestResolvedSchema -update): %v", golden, err)
	}
}

// pythonSchemaModule is python/resolved_schema.py: the resolved schema as a module the
// trainer imports, so it travels with the trainer's other files into run dirs, images
// and Slurm nodes without a data file to forget.
func pythonSchemaModule(t *testing.T) []byte {
	t.Helper()
	js := SchemaJSON(true)
	if bytes.Contains(js, []byte(`"""`)) {
		t.Fatal(`the schema holds """, which the module's raw string cannot`)
	}
	var b bytes.Buffer
	b.WriteString("# Generated from config.Resolved by `go test ./config -run TestResolvedSchema -update`; do not edit.\n")
	b.WriteString("# The JSON Schema of resolved.json, the trainer's input (`loractl schema --resolved` prints it).\n")
	b.WriteString("import json\n\nSCHEMA = json.loads(r\"\"\"\n")
	b.Write(js)
	b.WriteString("\"\"\")\n")
	return b.Bytes()
}

// TestResolvedBoundsAgreeWithLoad: each range the resolved schema states is one Load
// enforces. A value just outside it is refused by both Load (as --set KEY=VALUE) and
// the schema; the bound itself, where it is allowed, passes the schema.
func TestResolvedBoundsAgreeWithLoad(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "model"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "c.yaml")
	// One process and a micro-batch of 1, so any batch count divides; an eval set, which
	// early stopping needs.
	if err := os.WriteFile(p, []byte("model: ./model\ndata:\n  train: train.jsonl\n  eval_split: 0.1\ntrain:\n  batch_size: 1\ndistributed: {nproc_per_node: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := compiled(t, true)
	set := func(key string, v float64) []string { return []string{key + "=" + strconv.FormatFloat(v, 'f', -1, 64)} }
	resolvedWith := func(key string, v float64) any {
		b, _ := json.Marshal(cfg.Resolved)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		section, name, _ := strings.Cut(key, ".")
		m[section].(map[string]any)[name] = v
		b, _ = json.Marshal(m)
		out, _ := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		return out
	}
	for key, bounds := range resolvedBounds {
		var outside, inside []float64
		for kw, v := range bounds {
			f := toFloat(v)
			switch kw {
			case "minimum":
				outside, inside = append(outside, f-1), append(inside, f)
			case "maximum":
				outside, inside = append(outside, f+1), append(inside, f)
			case "exclusiveMinimum", "exclusiveMaximum":
				outside = append(outside, f)
			default:
				t.Fatalf("%s: unexpected keyword %s", key, kw)
			}
		}
		for _, v := range outside {
			if s.Validate(resolvedWith(key, v)) == nil {
				t.Errorf("%s=%v: the schema accepts it", key, v)
			}
			if _, err := Load(p, set(key, v)); err == nil {
				t.Errorf("%s=%v: the schema refuses it but Load accepts it", key, v)
			}
		}
		for _, v := range inside {
			if err := s.Validate(resolvedWith(key, v)); err != nil {
				t.Errorf("%s=%v: on the bound, refused: %v", key, v, err)
			}
			if only, ok := resolvedOnly[key]; ok && only == v {
				continue
			}
			if _, err := Load(p, set(key, v)); err != nil {
				t.Errorf("%s=%v: the schema allows it but Load refuses it: %v", key, v, err)
			}
		}
	}
}

// resolvedOnly are bounds only resolved.json reaches: the value a key resolves to when
// the config leaves it out.
var resolvedOnly = map[string]float64{
	"data.eval_split":            0, // no split
	"distributed.nproc_per_node": 0, // auto
}

func toFloat(v any) float64 {
	switch n := v.(type) {
	case int:
		return float64(n)
	case int64:
		return float64(n)
	case float64:
		return n
	}
	panic(fmt.Sprintf("bound %v (%T) is not a number", v, v))
}
