package config

import (
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strings"
)

// SchemaDraft is the JSON Schema dialect of ConfigSchema and ResolvedSchema.
const SchemaDraft = "https://json-schema.org/draft/2020-12/schema"

// ConfigSchema is the JSON Schema of the YAML run config, generated from Spec so it
// cannot drift from what Load reads: every object refuses unknown keys, enums come from
// Enums, and the keys that take more than one form (a count or "auto", a list or
// "all-linear") say so. Editors use it through the modeline `loractl init` writes.
func ConfigSchema() map[string]any {
	s := schemaGen{overrides: configOverrides}.of(reflect.TypeOf(Spec{}), "")
	s["$schema"] = SchemaDraft
	s["title"] = "loractl run config"
	s["description"] = "One LoRA fine-tuning run (README: Config reference)."
	return s
}

// ResolvedSchema is the JSON Schema of resolved.json, the trainer's input, generated
// from Resolved.
func ResolvedSchema() map[string]any {
	s := schemaGen{overrides: resolvedOverrides, bounds: resolvedBounds, required: true}.of(reflect.TypeOf(Resolved{}), "")
	s["$schema"] = SchemaDraft
	s["title"] = "loractl resolved.json"
	s["description"] = "The validated, defaulted config the trainer reads (docs/trainer-contract.md)."
	return s
}

// SchemaJSON is ConfigSchema (resolved: ResolvedSchema) as written to a file:
// indented JSON with a final newline.
func SchemaJSON(resolved bool) []byte {
	s := ConfigSchema()
	if resolved {
		s = ResolvedSchema()
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		panic(err) // maps of strings, numbers and bools always marshal
	}
	return append(b, '\n')
}

var (
	numberString = map[string]any{"type": "string", "pattern": `^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$`}
	autoOrBool   = map[string]any{"enum": []any{true, false, "auto"}}
	countOrAuto  = map[string]any{"oneOf": []any{
		map[string]any{"type": "integer", "minimum": 1},
		map[string]any{"const": "auto"},
	}}
	scalar = map[string]any{"type": []any{"string", "number", "boolean"}}
)

// configOverrides are the YAML keys whose Go type (any, a custom type) does not say
// what they accept.
var configOverrides = map[string]map[string]any{
	"gpu": {"oneOf": []any{
		map[string]any{"type": "integer", "minimum": 0},
		map[string]any{"type": "array", "items": map[string]any{"type": "integer", "minimum": 0}, "minItems": 1},
	}},
	"lora.target_modules": {"oneOf": []any{
		map[string]any{"type": "string", "description": "all-linear, or one module name", "examples": []any{AllLinear}},
		map[string]any{"type": "array", "items": map[string]any{"type": "string"}, "minItems": 1},
	}},
	"quantization": {"oneOf": []any{
		map[string]any{"enum": anys(Enums["quantization"])},
		nil, // the object form, filled in from QuantSpec
	}},
	"train.batch_size":           countOrAuto,
	"train.assistant_only_loss":  autoOrBool,
	"train.padding_free":         autoOrBool,
	"train.liger":                autoOrBool,
	"distributed.nproc_per_node": countOrAuto,
	"eval.metrics": {"type": "array", "items": map[string]any{"oneOf": []any{
		map[string]any{"type": "string", "description": "a kind (exact, chrf, ...) or KIND:ARG"},
		map[string]any{"type": "object", "description": "{KIND: ARG} or {judge: {...}}, optionally with name:"},
	}}},
	"env.set": {"type": "object", "additionalProperties": scalar},
	// Each driver's options sit under its name and are checked by that driver.
	"driver": {"type": "object", "properties": map[string]any{
		"name": map[string]any{"type": "string", "examples": anys(Enums["driver.name"])},
	}, "additionalProperties": map[string]any{"type": "object"}},
}

// resolvedOverrides are the resolved.json keys whose Go type says less than the trainer
// must check. The trainer validates resolved.json against this schema
// (python/resolved_schema.py), so what resolve.go enforces on a value is written here
// too; TestResolvedBoundsAgreeWithLoad holds the two together.
var resolvedOverrides = map[string]map[string]any{
	"version":            {"const": 1},
	"model.name_or_path": {"type": "string", "pattern": `\S`, "description": "a model directory or hub id"},
	"data.train":         {"type": "string", "minLength": 1, "description": "a file path"},
	"lora.target_modules": {"oneOf": []any{
		map[string]any{"const": AllLinear},
		map[string]any{"type": "array", "items": map[string]any{"type": "string", "minLength": 1}, "minItems": 1},
	}, "description": `a non-empty list of module names or "all-linear"`},
	"train.assistant_only_loss": autoOrBool,
	"train.padding_free":        autoOrBool,
	"train.liger":               autoOrBool,
	// chunked_nll is TRL's deprecated name for nll; a trainer reads it as nll.
	"train.loss_type":           {"type": "string", "enum": []any{"nll", "dft", "chunked_nll"}},
	"train.select":              {"type": "string", "enum": []any{"last", "best"}},
	"train.attn_implementation": {"type": "string", "enum": anys(attnImplementations)},
	"train.report_to":           {"type": "array", "items": map[string]any{"enum": anys(Trackers)}, "uniqueItems": true},
	// -1: not set (epochs decide); a value the config set is at least 1.
	"train.max_steps":      {"type": "integer", "minimum": -1, "maximum": maxCount, "not": map[string]any{"const": 0}, "description": "-1 (not set) or a step count from 1"},
	"distributed.strategy": {"type": "string", "enum": anys(Strategies)},
}

// resolvedBounds are the numeric ranges resolve.go enforces, by key, added to the
// resolved schema's integer and number keys.
var resolvedBounds = map[string]map[string]any{
	"data.eval_split":               {"minimum": 0, "exclusiveMaximum": 1}, // 0: no split
	"lora.r":                        {"minimum": 1, "maximum": maxRank},
	"lora.alpha":                    {"exclusiveMinimum": 0},
	"lora.dropout":                  {"minimum": 0, "exclusiveMaximum": 1},
	"train.epochs":                  {"exclusiveMinimum": 0},
	"train.learning_rate":           {"exclusiveMinimum": 0, "exclusiveMaximum": 1},
	"train.batch_size":              {"minimum": 1, "maximum": maxCount},
	"train.eval_batch_size":         {"minimum": 1, "maximum": maxCount},
	"train.grad_accum":              {"minimum": 1, "maximum": maxCount},
	"train.effective_batch_size":    {"minimum": 1, "maximum": maxCount},
	"train.max_length":              {"minimum": 1, "maximum": maxCount},
	"train.logging_steps":           {"minimum": 1, "maximum": maxCount},
	"train.warmup":                  {"minimum": 0},
	"train.seed":                    {"minimum": 0, "maximum": math.MaxUint32},
	"train.eval_steps":              {"minimum": 0},
	"train.save_steps":              {"minimum": 0},
	"train.save_total_limit":        {"minimum": 0},
	"train.weight_decay":            {"minimum": 0},
	"train.max_grad_norm":           {"minimum": 0},
	"train.early_stopping_patience": {"minimum": 0, "maximum": maxCount},
	"distributed.nproc_per_node":    {"minimum": 0, "maximum": maxProcs}, // 0: auto, resolved at launch
	"distributed.nodes":             {"minimum": 1, "maximum": maxProcs},
	"distributed.port":              {"minimum": 1024, "maximum": 65535},
	"eval.max_examples":             {"minimum": 1, "maximum": maxCount},
	"eval.max_new_tokens":           {"minimum": 1, "maximum": maxNewTokensLimit},
}

// bounded adds the range bounds gives path to a number's schema.
func (g schemaGen) bounded(s map[string]any, path string) map[string]any {
	for k, v := range g.bounds[path] {
		s[k] = v
	}
	return s
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

var (
	floatT     = reflect.TypeOf(Float(0))
	batchSizeT = reflect.TypeOf(BatchSize(""))
)

// schemaGen generates a schema from Go types: overrides by dotted key, and whether
// every key without omitempty is required (resolved.json has them all; a config none).
type schemaGen struct {
	overrides map[string]map[string]any
	bounds    map[string]map[string]any
	required  bool
}

// of is the schema of a Go type at dotted path (the key Enums and the overrides use).
func (g schemaGen) of(t reflect.Type, path string) map[string]any {
	if o, ok := g.overrides[path]; ok {
		alts, _ := o["oneOf"].([]any)
		if !slices.Contains(alts, nil) {
			return o
		}
		// An override with a hole: the Go type's own schema fills it.
		filled := slices.Clone(alts)
		for i, a := range filled {
			if a == nil {
				filled[i] = g.typed(t, path)
			}
		}
		return map[string]any{"oneOf": filled}
	}
	return g.typed(t, path)
}

func (g schemaGen) typed(t reflect.Type, path string) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case floatT:
		return map[string]any{"oneOf": []any{map[string]any{"type": "number"}, numberString}}
	case batchSizeT:
		return countOrAuto
	}
	var s map[string]any
	switch t.Kind() {
	case reflect.Struct:
		props := map[string]any{}
		var required []any
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			key := name
			if path != "" {
				key = path + "." + name
			}
			props[name] = g.of(f.Type, key)
			if g.required && !strings.Contains(opts, "omitempty") {
				required = append(required, name)
			}
		}
		s = map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		if len(required) > 0 {
			s["required"] = required
		}
	case reflect.Map:
		s = map[string]any{"type": "object", "additionalProperties": g.of(t.Elem(), path+".*")}
	case reflect.Slice, reflect.Array:
		s = map[string]any{"type": "array", "items": g.of(t.Elem(), path+"[]")}
	case reflect.String:
		s = map[string]any{"type": "string"}
		if vals, ok := Enums[path]; ok {
			s["enum"] = anys(vals)
		}
	case reflect.Bool:
		s = map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		s = g.bounded(map[string]any{"type": "integer"}, path)
	case reflect.Float32, reflect.Float64:
		s = g.bounded(map[string]any{"type": "number"}, path)
	default: // an interface{} without an override: anything
		s = map[string]any{}
	}
	return s
}
