package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
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
	// GPUs are the device indices `gpu:` lists (one for an int), empty when unset.
	GPUs []int
	// processes is the training processes of a distributed run (see Processes).
	processes int
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
	src, err := ReadFile(abs)
	if err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			return nil, err
		}
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(abs, src, sets)
}

// Parse is Load for a config already in memory; path names it in errors and anchors
// relative paths.
func Parse(path string, src []byte, sets []string) (*Config, error) {
	c := &Config{Path: path, Dir: filepath.Dir(path), Source: src}
	body, file, err := guardYAML(path, src)
	if err != nil {
		return nil, err
	}
	c.pos = indexPositions(file)
	c.Overrides = sets

	tree := map[string]any{}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := yaml.Unmarshal(body, &tree); err != nil {
			return nil, &FieldError{File: path, Msg: "invalid YAML: " + yaml.FormatError(err, false, true)}
		}
		if tree == nil {
			return nil, &FieldError{File: path, Msg: "the config must be a YAML mapping"}
		}
	}
	// Unknown keys are reported and dropped, so the values of the known ones are still
	// validated: the user sees every problem of the file in one pass.
	var errs Errors
	// The shorthand "quantization: 4bit" becomes a mapping before overrides, so
	// --set quantization.double_quant=false refines it instead of replacing it, and
	// again after them, for --set quantization=4bit.
	shorthand := func() {
		if q, ok := tree["quantization"].(string); ok {
			tree["quantization"] = map[string]any{"mode": q}
		}
	}
	shorthand()
	for _, s := range c.Overrides {
		if e := applySet(tree, s); e != nil {
			errs = append(errs, e)
		}
	}
	shorthand()
	envScalarsToStrings(tree, scalarTexts(file, "env.set"))
	// After the overrides, so a mapping given with --set is checked key by key too.
	errs = append(errs, c.checkKeys(tree, "")...)
	decodeErrs, err := c.decode(tree)
	if err != nil {
		return nil, err
	}
	errs = append(errs, decodeErrs...)
	for _, e := range c.resolve() {
		// A key whose value had the wrong type was dropped to decode the rest; what
		// resolve says about its absence would only repeat the problem.
		if !decodeErrs.has(e.Key) {
			errs = append(errs, e)
		}
	}
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
		if k, _, _ := strings.Cut(s, "="); k == key || strings.HasPrefix(key, k+".") || strings.HasPrefix(key, k+"[") {
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
	v, err := setValue(raw)
	if err != nil {
		return &FieldError{File: "--set", Key: key, Msg: "invalid value: " + err.Error()}
	}
	if strings.HasPrefix(key, "env.set.") {
		v = raw // an environment value is the text typed, never a YAML number
	}
	if v == nil && isSection(key) {
		// "--set train=null" would drop every train key of the file without a word.
		return &FieldError{File: "--set", Key: key, Msg: fmt.Sprintf("%s is a section: null would reset all of it; set its keys instead (--set %s.KEY=VALUE)", key, key)}
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

// decode turns the generic tree into Spec. Every key with a wrong type is reported:
// each one found is dropped and the rest decoded again. err is for what is not a
// problem of one key.
func (c *Config) decode(tree map[string]any) (Errors, error) {
	sections := map[string]map[string]any{}
	var sectionErrs Errors
	if d, ok := tree["driver"].(map[string]any); ok {
		for k, v := range d {
			if k == "name" {
				continue
			}
			sec, isMap := v.(map[string]any)
			if !isMap && v != nil {
				sectionErrs = append(sectionErrs, c.at("driver."+k, "must be a mapping of that driver's options"))
				continue
			}
			sections[k] = sec
		}
		tree = shallowCopyWithout(tree, "driver")
		if name, ok := d["name"]; ok {
			tree["driver"] = map[string]any{"name": name}
		}
	}
	errs := sectionErrs
	// NaN and infinity are reported and dropped like a wrong type: the rest of the
	// config still decodes, so nothing set is reported as missing.
	for _, e := range c.nonFinite(tree, "") {
		errs = append(errs, e)
		key, _, _ := strings.Cut(e.Key, "[") // a list item: drop the list
		deletePath(tree, key)
	}
	for range 100 {
		b, err := json.Marshal(tree)
		if err != nil {
			return nil, &FieldError{File: c.Path, Msg: "unsupported value: " + err.Error()}
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		c.Spec = Spec{}
		err = dec.Decode(&c.Spec)
		var te *json.UnmarshalTypeError
		if err == nil {
			break
		}
		shown := ""
		if errors.As(err, &te) && te.Field != "" {
			shown = showValue(getPath(tree, te.Field))
		}
		if !errors.As(err, &te) || te.Field == "" || !deletePath(tree, te.Field) {
			if len(errs) > 0 {
				return errs, nil
			}
			return nil, &FieldError{File: c.Path, Msg: err.Error()}
		}
		// A custom decoder (Number) already quotes the value as te.Value: show it once.
		if strings.TrimSpace(shown) == te.Value {
			shown = ""
		}
		errs = append(errs, c.at(te.Field, "must be %s, not %s%s", typeWord(te.Type.String()), te.Value, shown))
	}
	c.Spec.Driver.Sections = sections
	return errs, nil
}

// getPath returns the value at a dotted key, or nil.
func getPath(tree map[string]any, key string) any {
	parts := strings.Split(key, ".")
	var v any = tree
	for _, p := range parts {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// showValue renders a scalar for an error message (" \"1e30\""); nothing for
// lists and mappings, whose kind the message already names.
func showValue(v any) string {
	switch v := v.(type) {
	case string:
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return fmt.Sprintf(" %q", v)
	case int, int64, uint64, float64, bool:
		return fmt.Sprintf(" %v", v)
	}
	return ""
}

// deletePath removes a dotted key ("lora.r") from the tree; false if it is not there.
func deletePath(tree map[string]any, key string) bool {
	parts := strings.Split(key, ".")
	m := tree
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			return false
		}
		m = next
	}
	last := parts[len(parts)-1]
	if _, ok := m[last]; !ok {
		return false
	}
	delete(m, last)
	return true
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

// envScalarsToStrings turns numbers and booleans under env.set into the strings
// an environment holds, as written: OMP_NUM_THREADS: 4 means "4", and
// TORCH_CUDA_ARCH_LIST: 8.0 means "8.0", not "8". raw holds the file's text of
// each scalar by key; values from --set are kept as typed (applySet).
func envScalarsToStrings(tree map[string]any, raw map[string]string) {
	env, _ := tree["env"].(map[string]any)
	set, _ := env["set"].(map[string]any)
	for k, v := range set {
		if _, isString := v.(string); isString {
			continue
		}
		if text, ok := raw["env.set."+k]; ok {
			set[k] = text
			continue
		}
		switch v := v.(type) {
		case bool:
			set[k] = strconv.FormatBool(v)
		case int:
			set[k] = strconv.Itoa(v)
		case int64:
			set[k] = strconv.FormatInt(v, 10)
		case uint64:
			set[k] = strconv.FormatUint(v, 10)
		case float64:
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				set[k] = strconv.FormatFloat(v, 'g', -1, 64)
			}
		}
	}
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
	case "map[string]string":
		return "a mapping of names to strings"
	}
	if strings.HasPrefix(goType, "config.") {
		return "a mapping"
	}
	return goType
}
