package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeEvalFiles adds a scorer and schemas beside a config written by writeConfig.
func writeEvalFiles(t *testing.T, p string) {
	t.Helper()
	dir := filepath.Dir(p)
	files := map[string]string{
		"score.py":     "def score(output, reference, example):\n    return 1.0\n",
		"schema.json":  `{"type": "object"}`,
		"broken.json":  `{"type": `,
		"list.json":    `[1, 2]`,
		"badtype.json": `{"type": "object", "properties": {"a": {"type": "text"}}}`,
		"badreq.json":  `{"type": "object", "required": "a"}`,
		"rubric-x.txt": "be strict",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func loadEval(t *testing.T, yaml string, sets ...string) (*Config, error) {
	t.Helper()
	p := writeConfig(t, yaml)
	writeEvalFiles(t, p)
	return Load(p, sets)
}

func TestEvalDefaults(t *testing.T) {
	c, err := loadEval(t, base)
	if err != nil {
		t.Fatal(err)
	}
	e := c.Resolved.Eval
	if !e.Generate || e.MaxExamples != 200 || e.MaxNewTokens != 256 || e.Primary != "" || len(e.Metrics) != 0 || e.MinImprovement != 0 || e.AtCheckpoints {
		t.Fatalf("eval defaults: %+v", e)
	}
	if c.Resolved.Train.Select != "last" || c.Resolved.Train.EarlyStoppingPatience != 0 {
		t.Fatalf("train defaults: %+v", c.Resolved.Train)
	}
	// Rendered as an empty list, never null: the trainer iterates it.
	b, _ := json.Marshal(c.Resolved)
	if !strings.Contains(string(b), `"metrics":[]`) {
		t.Fatalf("metrics not rendered as []: %s", b)
	}
}

// Every YAML form of contracts.md resolves to the documented resolved.json shape.
func TestEvalMetricForms(t *testing.T) {
	c, err := loadEval(t, base+`eval:
  max_examples: 50
  max_new_tokens: 64
  metrics:
    - exact
    - chrf
    - {regex: "^\\{"}
    - {json_schema: schema.json}
    - {python: "score.py:score"}
    - {exact: null, name: exact2}
    - judge:
        endpoint: http://127.0.0.1:8080/v1
        model: m
        api_key_env: JUDGE_KEY
        rubric: "correct and brief"
  primary: chrf
  min_improvement: 0.5
train:
  select: best
  early_stopping_patience: 3
`)
	if err != nil {
		t.Fatal(err)
	}
	e := c.Resolved.Eval
	dir := c.Dir
	want := []MetricConfig{
		{Name: "exact", Kind: "exact"},
		{Name: "chrf", Kind: "chrf"},
		{Name: "regex", Kind: "regex", Pattern: `^\{`},
		{Name: "json_schema", Kind: "json_schema", Path: filepath.Join(dir, "schema.json")},
		{Name: "python:score", Kind: "python", Path: filepath.Join(dir, "score.py"), Function: "score"},
		{Name: "exact2", Kind: "exact"},
		{Name: "judge", Kind: "judge", Endpoint: "http://127.0.0.1:8080/v1", Model: "m", APIKeyEnv: "JUDGE_KEY", Rubric: "correct and brief"},
	}
	if len(e.Metrics) != len(want) {
		t.Fatalf("metrics: %+v", e.Metrics)
	}
	for i := range want {
		if e.Metrics[i] != want[i] {
			t.Errorf("metric %d: got %+v, want %+v", i, e.Metrics[i], want[i])
		}
	}
	if e.Primary != "chrf" || e.MinImprovement != 0.5 || e.MaxExamples != 50 || e.MaxNewTokens != 64 {
		t.Fatalf("eval: %+v", e)
	}
	if c.Resolved.Train.Select != "best" || c.Resolved.Train.EarlyStoppingPatience != 3 {
		t.Fatalf("train: %+v", c.Resolved.Train)
	}
	b, _ := json.Marshal(e.Metrics[2])
	if string(b) != `{"name":"regex","kind":"regex","pattern":"^\\{"}` {
		t.Fatalf("regex metric renders as %s", b)
	}
}

func TestEvalPrimaryDefaultsToFirst(t *testing.T) {
	c, err := loadEval(t, base+"eval:\n  metrics: [rouge_l, exact]\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Resolved.Eval.Primary != "rouge_l" {
		t.Fatalf("primary %q", c.Resolved.Eval.Primary)
	}
}

func TestEvalInvalid(t *testing.T) {
	noEval := "name: demo\nmodel: ./model\ndata:\n  train: train.jsonl\n"
	cases := []struct {
		name, yaml string
		sets       []string
		want       string
	}{
		{"unknown metric", base + "eval:\n  metrics: [exact, bleu]\n", nil, ":7:20: eval.metrics[1]: unknown metric \"bleu\""},
		{"did you mean", base + "eval:\n  metrics: [chrF]\n", nil, "did you mean \"chrf\"?"},
		{"unknown kind in mapping", base + "eval:\n  metrics:\n    - {regexp: x}\n", nil, "eval.metrics[0].regexp: unknown metric \"regexp\" (did you mean \"regex\"?)"},
		{"regex missing paren", base + "eval:\n  metrics:\n    - regex: \"(a\"\n", nil, ":8:7: eval.metrics[0].regex: \"(a\" does not compile: "},
		{"regex unbalanced", base + "eval:\n  metrics:\n    - regex: \"a)\"\n", nil, "eval.metrics[0].regex: \"a)\" does not compile"},
		{"regex nothing to repeat", base + "eval:\n  metrics:\n    - regex: \"*a\"\n", nil, "does not compile"},
		{"regex bare", base + "eval:\n  metrics: [regex]\n", nil, "eval.metrics[0]: regex needs a pattern"},
		{"schema missing", base + "eval:\n  metrics:\n    - json_schema: nope.json\n", nil, "eval.metrics[0].json_schema: file "},
		{"schema not json", base + "eval:\n  metrics:\n    - json_schema: broken.json\n", nil, "broken.json is not JSON"},
		{"schema a list", base + "eval:\n  metrics:\n    - json_schema: list.json\n", nil, "list.json is not a JSON Schema"},
		{"schema bad type", base + "eval:\n  metrics:\n    - json_schema: badtype.json\n", nil, `badtype.json is not a JSON Schema: properties.a.type "text" is not a JSON type`},
		{"schema bad required", base + "eval:\n  metrics:\n    - json_schema: badreq.json\n", nil, "badreq.json is not a JSON Schema: required must be a list of property names"},
		{"python no function", base + "eval:\n  metrics:\n    - python: score.py\n", nil, "eval.metrics[0].python: \"score.py\": want FILE.py:function"},
		{"python bad function", base + "eval:\n  metrics:\n    - python: \"score.py:1x\"\n", nil, "is not a Python function name"},
		{"python missing file", base + "eval:\n  metrics:\n    - python: \"gone.py:score\"\n", nil, "eval.metrics[0].python: file "},
		{"judge no endpoint", base + "eval:\n  metrics:\n    - judge: {model: m}\n", nil, "eval.metrics[0].judge.endpoint: is required"},
		{"judge no model", base + "eval:\n  metrics:\n    - judge: {endpoint: \"http://x/v1\"}\n", nil, "eval.metrics[0].judge.model: is required"},
		{"judge bad url", base + "eval:\n  metrics:\n    - judge: {endpoint: \"ftp://x\", model: m}\n", nil, "is not an http(s) URL"},
		{"judge unknown key", base + "eval:\n  metrics:\n    - judge: {endpoint: \"http://x\", model: m, rubrik: r}\n", nil, "judge.rubrik: unknown key (did you mean \"rubric\"?)"},
		{"judge key env", base + "eval:\n  metrics:\n    - judge: {endpoint: \"http://x\", model: m, api_key_env: \"sk-123 abc\"}\n", nil, "is not an environment variable name"},
		{"two kinds", base + "eval:\n  metrics:\n    - {exact: null, chrf: null}\n", nil, "must name exactly one metric kind"},
		{"duplicate", base + "eval:\n  metrics: [exact, exact]\n", nil, "eval.metrics[1]: a second metric named \"exact\""},
		{"bad name", base + "eval:\n  metrics:\n    - {exact: null, name: \"a b\"}\n", nil, "eval.metrics[0].name"},
		{"metrics not list", base + "eval:\n  metrics: exact\n", nil, "eval.metrics: must be a list"},
		{"primary unknown", base + "eval:\n  metrics: [exact, chrf]\n  primary: chrff\n", nil, "eval.primary: \"chrff\" names no configured metric (have: exact, chrf); did you mean \"chrf\"?"},
		{"primary without metrics", base + "eval:\n  primary: exact\n", nil, "eval.primary: \"exact\" names no metric"},
		{"max examples", base + "eval:\n  max_examples: 0\n", nil, "eval.max_examples: must be between 1"},
		{"max new tokens", base + "eval:\n  max_new_tokens: -1\n", nil, "eval.max_new_tokens: must be between 1"},
		{"min improvement word", base + "eval:\n  min_improvement: lots\n", nil, "eval.min_improvement: must be a number"},
		{"unknown eval key", base + "eval:\n  metric: [exact]\n", nil, "eval.metric: unknown key (did you mean \"metrics\"?)"},
		{"at checkpoints without metric", base + "eval:\n  at_checkpoints: true\n", nil, "eval.at_checkpoints: needs a metric"},
		{"at checkpoints judge", base + "eval:\n  at_checkpoints: true\n  metrics:\n    - judge: {endpoint: \"http://x\", model: m}\n", nil, "is a judge, which runs after training"},
		{"two judges", base + "eval:\n  metrics:\n    - judge: {endpoint: \"http://x\", model: m}\n    - {judge: {endpoint: \"http://y\", model: n}, name: j2}\n", nil, "eval.metrics[1]: a second judge"},
		{"select", base + "train:\n  select: first\n", nil, "train.select: must be last or best, got \"first\""},
		{"patience", base + "train:\n  early_stopping_patience: -2\n", nil, "train.early_stopping_patience: must be between 0"},
		{"best without eval", noEval + "train:\n  select: best\n", nil, "train.select: best needs an eval set"},
		{"patience without eval", noEval + "train:\n  early_stopping_patience: 2\n", nil, "train.early_stopping_patience: needs an eval set"},
		{"set metric", base, []string{"eval.metrics=[blue]"}, "--set: eval.metrics[0]: unknown metric \"blue\""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadEval(t, tc.yaml, tc.sets...)
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.yaml)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

// Patterns only Python's re accepts are left to the trainer's check, not refused.
func TestEvalRegexPythonOnly(t *testing.T) {
	for _, p := range []string{`(?=a)b`, `(a)\1`, `a*+`, `a{2000}`} {
		c, err := loadEval(t, base+"eval:\n  metrics:\n    - regex: '"+p+"'\n")
		if err != nil {
			t.Errorf("%s refused: %v", p, err)
			continue
		}
		if c.Resolved.Eval.Metrics[0].Pattern != p {
			t.Errorf("pattern %q resolved as %q", p, c.Resolved.Eval.Metrics[0].Pattern)
		}
	}
}

func TestParseMetricsWithOwnBase(t *testing.T) {
	var problems []string
	got := ParseMetrics([]MetricItem{{Key: "--metric", Value: map[string]any{"python": "/abs/none.py:f"}}},
		func(p string) string {
			if filepath.IsAbs(p) {
				return p
			}
			return filepath.Join("/wd", p)
		},
		func(key, msg string) { problems = append(problems, key+": "+msg) })
	if len(got) != 0 || len(problems) != 1 || !strings.HasPrefix(problems[0], "--metric.python: file /abs/none.py does not exist") {
		t.Fatalf("got %+v, problems %q", got, problems)
	}
}

// A scorer or schema named with --set is relative to the working directory, like
// every path typed on the command line.
func TestAbsoluteMetricSet(t *testing.T) {
	wd, _ := os.Getwd()
	got := AbsolutePathSets([]string{`eval.metrics=[exact, {python: "s.py:score"}, {json_schema: /abs/x.json}, {regex: "a:b"}]`})
	var items []any
	if err := json.Unmarshal([]byte(strings.TrimPrefix(got[0], "eval.metrics=")), &items); err != nil || len(items) != 4 || items[0] != "exact" {
		t.Fatalf("%s: %v", got[0], err)
	}
	var list []map[string]any
	for _, it := range items[1:] {
		list = append(list, it.(map[string]any))
	}
	if list[0]["python"] != filepath.Join(wd, "s.py")+":score" || list[1]["json_schema"] != "/abs/x.json" || list[2]["regex"] != "a:b" {
		t.Fatalf("rewritten: %s", got[0])
	}
	if got := AbsolutePathSets([]string{"eval.metrics=[unclosed"}); got[0] != "eval.metrics=[unclosed" {
		t.Fatalf("an unreadable value was changed: %s", got[0])
	}
}
