package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
)

// EvalSpec is the eval: section as written: task evaluation of base and adapter after
// training (docs/evaluation.md).
type EvalSpec struct {
	Generate     *bool `json:"generate,omitempty"`
	MaxExamples  *int  `json:"max_examples,omitempty"`
	MaxNewTokens *int  `json:"max_new_tokens,omitempty"`
	// Metrics is a list whose items are a kind ("exact") or a mapping of one kind to
	// its argument ({regex: "^\\{"}), optionally with name:.
	Metrics        any    `json:"metrics,omitempty"`
	Primary        string `json:"primary,omitempty"`
	MinImprovement *Float `json:"min_improvement,omitempty"`
	AtCheckpoints  *bool  `json:"at_checkpoints,omitempty"`
}

// EvalConfig is the resolved eval section, as the trainer and `loractl eval` read it.
type EvalConfig struct {
	Generate     bool           `json:"generate"`
	MaxExamples  int            `json:"max_examples"`
	MaxNewTokens int            `json:"max_new_tokens"`
	Metrics      []MetricConfig `json:"metrics"`
	// Primary names the metric whose paired bootstrap decides the verdict ("" without
	// metrics: the per-example eval loss decides).
	Primary string `json:"primary"`
	// MinImprovement is how much the primary metric must improve (in its own units)
	// for the adapter to be adopted.
	MinImprovement float64 `json:"min_improvement"`
	AtCheckpoints  bool    `json:"at_checkpoints"`
}

// MetricConfig is one resolved metric. Paths are absolute.
type MetricConfig struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Pattern   string `json:"pattern,omitempty"`
	Path      string `json:"path,omitempty"`
	Function  string `json:"function,omitempty"`
	Endpoint  string `json:"endpoint,omitempty"`
	Model     string `json:"model,omitempty"`
	APIKeyEnv string `json:"api_key_env,omitempty"`
	Rubric    string `json:"rubric,omitempty"`
}

// Metric returns the metric named name, nil when none is.
func (e EvalConfig) Metric(name string) *MetricConfig {
	for i := range e.Metrics {
		if e.Metrics[i].Name == name {
			return &e.Metrics[i]
		}
	}
	return nil
}

// Metric kinds. Every kind but judge is computed by the trainer; the judge's calls are
// made by the controller, outside any container.
const (
	MetricExact      = "exact"
	MetricContains   = "contains"
	MetricRegex      = "regex"
	MetricJSONValid  = "json_valid"
	MetricJSONSchema = "json_schema"
	MetricChrF       = "chrf"
	MetricRougeL     = "rouge_l"
	MetricPython     = "python"
	MetricJudge      = "judge"
)

// MetricKinds lists every metric kind, in documentation order.
var MetricKinds = []string{MetricExact, MetricContains, MetricRegex, MetricJSONValid, MetricJSONSchema, MetricChrF, MetricRougeL, MetricPython, MetricJudge}

// Eval defaults.
const (
	DefaultMaxExamples  = 200
	DefaultMaxNewTokens = 256
	maxNewTokensLimit   = 32768
	maxSchemaBytes      = 16 << 20
)

var (
	metricNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_:.-]{0,63}$`)
	identRE      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	judgeKeys    = []string{"endpoint", "model", "api_key_env", "rubric"}
)

// argKinds are the kinds that take an argument; the rest stand alone.
var argKinds = map[string]string{
	MetricRegex:      "a pattern: {regex: \"^\\\\{\"}",
	MetricJSONSchema: "a JSON Schema file: {json_schema: schema.json}",
	MetricPython:     "a scorer: {python: \"score.py:score\"}",
	MetricJudge:      "a mapping: {judge: {endpoint: ..., model: ...}}",
}

func (c *Config) resolveEval(t TrainConfig, hasEval bool, errs *Errors) EvalConfig {
	s := c.Spec.Eval
	bad := func(key, format string, a ...any) { *errs = append(*errs, c.at(key, format, a...)) }
	e := EvalConfig{
		Generate:       deref(s.Generate, true),
		MaxExamples:    deref(s.MaxExamples, DefaultMaxExamples),
		MaxNewTokens:   deref(s.MaxNewTokens, DefaultMaxNewTokens),
		MinImprovement: fl(s.MinImprovement, 0),
		AtCheckpoints:  deref(s.AtCheckpoints, false),
		Metrics:        []MetricConfig{},
	}
	if e.MaxExamples <= 0 || e.MaxExamples > maxCount {
		bad("eval.max_examples", "must be between 1 and %d, got %d", maxCount, e.MaxExamples)
	}
	if e.MaxNewTokens <= 0 || e.MaxNewTokens > maxNewTokensLimit {
		bad("eval.max_new_tokens", "must be between 1 and %d, got %d", maxNewTokensLimit, e.MaxNewTokens)
	}
	switch v := s.Metrics.(type) {
	case nil:
	case []any:
		items := make([]MetricItem, len(v))
		for i, m := range v {
			items[i] = MetricItem{Key: fmt.Sprintf("eval.metrics[%d]", i), Value: m}
		}
		e.Metrics = ParseMetrics(items, c.abs, func(key, msg string) { bad(key, "%s", msg) })
	default:
		bad("eval.metrics", "must be a list of metrics (%s)", strings.Join(MetricKinds, ", "))
	}
	judges := 0
	for i, m := range e.Metrics {
		if m.Kind == MetricJudge {
			if judges++; judges == 2 {
				bad(fmt.Sprintf("eval.metrics[%d]", i), "a second judge: one judge per evaluation (its verdict is each row's judge field)")
			}
		}
	}
	e.Primary = s.Primary
	switch {
	case e.Primary == "" && len(e.Metrics) > 0:
		e.Primary = e.Metrics[0].Name
	case e.Primary != "" && e.Metric(e.Primary) == nil:
		if len(e.Metrics) == 0 {
			bad("eval.primary", "%q names no metric: eval.metrics is empty (without metrics the eval loss decides)", e.Primary)
		} else {
			names := make([]string, len(e.Metrics))
			for i, m := range e.Metrics {
				names[i] = m.Name
			}
			msg := fmt.Sprintf("%q names no configured metric (have: %s)", e.Primary, strings.Join(names, ", "))
			if sug := didYouMean(e.Primary, names); sug != "" {
				msg += fmt.Sprintf("; did you mean %q?", sug)
			}
			bad("eval.primary", "%s", msg)
		}
	}
	if e.AtCheckpoints {
		p := e.Metric(e.Primary)
		switch {
		case !e.Generate:
			bad("eval.at_checkpoints", "needs eval.generate: true (it generates at every evaluation)")
		case p == nil:
			bad("eval.at_checkpoints", "needs a metric in eval.metrics to choose checkpoints by")
		case p.Kind == MetricJudge:
			bad("eval.at_checkpoints", "the primary metric %q is a judge, which runs after training: choose a metric the trainer computes as eval.primary", p.Name)
		}
	}
	if !hasEval {
		if t.Select == "best" {
			bad("train.select", "best needs an eval set (data.eval or data.eval_split) to compare checkpoints")
		}
		if t.EarlyStoppingPatience > 0 {
			bad("train.early_stopping_patience", "needs an eval set (data.eval or data.eval_split)")
		}
	}
	return e
}

// resolveSelect validates train.select and train.early_stopping_patience.
func (c *Config) resolveSelect(t *TrainConfig, errs *Errors) {
	s := c.Spec.Train
	t.Select = orDefault(s.Select, "last")
	if t.Select != "last" && t.Select != "best" {
		*errs = append(*errs, c.at("train.select", "must be last or best, got %q", t.Select))
	}
	t.EarlyStoppingPatience = deref(s.EarlyStoppingPatience, 0)
	if t.EarlyStoppingPatience < 0 || t.EarlyStoppingPatience > maxCount {
		*errs = append(*errs, c.at("train.early_stopping_patience", "must be between 0 (never stop early) and %d evaluations, got %d", maxCount, t.EarlyStoppingPatience))
	}
}

// MetricItem is one metric as written (a YAML value) and the key errors name it by.
type MetricItem struct {
	Key   string
	Value any
}

// ParseMetrics validates metric items and resolves them; abs makes a path absolute
// (against the config's directory, or the working directory for command-line metrics)
// and bad receives each problem with the key it is about. Names must be unique.
func ParseMetrics(items []MetricItem, abs func(string) string, bad func(key, msg string)) []MetricConfig {
	out := []MetricConfig{}
	seen := map[string]string{}
	for _, it := range items {
		m, ok := parseMetric(it, abs, bad)
		if !ok {
			continue
		}
		if prev, dup := seen[m.Name]; dup {
			bad(it.Key, fmt.Sprintf("a second metric named %q (the first is %s): tell them apart with name:", m.Name, prev))
			continue
		}
		seen[m.Name] = it.Key
		out = append(out, m)
	}
	return out
}

func parseMetric(it MetricItem, abs func(string) string, bad func(key, msg string)) (MetricConfig, bool) {
	var m MetricConfig
	unknownKind := func(key, kind string) {
		msg := fmt.Sprintf("unknown metric %q (metrics: %s)", kind, strings.Join(MetricKinds, ", "))
		if sug := didYouMean(kind, MetricKinds); sug != "" {
			msg = fmt.Sprintf("unknown metric %q (did you mean %q?)", kind, sug)
		}
		bad(key, msg)
	}
	var arg any
	switch v := it.Value.(type) {
	case string:
		if !slices.Contains(MetricKinds, v) {
			unknownKind(it.Key, v)
			return m, false
		}
		if need, ok := argKinds[v]; ok {
			bad(it.Key, fmt.Sprintf("%s needs %s", v, need))
			return m, false
		}
		m.Kind = v
	case map[string]any:
		var kinds []string
		for _, k := range sortedKeys(v) {
			if k == "name" {
				continue
			}
			if !slices.Contains(MetricKinds, k) {
				unknownKind(it.Key+"."+k, k)
				return m, false
			}
			kinds = append(kinds, k)
		}
		if len(kinds) != 1 {
			bad(it.Key, fmt.Sprintf("must name exactly one metric kind (and optionally name:), got %d", len(kinds)))
			return m, false
		}
		m.Kind, arg = kinds[0], v[kinds[0]]
		if n, ok := v["name"]; ok {
			s, isString := n.(string)
			if !isString || !metricNameRE.MatchString(s) {
				bad(it.Key+".name", fmt.Sprintf("%v is not a metric name (letters, digits, '_', ':', '.', '-'; at most 64)", n))
				return m, false
			}
			m.Name = s
		}
	default:
		bad(it.Key, fmt.Sprintf("must be a metric kind (%s) or a mapping such as {regex: PATTERN}", strings.Join(MetricKinds, ", ")))
		return m, false
	}
	key := it.Key + "." + m.Kind
	str := func() (string, bool) {
		s, ok := arg.(string)
		if !ok || s == "" {
			bad(key, fmt.Sprintf("needs %s", argKinds[m.Kind]))
			return "", false
		}
		return s, true
	}
	ok := true
	switch m.Kind {
	case MetricRegex:
		if m.Pattern, ok = str(); ok {
			if msg := regexProblem(m.Pattern); msg != "" {
				bad(key, msg)
				ok = false
			}
		}
	case MetricJSONSchema:
		var p string
		if p, ok = str(); ok {
			m.Path = abs(p)
			if msg := schemaProblem(m.Path); msg != "" {
				bad(key, msg)
				ok = false
			}
		}
	case MetricPython:
		var spec string
		if spec, ok = str(); ok {
			file, fn, found := cutLast(spec, ":")
			switch {
			case !found || file == "":
				bad(key, fmt.Sprintf("%q: want FILE.py:function", spec))
				ok = false
			case !identRE.MatchString(fn):
				bad(key, fmt.Sprintf("%q: %q is not a Python function name (want FILE.py:function)", spec, fn))
				ok = false
			default:
				m.Path, m.Function = abs(file), fn
				if msg := fileProblem(m.Path); msg != "" {
					bad(key, strings.Replace(msg, "not a JSONL file", "not a Python file", 1))
					ok = false
				}
			}
		}
	case MetricJudge:
		ok = parseJudge(&m, arg, key, bad)
	default:
		// A kind without argument may be written {exact: null, name: ...} to name it.
		if b, isBool := arg.(bool); arg != nil && !(isBool && b) {
			if mm, isMap := arg.(map[string]any); !isMap || len(mm) > 0 {
				bad(key, fmt.Sprintf("%s takes no argument", m.Kind))
				ok = false
			}
		}
	}
	if m.Name == "" {
		m.Name = m.Kind
		if m.Kind == MetricPython && m.Function != "" {
			m.Name = "python:" + m.Function
		}
	}
	return m, ok
}

func parseJudge(m *MetricConfig, arg any, key string, bad func(key, msg string)) bool {
	j, isMap := arg.(map[string]any)
	if !isMap {
		bad(key, "needs "+argKinds[MetricJudge])
		return false
	}
	ok := true
	for _, k := range sortedKeys(j) {
		v := j[k]
		if !slices.Contains(judgeKeys, k) {
			msg := "unknown key"
			if s := didYouMean(k, judgeKeys); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			bad(key+"."+k, msg)
			ok = false
			continue
		}
		s, isString := v.(string)
		if !isString {
			bad(key+"."+k, "must be a string")
			ok = false
			continue
		}
		switch k {
		case "endpoint":
			m.Endpoint = s
		case "model":
			m.Model = s
		case "api_key_env":
			m.APIKeyEnv = s
		case "rubric":
			m.Rubric = s
		}
	}
	if _, given := j["endpoint"]; !given {
		bad(key+".endpoint", "is required: the judge's OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1")
		ok = false
	} else if u, err := url.Parse(m.Endpoint); m.Endpoint != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
		bad(key+".endpoint", fmt.Sprintf("%q is not an http(s) URL", m.Endpoint))
		ok = false
	}
	if _, given := j["model"]; !given || (m.Model == "" && given) {
		bad(key+".model", "is required: the model name the endpoint serves")
		ok = false
	}
	if m.APIKeyEnv != "" && !envNameRE.MatchString(m.APIKeyEnv) {
		bad(key+".api_key_env", fmt.Sprintf("%q is not an environment variable name (the key is read from it, never written in the config)", m.APIKeyEnv))
		ok = false
	}
	return ok
}

// regexProblem reports a pattern that Python's re would refuse too. Go's regexp is
// not Python's: lookarounds, backreferences, possessive quantifiers and large repeat
// counts are Python-only and left for the trainer's own check, so only the errors
// both engines share are reported here.
func regexProblem(p string) string {
	_, err := syntax.Parse(p, syntax.Perl)
	var se *syntax.Error
	if err == nil || !errors.As(err, &se) {
		return ""
	}
	switch se.Code {
	case syntax.ErrMissingParen, syntax.ErrUnexpectedParen, syntax.ErrMissingBracket,
		syntax.ErrTrailingBackslash, syntax.ErrMissingRepeatArgument, syntax.ErrInvalidCharRange:
		return fmt.Sprintf("%q does not compile: %s", p, se.Error())
	}
	return ""
}

// schemaProblem reports a JSON Schema file that is missing or not JSON. Whether it is
// a valid schema is checked by the trainer with jsonschema's check_schema.
func schemaProblem(p string) string {
	if msg := fileProblem(p); msg != "" {
		return strings.Replace(msg, "not a JSONL file", "not a JSON Schema file", 1)
	}
	f, err := os.Open(p)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSchemaBytes+1))
	if err != nil {
		return err.Error()
	}
	if len(b) > maxSchemaBytes {
		return fmt.Sprintf("%s is larger than %d bytes: not a JSON Schema", p, maxSchemaBytes)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Sprintf("%s is not JSON: %v", p, err)
	}
	switch v := v.(type) {
	case bool:
		return ""
	case map[string]any:
		if msg := shallowSchemaProblem(v, ""); msg != "" {
			return fmt.Sprintf("%s is not a JSON Schema: %s", p, msg)
		}
		return ""
	}
	return fmt.Sprintf("%s is not a JSON Schema (want an object or a boolean)", p)
}

// jsonTypes are the type names a JSON Schema's "type" may hold.
var jsonTypes = []string{"null", "boolean", "object", "array", "number", "string", "integer"}

// shallowSchemaProblem catches the common mistakes in a schema's keywords (a type
// that is no JSON type, required that is not a list of names, properties that are not
// schemas) so they are reported at the config's line; the trainer checks the rest
// with jsonschema's check_schema.
func shallowSchemaProblem(m map[string]any, at string) string {
	where := func(k string) string {
		if at == "" {
			return k
		}
		return at + "." + k
	}
	switch t := m["type"].(type) {
	case nil:
	case string:
		if !slices.Contains(jsonTypes, t) {
			return fmt.Sprintf("%s %q is not a JSON type (%s)", where("type"), t, strings.Join(jsonTypes, ", "))
		}
	case []any:
		for _, e := range t {
			if s, ok := e.(string); !ok || !slices.Contains(jsonTypes, s) {
				return fmt.Sprintf("%s holds %v, not a JSON type", where("type"), e)
			}
		}
	default:
		return fmt.Sprintf("%s must be a type name or a list of them", where("type"))
	}
	if r, ok := m["required"]; ok {
		list, isList := r.([]any)
		if !isList {
			return where("required") + " must be a list of property names"
		}
		for _, e := range list {
			if _, ok := e.(string); !ok {
				return where("required") + " must be a list of property names"
			}
		}
	}
	if props, ok := m["properties"]; ok {
		pm, isMap := props.(map[string]any)
		if !isMap {
			return where("properties") + " must be an object of schemas"
		}
		for _, k := range sortedKeys(pm) {
			switch sub := pm[k].(type) {
			case bool:
			case map[string]any:
				if msg := shallowSchemaProblem(sub, where("properties."+k)); msg != "" {
					return msg
				}
			default:
				return where("properties."+k) + " must be a schema (an object or a boolean)"
			}
		}
	}
	return ""
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// absoluteMetricSet makes the files named in a --set eval.metrics=[...] absolute,
// relative to the working directory (json_schema: FILE, python: FILE.py:fn), as
// AbsolutePathSets does for other path keys. A value it cannot read is left as it
// is, for the validation to report.
func absoluteMetricSet(raw string) string {
	v, err := setValue(raw)
	list, ok := v.([]any)
	if err != nil || !ok {
		return "eval.metrics=" + raw
	}
	for _, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			continue
		}
		if p, ok := m[MetricJSONSchema].(string); ok && p != "" && !filepath.IsAbs(p) {
			if abs, err := filepath.Abs(p); err == nil {
				m[MetricJSONSchema] = abs
			}
		}
		if spec, ok := m[MetricPython].(string); ok {
			if file, fn, found := cutLast(spec, ":"); found && file != "" && !filepath.IsAbs(file) {
				if abs, err := filepath.Abs(file); err == nil {
					m[MetricPython] = abs + ":" + fn
				}
			}
		}
	}
	b, err := json.Marshal(list)
	if err != nil {
		return "eval.metrics=" + raw
	}
	return "eval.metrics=" + string(b)
}
