// Package sweep turns a sweep file (a base run config plus parameters to vary) into
// points, each an ordinary run with its own run id and manifest; keeps the sweep's
// state in sweeps/<sweep-id>/; runs the points locally one after another, locally in
// parallel, or on Slurm as one job array; retries failed points; and ranks the
// results. Expansion is deterministic: the same file and seed give the same points in
// the same order, so running a sweep again continues it instead of starting over.
package sweep

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/loractl/loractl/config"
)

// Methods and random distributions a sweep file may name.
const (
	MethodGrid   = "grid"
	MethodRandom = "random"

	Minimize = "minimize"
	Maximize = "maximize"
)

// Kind is how a parameter's values are produced.
type Kind string

// Parameter kinds.
const (
	KindValues     Kind = "values"      // a list: every value in a grid, one at random
	KindChoice     Kind = "choice"      // same as values; the word random searches use
	KindFixed      Kind = "fixed"       // one value for every point
	KindUniform    Kind = "uniform"     // a float drawn uniformly from [min, max]
	KindLogUniform Kind = "log_uniform" // a float whose log is uniform: learning rates
	KindInt        Kind = "int"         // an integer drawn uniformly from [min, max]
	KindTied       Kind = "tied"        // computed from other parameters: "2 * lora.r"
)

// File is a parsed, checked sweep file.
type File struct {
	// Path is the sweep file's absolute path; Source its bytes as given.
	Path   string
	Source []byte
	Name   string
	// BasePath anchors the base config's relative paths and names it in errors. For an
	// inline base (config: mapping) it is Path+"#config", a name that exists only for
	// that purpose; BaseSource is then the mapping cut out of the sweep file and
	// baseLine the sweep-file line its first line came from.
	BasePath   string
	BaseSource []byte
	baseLine   int
	baseCol    int

	Method      string
	Count       int
	Seed        uint64
	Metric      string
	Goal        string
	MaxParallel int
	Retries     int
	// Params are in file order, which is also the grid's nesting order (the first
	// parameter changes slowest).
	Params []*Param

	pos map[string]config.Position
}

// Param is one swept config key.
type Param struct {
	Key      string
	Kind     Kind
	Values   []any
	Min, Max float64
	Expr     *Expr
	// Line and Col locate the key in the sweep file.
	Line, Col int
}

// topKeys are the keys a sweep file may hold.
var topKeys = []string{"name", "base", "config", "method", "count", "seed", "metric", "goal", "max_parallel", "retries", "parameters"}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	// metricRE keeps metric names to what the trainer reports (eval_loss, train_loss).
	// Task metrics (eval.python:score) may hold a colon.
	metricRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_./:-]*$`)
)

// Load reads and parses a sweep file.
func Load(path string) (*File, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	src, err := config.ReadFile(abs)
	if err != nil {
		var fe *config.FieldError
		if errors.As(err, &fe) {
			return nil, err
		}
		return nil, fmt.Errorf("read sweep file: %w", err)
	}
	return Parse(abs, src)
}

// Parse checks a sweep file already in memory. Every problem is returned at once as
// config.Errors, each naming the key and the file:line.
func Parse(path string, src []byte) (*File, error) {
	f := &File{Path: path, Source: src}
	// The same guard as a config: one document, bounded aliases, a BOM tolerated.
	body, pos, err := config.CheckYAML(path, src)
	if err != nil {
		return nil, err
	}
	f.pos = pos
	var tree map[string]any
	if err := yaml.Unmarshal(body, &tree); err != nil {
		return nil, &config.FieldError{File: path, Msg: "invalid YAML: " + yaml.FormatError(err, false, true)}
	}
	if tree == nil {
		return nil, &config.FieldError{File: path, Msg: "the sweep file is empty: it needs a base config and parameters"}
	}
	var errs config.Errors
	bad := func(key, format string, a ...any) { errs = append(errs, f.at(key, format, a...)) }

	keys := sortedKeys(tree)
	for _, k := range keys {
		if !slices.Contains(topKeys, k) {
			msg := "unknown key"
			if s := config.DidYouMean(k, topKeys); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			bad(k, "%s", msg)
		}
	}

	f.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	if v, ok := tree["name"]; ok {
		s, _ := v.(string)
		f.Name = s
	}
	if !nameRE.MatchString(f.Name) {
		bad("name", "%q must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", f.Name)
	}

	f.parseBase(tree, bad)

	f.Method = stringOr(tree, "method", MethodGrid)
	if f.Method != MethodGrid && f.Method != MethodRandom {
		bad("method", "must be grid or random, got %q", f.Method)
	}
	f.Count = intOr(tree, "count", 0, bad)
	switch {
	case f.Method == MethodRandom && f.Count <= 0:
		bad("count", "method random needs count > 0 (how many points to draw)")
	case f.Method == MethodGrid && has(tree, "count"):
		bad("count", "only method random takes a count; a grid has one point per combination")
	}
	if seed := intOr(tree, "seed", 0, bad); seed < 0 {
		bad("seed", "must be >= 0, got %d", seed)
	} else {
		f.Seed = uint64(seed)
	}
	f.Metric = stringOr(tree, "metric", "eval_loss")
	if !metricRE.MatchString(f.Metric) {
		bad("metric", "%q is not a metric name (eval_loss, train_loss, ...)", f.Metric)
	}
	f.Goal = stringOr(tree, "goal", DefaultGoal(f.Metric))
	if f.Goal != Minimize && f.Goal != Maximize {
		bad("goal", "must be minimize or maximize, got %q", f.Goal)
	}
	if f.MaxParallel = intOr(tree, "max_parallel", 1, bad); f.MaxParallel < 1 {
		bad("max_parallel", "must be >= 1, got %d", f.MaxParallel)
	}
	if f.Retries = intOr(tree, "retries", 0, bad); f.Retries < 0 {
		bad("retries", "must be >= 0, got %d", f.Retries)
	}
	errs = append(errs, f.parseParams(tree)...)
	if len(errs) > 0 {
		return nil, errs
	}
	return f, nil
}

// parseBase reads base: (a path, relative to the sweep file) or config: (inline).
func (f *File) parseBase(tree map[string]any, bad func(string, string, ...any)) {
	_, hasBase := tree["base"]
	_, hasInline := tree["config"]
	switch {
	case hasBase && hasInline:
		bad("config", "give base (a config file) or config (inline), not both")
	case hasBase:
		s, ok := tree["base"].(string)
		if !ok || s == "" {
			bad("base", "must be the path of a run config")
			return
		}
		p := s
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(f.Path), p)
		}
		src, err := config.ReadFile(p)
		if err != nil {
			if u := errors.Unwrap(err); u != nil {
				err = u
			}
			bad("base", "cannot read the base config: %v", err)
			return
		}
		f.BasePath, f.BaseSource = p, src
	case hasInline:
		if _, ok := tree["config"].(map[string]any); !ok {
			bad("config", "must be a mapping: the run config, inline")
			return
		}
		src, line, indent, err := cutBlock(f.Source, f.pos["config"].Line)
		if err != nil {
			bad("config", "%v", err)
			return
		}
		f.BasePath, f.BaseSource, f.baseLine, f.baseCol = f.Path+"#config", src, line, indent
	default:
		bad("base", "is required: the run config every point starts from (or config: inline)")
	}
}

// cutBlock returns the indented block under the top-level key on line keyLine
// (1-based), de-indented, with the number of lines above it and the indent removed.
// Keeping the text (rather than re-encoding the parsed value) keeps comments, and
// positions map back one to one.
func cutBlock(src []byte, keyLine int) (block []byte, lineOffset, indent int, err error) {
	lines := bytes.SplitAfter(src, []byte("\n"))
	if keyLine < 1 || keyLine > len(lines) {
		return nil, 0, 0, errors.New("cannot locate the inline config")
	}
	if rest := bytes.TrimSpace(lines[keyLine-1]); !bytes.HasSuffix(rest, []byte(":")) {
		//nolint:staticcheck // ST1005: the trailing "config:" is the YAML key the user writes, not punctuation.
		return nil, 0, 0, errors.New("write the inline config as an indented block under config:")
	}
	start := keyLine // 0-based index of the block's first line
	end := start
	indent = -1
	for end < len(lines) {
		l := lines[end]
		trimmed := bytes.TrimLeft(l, " ")
		if len(bytes.TrimSpace(l)) > 0 && trimmed[0] != '#' {
			n := len(l) - len(trimmed)
			if n == 0 {
				break
			}
			if indent < 0 || n < indent {
				indent = n
			}
		}
		end++
	}
	var out bytes.Buffer
	for _, l := range lines[start:end] {
		if len(l) >= indent && len(bytes.TrimLeft(l[:max(indent, 0)], " ")) == 0 {
			l = l[max(indent, 0):]
		} else {
			l = bytes.TrimLeft(l, " ")
		}
		out.Write(l)
	}
	return out.Bytes(), start, max(indent, 0), nil
}

// parseParams reads the parameters mapping.
func (f *File) parseParams(tree map[string]any) config.Errors {
	var errs config.Errors
	raw, ok := tree["parameters"]
	if !ok {
		return append(errs, f.at("parameters", "is required: the config keys to vary"))
	}
	m, ok := raw.(map[string]any)
	if !ok || len(m) == 0 {
		return append(errs, f.at("parameters", "must map config keys to values (lora.r: [8, 16])"))
	}
	known := config.KnownKeys()
	for _, key := range sortedKeys(m) {
		pk := "parameters." + key
		p := &Param{Key: key}
		if pos, ok := f.pos[pk]; ok {
			p.Line, p.Col = pos.Line, pos.Col
		}
		if !slices.Contains(known, key) && !strings.HasPrefix(key, "driver.") && !strings.HasPrefix(key, "env.set.") {
			msg := "unknown config key"
			if s := config.DidYouMean(key, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			errs = append(errs, f.at(pk, "%s", msg))
			continue
		}
		if e := f.parseParam(p, pk, m[key]); e != nil {
			errs = append(errs, e)
			continue
		}
		f.Params = append(f.Params, p)
	}
	// File order: the grid nests in the order the user wrote.
	sort.SliceStable(f.Params, func(i, j int) bool {
		a, b := f.Params[i], f.Params[j]
		return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
	})
	errs = append(errs, f.checkTied()...)
	return errs
}

var paramKeys = []string{"values", "choice", "distribution", "min", "max", "tied"}

// parseParam reads one parameter: a list, a scalar, or a mapping naming its kind.
func (f *File) parseParam(p *Param, pk string, v any) *config.FieldError {
	switch v := v.(type) {
	case []any:
		if len(v) == 0 {
			return f.at(pk, "empty list: give at least one value")
		}
		p.Kind, p.Values = KindValues, normalizeAll(v)
		return nil
	case map[string]any:
		for _, k := range sortedKeys(v) {
			if !slices.Contains(paramKeys, k) {
				msg := "unknown key"
				if s := config.DidYouMean(k, paramKeys); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				return f.at(pk+"."+k, "%s", msg)
			}
		}
		return f.parseParamMap(p, pk, v)
	default:
		p.Kind, p.Values = KindFixed, []any{normalize(v)}
		return nil
	}
}

func (f *File) parseParamMap(p *Param, pk string, m map[string]any) *config.FieldError {
	kinds := 0
	for _, k := range []string{"values", "choice", "distribution", "tied"} {
		if has(m, k) {
			kinds++
		}
	}
	if kinds != 1 {
		return f.at(pk, "give exactly one of values, choice, distribution (with min and max) or tied")
	}
	for _, k := range []string{"values", "choice"} {
		if raw, ok := m[k]; ok {
			list, ok := raw.([]any)
			if !ok || len(list) == 0 {
				return f.at(pk+"."+k, "must be a non-empty list")
			}
			p.Kind, p.Values = Kind(k), normalizeAll(list)
			if has(m, "min") || has(m, "max") {
				return f.at(pk, "min and max go with a distribution, not with %s", k)
			}
			return nil
		}
	}
	if raw, ok := m["tied"]; ok {
		s, ok := raw.(string)
		if !ok {
			s = fmt.Sprint(raw)
		}
		e, err := ParseExpr(s)
		if err != nil {
			return f.at(pk+".tied", "%v", err)
		}
		p.Kind, p.Expr = KindTied, e
		return nil
	}
	d, _ := m["distribution"].(string)
	switch Kind(d) {
	case KindUniform, KindLogUniform, KindInt:
		p.Kind = Kind(d)
	default:
		return f.at(pk+".distribution", "must be uniform, log_uniform or int, got %v", m["distribution"])
	}
	if f.Method != MethodRandom {
		return f.at(pk+".distribution", "a distribution needs method: random (a grid lists its values)")
	}
	var ok bool
	if p.Min, ok = number(m["min"]); !ok {
		return f.at(pk+".min", "is required with a distribution and must be a number")
	}
	if p.Max, ok = number(m["max"]); !ok {
		return f.at(pk+".max", "is required with a distribution and must be a number")
	}
	switch {
	case p.Kind == KindInt && (p.Min != math.Trunc(p.Min) || p.Max != math.Trunc(p.Max)):
		return f.at(pk, "an int distribution needs whole min and max")
	case p.Kind == KindInt && p.Min > p.Max, p.Kind != KindInt && p.Min >= p.Max:
		return f.at(pk+".max", "must be above min (%v), got %v", p.Min, p.Max)
	case p.Kind == KindLogUniform && p.Min <= 0:
		return f.at(pk+".min", "log_uniform needs min > 0, got %v", p.Min)
	}
	return nil
}

// checkTied makes sure every tied parameter refers to parameters that have values.
func (f *File) checkTied() config.Errors {
	var errs config.Errors
	for _, p := range f.Params {
		if p.Kind != KindTied {
			continue
		}
		for _, ref := range p.Expr.Keys() {
			i := slices.IndexFunc(f.Params, func(q *Param) bool { return q.Key == ref })
			switch {
			case i < 0:
				errs = append(errs, f.at("parameters."+p.Key+".tied", "%s is not a parameter of this sweep", ref))
			case f.Params[i].Kind == KindTied:
				errs = append(errs, f.at("parameters."+p.Key+".tied", "%s is tied itself; tie to the parameter it follows", ref))
			}
		}
	}
	return errs
}

// at locates a problem with key in the sweep file.
func (f *File) at(key, format string, a ...any) *config.FieldError {
	e := &config.FieldError{File: f.Path, Key: key, Msg: fmt.Sprintf(format, a...)}
	for k := key; k != ""; {
		if p, ok := f.pos[k]; ok {
			e.Line, e.Col = p.Line, p.Col
			break
		}
		i := strings.LastIndex(k, ".")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return e
}

// normalize turns YAML's integer types into int, so values print and compare alike.
func normalize(v any) any {
	switch n := v.(type) {
	case int64:
		return int(n)
	case uint64:
		return int(n)
	case []any:
		return normalizeAll(n)
	}
	return v
}

func normalizeAll(list []any) []any {
	out := make([]any, len(list))
	for i, v := range list {
		out[i] = normalize(v)
	}
	return out
}

func number(v any) (float64, bool) {
	switch n := normalize(v).(type) {
	case int:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

func has(m map[string]any, k string) bool { _, ok := m[k]; return ok }

func stringOr(m map[string]any, k, def string) string {
	if v, ok := m[k]; ok {
		return fmt.Sprint(v)
	}
	return def
}

func intOr(m map[string]any, k string, def int, bad func(string, string, ...any)) int {
	v, ok := m[k]
	if !ok {
		return def
	}
	n, isInt := normalize(v).(int)
	if !isInt {
		bad(k, "must be an integer, got %v", v)
		return def
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
