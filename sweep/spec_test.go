package sweep

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loractl/loractl/config"
)

// project writes a base config with a model dir and data beside it, and returns
// the directory.
func project(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must(t, os.Mkdir(filepath.Join(dir, "model"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte("{}\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "base.yaml"), []byte(baseYAML), 0o644))
	return dir
}

const baseYAML = `name: t
model: ./model
data:
  train: train.jsonl
  eval_split: 0.1
train:
  max_steps: 4
`

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func parse(t *testing.T, dir, src string) (*File, error) {
	t.Helper()
	path := filepath.Join(dir, "sweep.yaml")
	must(t, os.WriteFile(path, []byte(src), 0o644))
	return Load(path)
}

// TestParseErrors checks that every bad sweep file is refused with the key and the
// line of the problem.
func TestParseErrors(t *testing.T) {
	dir := project(t)
	cases := []struct {
		name, src string
		key       string
		line      int
		msg       string
	}{
		{"unknown top key", "base: base.yaml\nparamters:\n  lora.r: [8]\n", "paramters", 2, `did you mean "parameters"?`},
		{"no base", "parameters:\n  lora.r: [8]\n", "base", 0, "is required"},
		{"base and inline", "base: base.yaml\nconfig:\n  name: x\nparameters:\n  lora.r: [8]\n", "config", 2, "not both"},
		{"missing base file", "base: nope.yaml\nparameters:\n  lora.r: [8]\n", "base", 1, "cannot read"},
		{"no parameters", "base: base.yaml\n", "parameters", 0, "is required"},
		{"empty list", "base: base.yaml\nparameters:\n  lora.r: []\n", "parameters.lora.r", 3, "empty list"},
		{"unknown config key", "base: base.yaml\nparameters:\n  lora.rank: [8]\n", "parameters.lora.rank", 3, `did you mean "lora.r"?`},
		{"unknown param key", "base: base.yaml\nparameters:\n  lora.r:\n    valuse: [8]\n", "parameters.lora.r.valuse", 4, `did you mean "values"?`},
		{"two kinds", "base: base.yaml\nparameters:\n  lora.r:\n    values: [8]\n    tied: 2\n", "parameters.lora.r", 3, "exactly one"},
		{"distribution in grid", "base: base.yaml\nparameters:\n  train.learning_rate:\n    distribution: log_uniform\n    min: 1e-5\n    max: 1e-3\n", "parameters.train.learning_rate.distribution", 4, "needs method: random"},
		{"random without count", "base: base.yaml\nmethod: random\nparameters:\n  lora.r: [8]\n", "count", 0, "count > 0"},
		{"count in grid", "base: base.yaml\ncount: 3\nparameters:\n  lora.r: [8]\n", "count", 2, "only method random"},
		{"bad method", "base: base.yaml\nmethod: bayes\nparameters:\n  lora.r: [8]\n", "method", 2, "grid or random"},
		{"bad distribution", "base: base.yaml\nmethod: random\ncount: 2\nparameters:\n  lora.dropout:\n    distribution: normal\n    min: 0\n    max: 1\n", "parameters.lora.dropout.distribution", 6, "uniform, log_uniform or int"},
		{"min above max", "base: base.yaml\nmethod: random\ncount: 2\nparameters:\n  lora.dropout:\n    distribution: uniform\n    min: 0.5\n    max: 0.1\n", "parameters.lora.dropout.max", 8, "above min"},
		{"log of zero", "base: base.yaml\nmethod: random\ncount: 2\nparameters:\n  train.learning_rate:\n    distribution: log_uniform\n    min: 0\n    max: 0.1\n", "parameters.train.learning_rate.min", 7, "min > 0"},
		{"int with fraction", "base: base.yaml\nmethod: random\ncount: 2\nparameters:\n  lora.r:\n    distribution: int\n    min: 1.5\n    max: 8\n", "parameters.lora.r", 5, "whole"},
		{"missing max", "base: base.yaml\nmethod: random\ncount: 2\nparameters:\n  lora.dropout:\n    distribution: uniform\n    min: 0\n", "parameters.lora.dropout.max", 5, "is required"},
		{"tied to unknown", "base: base.yaml\nparameters:\n  lora.r: [8]\n  lora.alpha:\n    tied: 2 * lora.rank\n", "parameters.lora.alpha.tied", 5, "lora.rank is not a parameter"},
		{"tied to tied", "base: base.yaml\nparameters:\n  lora.r: [8]\n  lora.alpha:\n    tied: 2 * lora.r\n  lora.dropout:\n    tied: lora.alpha / 1000\n", "parameters.lora.dropout.tied", 7, "tied itself"},
		{"bad expression", "base: base.yaml\nparameters:\n  lora.r: [8]\n  lora.alpha:\n    tied: 2 * (lora.r\n", "parameters.lora.alpha.tied", 5, "missing )"},
		{"bad retries", "base: base.yaml\nretries: -1\nparameters:\n  lora.r: [8]\n", "retries", 2, ">= 0"},
		{"bad max_parallel", "base: base.yaml\nmax_parallel: many\nparameters:\n  lora.r: [8]\n", "max_parallel", 2, "integer"},
		{"bad goal", "base: base.yaml\ngoal: lowest\nparameters:\n  lora.r: [8]\n", "goal", 2, "minimize or maximize"},
		{"bad name", "name: a b\nbase: base.yaml\nparameters:\n  lora.r: [8]\n", "name", 1, "letters, digits"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse(t, dir, c.src)
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("want config.Errors, got %T %v", err, err)
			}
			for _, e := range errs {
				if e.Key == c.key && e.Line == c.line && strings.Contains(e.Msg, c.msg) && strings.HasSuffix(e.File, "sweep.yaml") {
					return
				}
			}
			t.Fatalf("no error at %s line %d containing %q in:\n%v", c.key, c.line, c.msg, err)
		})
	}
}

func TestParseForms(t *testing.T) {
	dir := project(t)
	f, err := parse(t, dir, `name: forms
base: base.yaml
method: random
count: 5
seed: 3
metric: train_loss
goal: maximize
max_parallel: 4
retries: 2
parameters:
  train.learning_rate:
    distribution: log_uniform
    min: 1.0e-5
    max: 1.0e-3
  lora.r:
    choice: [4, 8]
  lora.alpha:
    tied: lora.r × 2
  lora.target_modules:
    values: [[q_proj, v_proj], all-linear]
  train.max_steps: 10
`)
	must(t, err)
	want := []struct {
		key  string
		kind Kind
	}{
		{"train.learning_rate", KindLogUniform}, {"lora.r", KindChoice}, {"lora.alpha", KindTied},
		{"lora.target_modules", KindValues}, {"train.max_steps", KindFixed},
	}
	if len(f.Params) != len(want) {
		t.Fatalf("params %+v", f.Params)
	}
	for i, w := range want {
		if p := f.Params[i]; p.Key != w.key || p.Kind != w.kind {
			t.Errorf("param %d: %s %s, want %s %s", i, p.Key, p.Kind, w.key, w.kind)
		}
	}
	if f.Name != "forms" || f.Count != 5 || f.Seed != 3 || f.Metric != "train_loss" || f.Goal != Maximize || f.MaxParallel != 4 || f.Retries != 2 {
		t.Errorf("settings %+v", f)
	}
	if f.BasePath != filepath.Join(dir, "base.yaml") || string(f.BaseSource) != baseYAML {
		t.Errorf("base %s", f.BasePath)
	}
	if got := f.Params[3].Values[0]; len(got.([]any)) != 2 {
		t.Errorf("target_modules first value %v", got)
	}
}

func TestInlineBase(t *testing.T) {
	dir := project(t)
	f, err := parse(t, dir, "name: inline\nconfig:\n  name: t\n  # a comment\n  model: ./model\n  data:\n    train: train.jsonl\n    eval_split: 0.1\nparameters:\n  lora.r: [4]\n")
	must(t, err)
	want := "name: t\n# a comment\nmodel: ./model\ndata:\n  train: train.jsonl\n  eval_split: 0.1\n"
	if string(f.BaseSource) != want {
		t.Fatalf("inline base:\n%q\nwant\n%q", f.BaseSource, want)
	}
	if f.BasePath != f.Path+"#config" {
		t.Errorf("base path %s", f.BasePath)
	}
}

func TestExprEval(t *testing.T) {
	vars := map[string]any{"lora.r": 8, "train.learning_rate": 2e-4}
	cases := []struct {
		src  string
		want any
	}{
		{"2 * lora.r", 16},
		{"lora.r × 2", 16},
		{"lora.r / 2", 4},
		{"lora.r / 3", 8.0 / 3},
		{"(lora.r + 2) * 2 - 4", 16},
		{"-lora.r + 10", 2},
		{"train.learning_rate * 10", 2e-3},
		{"lora.r * 0.5", 4.0},
		{"1e-3", 1e-3},
	}
	for _, c := range cases {
		e, err := ParseExpr(c.src)
		must(t, err)
		got, err := e.Eval(vars)
		must(t, err)
		if got != c.want {
			t.Errorf("%s = %v (%T), want %v (%T)", c.src, got, got, c.want, c.want)
		}
	}
	for _, bad := range []string{"", "2 *", "lora.r +* 2", "(2", "2 2", "$x"} {
		if _, err := ParseExpr(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	e, _ := ParseExpr("lora.r / (lora.r - 8)")
	if _, err := e.Eval(vars); err == nil || !strings.Contains(err.Error(), "division by zero") {
		t.Errorf("division by zero: %v", err)
	}
}

// TestExampleSweepFile keeps configs/sweep.yaml valid and its expansion as documented.
func TestExampleSweepFile(t *testing.T) {
	f, err := Load(filepath.Join("..", "configs", "sweep.yaml"))
	must(t, err)
	points, err := Expand(f)
	must(t, err)
	if len(points) != 6 || points[5].Label() != "lora.r=16 lora.alpha=32 train.learning_rate=0.01 train.epochs=1" {
		t.Fatalf("configs/sweep.yaml expands to %d points: %v", len(points), labels(points))
	}
}

// TestSweepFileGuards: a sweep file passes the same YAML guard as a config.
func TestSweepFileGuards(t *testing.T) {
	dir := project(t)
	if _, err := parse(t, dir, "base: base.yaml\nparameters:\n  lora.r: [8, 16]\n---\nparameters:\n  lora.r: [1, 2, 3, 4]\n"); err == nil || !strings.Contains(err.Error(), "a second YAML document") {
		t.Errorf("two documents: %v", err)
	}
	f, err := parse(t, dir, "\xef\xbb\xbfbase: base.yaml\nparameters:\n  lora.r: [8, 16]\n")
	if err != nil || len(f.Params) != 1 {
		t.Errorf("a BOM: %v", err)
	}
}

// A task metric ranks higher-is-better unless goal: says otherwise.
func TestEvalMetricGoal(t *testing.T) {
	dir := project(t)
	for src, want := range map[string]string{
		"metric: eval.python:score\n":          Maximize,
		"metric: eval.exact\ngoal: minimize\n": Minimize,
		"metric: eval.eval_loss\n":             Minimize,
		"metric: eval_loss\n":                  Minimize,
	} {
		f, err := parse(t, dir, "base: base.yaml\n"+src+"parameters:\n  lora.r: [4]\n")
		must(t, err)
		if f.Goal != want || !strings.HasPrefix(src, "metric: "+f.Metric+"\n") {
			t.Errorf("%q: metric %s goal %s, want %s", src, f.Metric, f.Goal, want)
		}
	}
}
