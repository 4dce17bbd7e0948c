package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/internal/cmdtest"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/run/runtest"
	"github.com/loractl/loractl/taskeval"
)

// fixture is a completed run in a test store: resolved.json with an exact metric,
// adapter/, a complete checkpoint-10 and an incomplete checkpoint-20. The interpreter
// is testdata/fakepy.sh, which writes what eval_task.py writes.
type fixture struct {
	f       *cmdutil.Factory
	out     *bytes.Buffer
	runDir  string
	scripts string
	args    string
	work    string
}

const runID = "demo-0123456789"

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f, out, _ := cmdtest.Factory(t, nil)
	work := t.TempDir()
	for name, body := range map[string]string{"train.jsonl": "{}\n", "eval.jsonl": "{}\n", "test.jsonl": "{}\n", "score.py": "def score(o, r, e):\n    return 1\n"} {
		must(t, os.WriteFile(filepath.Join(work, name), []byte(body), 0o644))
	}
	must(t, os.Mkdir(filepath.Join(work, "model"), 0o755))
	cfgPath := filepath.Join(work, "run.yaml")
	must(t, os.WriteFile(cfgPath, []byte("name: demo\nmodel: ./model\ndata:\n  train: train.jsonl\n  eval: eval.jsonl\neval:\n  metrics: [exact]\nenv:\n  set:\n    RUN_ENV_VALUE: from-config\n"), 0o644))
	cfg, err := config.Load(cfgPath, nil)
	must(t, err)
	runDir := filepath.Join(f.RunsDir(), runID)
	must(t, os.MkdirAll(filepath.Join(runDir, "adapter"), 0o755))
	must(t, os.WriteFile(filepath.Join(runDir, "adapter", "adapter_config.json"), []byte("{}"), 0o644))
	b, _ := json.Marshal(cfg.Resolved)
	must(t, os.WriteFile(filepath.Join(runDir, run.ResolvedFile), b, 0o644))
	must(t, os.WriteFile(filepath.Join(runDir, run.ConfigFile), cfg.Source, 0o644))
	must(t, run.WriteManifest(runDir, &run.Manifest{Version: 1, RunID: runID, Name: "demo", State: run.StateCompleted, ConfigPath: cfgPath, Result: &run.Result{Step: 5}}))
	for _, cp := range []struct {
		step     string
		complete bool
	}{{"10", true}, {"20", false}} {
		d := filepath.Join(runDir, run.CheckpointsDir, "checkpoint-"+cp.step)
		must(t, os.MkdirAll(d, 0o755))
		if cp.complete {
			step, _ := strconv.Atoi(cp.step)
			runtest.Checkpoint(t, d, step)
		}
	}
	scripts := t.TempDir()
	must(t, os.WriteFile(filepath.Join(scripts, taskeval.ScriptFile), []byte("# stand-in\n"), 0o644))
	fake, _ := filepath.Abs("testdata/fakepy.sh")
	t.Setenv("LORACTL_PYTHON", fake)
	args := filepath.Join(t.TempDir(), "args")
	t.Setenv("FAKE_ARGS", args)
	t.Setenv("FAKE_MODE", "better")
	return &fixture{f: f, out: out, runDir: runDir, scripts: scripts, args: args, work: work}
}

func (fx *fixture) run(t *testing.T, o Options) (string, int) {
	t.Helper()
	fx.out.Reset()
	o.Factory, o.ScriptDir = fx.f, fx.scripts
	if o.RunID == "" {
		o.RunID = runID
	}
	err := evalRun(context.Background(), &o)
	out := fx.out.String()
	if err != nil {
		out += "\nerror: " + err.Error()
	}
	return out, cmdutil.ExitCode(err)
}

func (fx *fixture) scriptArgs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(fx.args)
	must(t, err)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func argAfter(args []string, flag string) string {
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		return ""
	}
	return args[i+1]
}

func TestEvalDefaultAndJSON(t *testing.T) {
	fx := newFixture(t)
	out, code := fx.run(t, Options{})
	if code != 0 || !strings.Contains(out, "verdict    adopt: 20 eval examples") || !strings.Contains(out, "exact      0 -> 1") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	args := fx.scriptArgs(t)
	if args[0] != filepath.Join(fx.scripts, taskeval.ScriptFile) || argAfter(args, "--adapter") != filepath.Join(fx.runDir, "adapter") ||
		argAfter(args, "--config") != filepath.Join(fx.runDir, run.ResolvedFile) || slices.Contains(args, "--metric") {
		t.Fatalf("script args %q", args)
	}
	if b, _ := os.ReadFile(fx.args + ".env"); string(b) != "from-config" {
		t.Fatalf("the run's env.set did not reach the script: %q", b)
	}
	s, err := taskeval.ReadSummary(filepath.Join(fx.runDir, "eval"))
	if err != nil || s.Verdict != taskeval.Adopt || s.Checkpoint != "adapter" || s.EvalLoss == nil {
		t.Fatalf("summary %v %+v", err, s)
	}
	if left, _ := filepath.Glob(filepath.Join(fx.runDir, ".eval-*")); len(left) != 0 {
		t.Fatalf("temp dirs left behind: %v", left)
	}

	t.Setenv("FAKE_MODE", "worse")
	out, code = fx.run(t, Options{JSON: true})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var js taskeval.Summary
	if code != 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &js) != nil || js.Verdict != taskeval.DoNotAdopt || js.N != 20 {
		t.Fatalf("--json exit %d:\n%s", code, out)
	}
	// The repeated default evaluation replaced the run's own, and its verdict is the
	// manifest's now.
	if s, _ := taskeval.ReadSummary(filepath.Join(fx.runDir, "eval")); s.Verdict != taskeval.DoNotAdopt {
		t.Fatalf("eval/ not replaced: %+v", s)
	}
	if m, _ := run.ReadManifest(fx.runDir); m.Result.Verdict != taskeval.DoNotAdopt || m.Result.Improved == nil || *m.Result.Improved || m.Result.Step != 5 {
		t.Fatalf("manifest result %+v", m.Result)
	}
}

// Another checkpoint, data file or metric set writes its own directory; the
// training-time evaluation stays.
func TestEvalNonDefaultDirs(t *testing.T) {
	fx := newFixture(t)
	_, code := fx.run(t, Options{})
	if code != 0 {
		t.Fatal(code)
	}
	t.Setenv("FAKE_MODE", "worse")
	out, code := fx.run(t, Options{Checkpoint: 10})
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if got := argAfter(fx.scriptArgs(t), "--adapter"); got != filepath.Join(fx.runDir, run.CheckpointsDir, "checkpoint-10") {
		t.Fatalf("--adapter %s", got)
	}
	s, err := taskeval.ReadSummary(filepath.Join(fx.runDir, "eval-checkpoint-10"))
	if err != nil || s.Checkpoint != "checkpoint-10" || s.Verdict != taskeval.DoNotAdopt {
		t.Fatalf("checkpoint summary %v %+v", err, s)
	}
	if s, _ := taskeval.ReadSummary(filepath.Join(fx.runDir, "eval")); s.Verdict != taskeval.Adopt {
		t.Fatalf("the training-time evaluation was overwritten: %+v", s)
	}
	if m, _ := run.ReadManifest(fx.runDir); m.Result.Verdict != taskeval.Adopt {
		t.Fatalf("another checkpoint's evaluation changed the run's verdict: %+v", m.Result)
	}

	test := filepath.Join(fx.work, "test.jsonl")
	t.Chdir(fx.work)
	out, code = fx.run(t, Options{Data: "test.jsonl", Metrics: []string{"exact", "python:score.py:score", "regex:^\\{"}, MaxExamples: 5})
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	args := fx.scriptArgs(t)
	if argAfter(args, "--data") != test || argAfter(args, "--max-examples") != "5" {
		t.Fatalf("args %q", args)
	}
	var metrics []config.MetricConfig
	for i, a := range args {
		if a == "--metric" {
			var m config.MetricConfig
			must(t, json.Unmarshal([]byte(args[i+1]), &m))
			metrics = append(metrics, m)
		}
	}
	want := []config.MetricConfig{{Name: "exact", Kind: "exact"},
		{Name: "python:score", Kind: "python", Path: filepath.Join(fx.work, "score.py"), Function: "score"},
		{Name: "regex", Kind: "regex", Pattern: `^\{`}}
	if !slices.Equal(metrics, want) {
		t.Fatalf("metrics passed %+v", metrics)
	}
	dirs, _ := filepath.Glob(filepath.Join(fx.runDir, "eval-data-*-metrics-*"))
	if len(dirs) != 1 {
		t.Fatalf("eval dirs: %v", dirs)
	}
}

func TestEvalInvalid(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		mode string
		code int
		want string
	}{
		{"no such run", Options{RunID: "nope-0000000000"}, "", 2, "nope-0000000000"},
		{"incomplete checkpoint", Options{Checkpoint: 20}, "", 2, "checkpoint-20 of demo-0123456789 is incomplete"},
		{"absent checkpoint", Options{Checkpoint: 30}, "", 2, "no checkpoint-30 (complete checkpoints: 10)"},
		{"unknown metric", Options{Metrics: []string{"bleu"}}, "", 2, `--metric bleu: unknown metric "bleu"`},
		{"bad regex", Options{Metrics: []string{"regex:(a"}}, "", 2, `--metric regex:(a (regex): "(a" does not compile`},
		{"bad judge", Options{Metrics: []string{"{judge: {model: m}}"}}, "", 2, "(judge.endpoint): is required"},
		{"missing data", Options{Data: "/nonexistent.jsonl"}, "", 2, "--data /nonexistent.jsonl"},
		{"script refuses", Options{}, "invalid", 2, "does not compile"},
		{"script fails", Options{}, "fail", 1, "CUDA out of memory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t)
			if tc.mode != "" {
				// A good evaluation first: a failed one must leave it alone.
				if _, code := fx.run(t, Options{}); code != 0 {
					t.Fatal(code)
				}
				t.Setenv("FAKE_MODE", tc.mode)
			}
			out, code := fx.run(t, tc.o)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want %d with %q:\n%s", code, tc.code, tc.want, out)
			}
			if tc.mode != "" {
				if s, err := taskeval.ReadSummary(filepath.Join(fx.runDir, "eval")); err != nil || s.Verdict != taskeval.Adopt {
					t.Fatalf("a failed evaluation touched the earlier one: %v %+v", err, s)
				}
			}
			if left, _ := filepath.Glob(filepath.Join(fx.runDir, ".eval-*")); len(left) != 0 {
				t.Fatalf("temp dirs left behind: %v", left)
			}
		})
	}
}
