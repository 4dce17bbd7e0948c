package sweep

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/runner"
)

func labels(points []*Point) []string {
	out := make([]string, len(points))
	for i, p := range points {
		out[i] = p.Label()
	}
	return out
}

func TestExpandGrid(t *testing.T) {
	f, err := parse(t, project(t), `base: base.yaml
parameters:
  lora.r: [4, 8]
  lora.alpha:
    tied: 2 * lora.r
  train.learning_rate: [1.0e-4, 2.0e-4]
  lora.target_modules: [[q_proj, v_proj]]
  train.max_steps: 6
`)
	must(t, err)
	points, err := Expand(f)
	must(t, err)
	want := []string{
		`lora.r=4 lora.alpha=8 train.learning_rate=0.0001 lora.target_modules=["q_proj","v_proj"] train.max_steps=6`,
		`lora.r=4 lora.alpha=8 train.learning_rate=0.0002 lora.target_modules=["q_proj","v_proj"] train.max_steps=6`,
		`lora.r=8 lora.alpha=16 train.learning_rate=0.0001 lora.target_modules=["q_proj","v_proj"] train.max_steps=6`,
		`lora.r=8 lora.alpha=16 train.learning_rate=0.0002 lora.target_modules=["q_proj","v_proj"] train.max_steps=6`,
	}
	if got := labels(points); !reflect.DeepEqual(got, want) {
		t.Fatalf("grid:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i, p := range points {
		if p.Index != i {
			t.Errorf("point %d has index %d", i, p.Index)
		}
	}
}

func TestExpandGridLimit(t *testing.T) {
	vals := make([]string, 400)
	for i := range vals {
		vals[i] = fmt.Sprint(i + 1)
	}
	list := "[" + strings.Join(vals, ", ") + "]"
	f, err := parse(t, project(t), "base: base.yaml\nparameters:\n  lora.r: "+list+"\n  train.max_steps: "+list+"\n")
	must(t, err)
	if _, err := Expand(f); err == nil || !strings.Contains(err.Error(), "more than 100000 points") {
		t.Fatalf("160,000-point grid: %v", err)
	}
}

const randomSweep = `base: base.yaml
method: random
count: %d
seed: %d
parameters:
  train.learning_rate:
    distribution: log_uniform
    min: 1.0e-5
    max: 1.0e-3
  lora.dropout:
    distribution: uniform
    min: 0
    max: 0.2
  lora.r:
    distribution: int
    min: 2
    max: 5
  lora.alpha:
    tied: 2 * lora.r
  lora.target_modules:
    choice: [[q_proj, v_proj], all-linear]
`

func TestExpandRandomSeeded(t *testing.T) {
	dir := project(t)
	expand := func(count, seed int) []*Point {
		f, err := parse(t, dir, fmt.Sprintf(randomSweep, count, seed))
		must(t, err)
		points, err := Expand(f)
		must(t, err)
		return points
	}
	a, b := expand(200, 7), expand(200, 7)
	if !reflect.DeepEqual(labels(a), labels(b)) {
		t.Fatal("the same seed gave different points")
	}
	if reflect.DeepEqual(labels(a), labels(expand(200, 8))) {
		t.Fatal("another seed gave the same points")
	}
	// A longer draw extends a shorter one: point i does not depend on count.
	if !reflect.DeepEqual(labels(expand(5, 7)), labels(a[:5])) {
		t.Error("count changed the first points")
	}
	ranks := map[int]bool{}
	targets := map[string]bool{}
	for _, p := range a {
		v := map[string]any{}
		for _, x := range p.Values {
			v[x.Key] = x.Value
		}
		lr := v["train.learning_rate"].(float64)
		drop := v["lora.dropout"].(float64)
		r := v["lora.r"].(int)
		if lr < 1e-5 || lr > 1e-3 || drop < 0 || drop > 0.2 || r < 2 || r > 5 || v["lora.alpha"] != 2*r {
			t.Fatalf("point %d out of range: %s", p.Index, p.Label())
		}
		if lr != roundSig(lr, 4) {
			t.Errorf("learning rate %v not rounded to 4 significant digits", lr)
		}
		ranks[r] = true
		targets[fmt.Sprint(v["lora.target_modules"])] = true
	}
	if len(ranks) != 4 || len(targets) != 2 {
		t.Errorf("200 draws hit ranks %v and targets %v", ranks, targets)
	}
	// The draw itself is part of the file format: these values must never change.
	want := []string{
		`train.learning_rate=0.00008252 lora.dropout=0.1628 lora.r=4 lora.alpha=8 lora.target_modules=["q_proj","v_proj"]`,
		`train.learning_rate=0.00002087 lora.dropout=0.1451 lora.r=3 lora.alpha=6 lora.target_modules=["q_proj","v_proj"]`,
		`train.learning_rate=0.00004071 lora.dropout=0.09829 lora.r=5 lora.alpha=10 lora.target_modules=["q_proj","v_proj"]`,
	}
	if got := labels(a[:3]); !reflect.DeepEqual(got, want) {
		t.Errorf("seed 7 draws:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestRoundSig(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{
		{0.000123456, 0.0001235}, {123456, 123500}, {0, 0}, {-0.98765, -0.9877},
	} {
		if got := roundSig(c.in, 4); math.Abs(got-c.want) > 1e-15*math.Abs(c.want) {
			t.Errorf("roundSig(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestBuildNamesPointAndKey checks that a value the config validation rejects is an
// error before anything runs, located at the parameter and naming the point.
func TestBuildNamesPointAndKey(t *testing.T) {
	dir := project(t)
	f, err := parse(t, dir, "base: base.yaml\nparameters:\n  lora.r: [8, 0]\n  lora.dropout: [0.1, 1.5]\n")
	must(t, err)
	_, err = Build(f, nil)
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want config.Errors, got %v", err)
	}
	want := []string{
		filepath.Join(dir, "sweep.yaml") + ":4:3: lora.dropout: point 1 (lora.r=8 lora.dropout=1.5) and 1 more points: must be in [0, 1), got 1.5",
		filepath.Join(dir, "sweep.yaml") + ":3:3: lora.r: point 2 (lora.r=0 lora.dropout=0.1) and 1 more points: must be between 1 and 4096, got 0",
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("errors:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestBuildBaseProblems(t *testing.T) {
	dir := project(t)
	// A problem in the base config file is reported there, once, for every point.
	f, err := parse(t, dir, "base: base.yaml\nparameters:\n  lora.r: [4, 8]\n  train.seed: 1\n")
	must(t, err)
	f.BaseSource = []byte(baseYAML + "lora:\n  bias: some\n")
	_, err = Build(f, nil)
	want := filepath.Join(dir, "base.yaml") + ":9:3: lora.bias: every point: "
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("base error: %v\nwant prefix %s", err, want)
	}

	// An inline base is part of the sweep file: its lines are the sweep file's.
	f, err = parse(t, dir, "config:\n  name: t\n  model: ./model\n  data:\n    train: missing.jsonl\n    eval_split: 0.1\nparameters:\n  lora.r: [4]\n")
	must(t, err)
	_, err = Build(f, nil)
	want = filepath.Join(dir, "sweep.yaml") + ":5:5: data.train: point 0 (lora.r=4): "
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("inline error: %v\nwant prefix %s", err, want)
	}
}

// TestBuildRunIDs checks that each point is the run `loractl train BASE --set ...`
// would make, that duplicates run once, and that the sweep id is stable.
func TestBuildRunIDs(t *testing.T) {
	dir := project(t)
	f, err := parse(t, dir, "name: ids\nbase: base.yaml\nmethod: random\ncount: 6\nseed: 1\nparameters:\n  lora.r:\n    choice: [4, 8]\n")
	must(t, err)
	pl, err := Build(f, nil)
	must(t, err)
	if len(pl.Points) != 2 || len(pl.Duplicates) != 4 {
		t.Fatalf("%d points, %d duplicates; want 2 and 4", len(pl.Points), len(pl.Duplicates))
	}
	for _, p := range pl.Points {
		cfg, err := config.Load(filepath.Join(dir, "base.yaml"), p.Sets)
		must(t, err)
		want, err := runner.Prepare(cfg)
		must(t, err)
		if p.RunID() != want.RunID {
			t.Errorf("point %d run id %s, train would use %s", p.Index, p.RunID(), want.RunID)
		}
	}
	for _, d := range pl.Duplicates {
		if d.RunID != pl.Points[0].RunID() && d.RunID != pl.Points[1].RunID() {
			t.Errorf("duplicate %+v of no point", d)
		}
	}
	again, err := Build(f, nil)
	must(t, err)
	if again.ID != pl.ID || !strings.HasPrefix(pl.ID, "ids-") {
		t.Errorf("sweep ids %s, %s", pl.ID, again.ID)
	}
	f.Params[0].Values = []any{4, 16}
	other, err := Build(f, nil)
	must(t, err)
	if other.ID == pl.ID {
		t.Error("other points, same sweep id")
	}
}

// A task metric the base config does not compute is refused at the sweep's metric:
// line, before any point runs.
func TestBuildEvalMetricMustExist(t *testing.T) {
	dir := project(t)
	f, err := parse(t, dir, "base: base.yaml\nmetric: eval.exact\nparameters:\n  lora.r: [4, 8]\n")
	must(t, err)
	_, err = Build(f, nil)
	want := filepath.Join(dir, "sweep.yaml") + ":2:1: metric: every point: eval.exact names no metric in the config's eval.metrics (it has none"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error: %v\nwant prefix %s", err, want)
	}
	f.BaseSource = []byte(baseYAML + "eval:\n  metrics: [chrf, exact]\n")
	if _, err := Build(f, nil); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"eval.eval_loss", "eval_loss", "train_loss"} {
		f.Metric = m
		f.BaseSource = []byte(baseYAML)
		if _, err := Build(f, nil); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
	}
}
