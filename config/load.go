package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/parser"
)

// Config is a loaded, validated run config.
type Config struct {
	// Path is the absolute path of the YAML file; Dir its directory, against which
	// relative paths in the file resolve.
	Path string
	Dir  string
	// Source is the file exactly as given (stored as the run's config.yaml).
	Source []byte
	// Overrides are the --set arguments applied on top of the file.
	Overrides []string
	Spec      Spec
	Resolved  Resolved
	// DriverName is driver.name (default "local"); DriverOptions its section as JSON.
	DriverName    string
	DriverOptions json.RawMessage
	// GPU is the device index asked for, or -1 for "pick the one with most free memory".
	GPU int
	// SystemPrompt is data.system_prompt with @FILE read.
	SystemPrompt string

	pos map[string]position
}

// Load reads, overrides, validates and resolves the config at path. Every problem is
// returned at once as Errors, each naming the key and file:line.
func Load(path string, sets []string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	src, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(abs, src, sets)
}

// Parse is Load for a config already in memory; path names it in errors and anchors
// relative paths.
func Parse(path string, src []byte, sets []string) (*Config, error) {
	c := &Config{Path: path, Dir: filepath.Dir(path), Source: src, Overrides: sets}
	file, err := parser.ParseBytes(src, 0)
	if err != nil {
		return nil, &FieldError{File: path, Msg: "invalid YAML: " + yaml.FormatError(err, false, true)}
	}
	c.pos = indexPositions(file)

	tree := map[string]any{}
	if len(bytes.TrimSpace(src)) > 0 {
		if err := yaml.Unmarshal(src, &tree); err != nil {
			return nil, &FieldError{File: path, Msg: "invalid YAML: " + yaml.FormatError(err, false, true)}
		}
		if tree == nil {
			return nil, &FieldError{File: path, Msg: "the config must be a YAML mapping"}
		}
	}
	// Unknown keys are reported and dropped, so the values of the known ones are still
	// validated: the user sees every problem of the file in one pass.
	var errs Errors
	errs = append(errs, c.checkKeys(tree, "")...)
	// The shorthand "quantization: 4bit" becomes a mapping before overrides, so
	// --set quantization.double_quant=false refines it instead of replacing it.
	if q, ok := tree["quantization"].(string); ok {
		tree["quantization"] = map[string]any{"mode": q}
	}
	for _, s := range sets {
		if e := applySet(tree, s); e != nil {
			errs = append(errs, e)
		}
	}
	if err := c.decode(tree); err != nil {
		var decodeErrs Errors
		if !errors.As(err, &decodeErrs) {
			return nil, err
		}
		return nil, append(errs, decodeErrs...)
	}
	errs = append(errs, c.resolve()...)
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// at builds a FieldError for key, located where the key appears in the file; keys set
// on the command line are reported as --set.
func (c *Config) at(key, format string, a ...any) *FieldError {
	msg := fmt.Sprintf(format, a...)
	for _, s := range c.Overrides {
		if k, _, _ := strings.Cut(s, "="); k == key {
			return &FieldError{File: "--set", Key: key, Msg: msg}
		}
	}
	e := &FieldError{File: c.Path, Key: key, Msg: msg}
	if p, ok := c.pos[key]; ok {
		e.Line, e.Col = p.line, p.col
	} else if i := strings.LastIndex(key, "."); i > 0 {
		// A missing key: point at its parent section.
		if p, ok := c.pos[key[:i]]; ok {
			e.Line, e.Col = p.line, p.col
		}
	}
	return e
}

// checkKeys reports every key the schema does not know, with a did-you-mean.
func (c *Config) checkKeys(m map[string]any, prefix string) Errors {
	var errs Errors
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		ok, bad, siblings := lookupKey(path)
		if !ok {
			if bad != path {
				continue // reported at its parent
			}
			msg := "unknown key"
			if s := didYouMean(k, siblings); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			errs = append(errs, c.at(path, "%s", msg))
			delete(m, k)
			continue
		}
		if sub, isMap := m[k].(map[string]any); isMap && path != "driver" && path != "env.set" && !strings.HasPrefix(path, "driver.") {
			errs = append(errs, c.checkKeys(sub, path)...)
		}
	}
	return errs
}

// applySet applies one --set key=value override. The value is parsed as YAML, so
// "1e-4", "true" and "[q_proj, v_proj]" get their natural types.
func applySet(tree map[string]any, s string) *FieldError {
	key, raw, found := strings.Cut(s, "=")
	if !found || key == "" {
		return &FieldError{File: "--set", Msg: fmt.Sprintf("%q: want key=value", s)}
	}
	if ok, bad, siblings := lookupKey(key); !ok {
		msg := "unknown key"
		last := bad[strings.LastIndex(bad, ".")+1:]
		if sug := didYouMean(last, siblings); sug != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", sug)
		}
		return &FieldError{File: "--set", Key: key, Msg: msg}
	}
	var v any
	if err := yaml.Unmarshal([]byte(raw), &v); err != nil {
		return &FieldError{File: "--set", Key: key, Msg: "invalid value: " + err.Error()}
	}
	parts := strings.Split(key, ".")
	m := tree
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = v
	return nil
}

// decode turns the generic tree into Spec; a wrong type names the key.
func (c *Config) decode(tree map[string]any) error {
	sections := map[string]map[string]any{}
	if d, ok := tree["driver"].(map[string]any); ok {
		for k, v := range d {
			if k == "name" {
				continue
			}
			sec, isMap := v.(map[string]any)
			if !isMap && v != nil {
				return Errors{c.at("driver."+k, "must be a mapping of that driver's options")}
			}
			sections[k] = sec
		}
		tree = shallowCopyWithout(tree, "driver")
		if name, ok := d["name"]; ok {
			tree["driver"] = map[string]any{"name": name}
		}
	}
	if errs := c.nonFinite(tree, ""); len(errs) > 0 {
		return errs
	}
	b, err := json.Marshal(tree)
	if err != nil {
		return &FieldError{File: c.Path, Msg: "unsupported value: " + err.Error()}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c.Spec); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Errors{c.at(te.Field, "must be %s, not %s", typeWord(te.Type.String()), te.Value)}
		}
		return &FieldError{File: c.Path, Msg: err.Error()}
	}
	c.Spec.Driver.Sections = sections
	return nil
}

// nonFinite reports the keys whose value is YAML's .nan or .inf: no setting takes one,
// and JSON cannot carry them to the trainer.
func (c *Config) nonFinite(v any, path string) Errors {
	var errs Errors
	switch v := v.(type) {
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			errs = append(errs, c.at(path, "must be a number, not %v", v))
		}
	case map[string]any:
		for k, sub := range v {
			p := k
			if path != "" {
				p = path + "." + k
			}
			errs = append(errs, c.nonFinite(sub, p)...)
		}
	case []any:
		for i, sub := range v {
			errs = append(errs, c.nonFinite(sub, fmt.Sprintf("%s[%d]", path, i))...)
		}
	}
	return errs
}

func shallowCopyWithout(m map[string]any, drop string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k != drop {
			out[k] = v
		}
	}
	return out
}

func typeWord(goType string) string {
	switch strings.TrimPrefix(goType, "*") {
	case "int":
		return "an integer"
	case "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	case "[]string":
		return "a list of strings"
	}
	return goType
}
