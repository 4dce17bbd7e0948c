package sweep

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/local"
	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/gputest"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/iostreams"
	"github.com/loractl/loractl/runner"
	"github.com/loractl/loractl/sweep"
)

// tinyLlama is a config.json the memory estimator reads (a 2-layer Llama).
const tinyLlama = `{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 512, "tie_word_embeddings": false}`

func project(t *testing.T, sweepYAML string) (dir, sweepPath string) {
	t.Helper()
	dir = t.TempDir()
	files := map[string]string{
		"model/config.json": tinyLlama,
		"train.jsonl":       "{}\n",
		"base.yaml":         "name: t\nmodel: ./model\ndata:\n  train: train.jsonl\n  eval_split: 0.1\ntrain:\n  max_steps: 4\n",
		"sweep.yaml":        sweepYAML,
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, filepath.Join(dir, "sweep.yaml")
}

func factory(dir string) (*cmdutil.Factory, *bytes.Buffer, *bytes.Buffer) {
	io, _, out, errOut := iostreams.Test()
	log := zerolog.New(errOut)
	return &cmdutil.Factory{
		IO: io, Log: &log,
		RunsDir: func() string { return filepath.Join(dir, "runs") },
		Driver: func(name string) (driver.Driver, error) {
			if name == local.Name {
				return local.New(), nil
			}
			return nil, errors.New("unknown driver " + name)
		},
		ValidateDriverOptions: func(name string, raw json.RawMessage) error {
			if name != local.Name {
				return errors.New("unknown driver " + name)
			}
			_, err := local.DecodeOptions(raw)
			return err
		},
	}, out, errOut
}

const gridYAML = "name: g\nbase: base.yaml\nmax_parallel: 3\nparameters:\n  lora.r: [4, 8]\n  lora.alpha:\n    tied: 2 * lora.r\n"

func TestDryRunWritesNothing(t *testing.T) {
	dir, path := project(t, gridYAML)
	f, out, _ := factory(dir)
	if err := sweepRun(context.Background(), &Options{Factory: f, File: path, DryRun: true}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sweep g-", "2 points (grid) over lora.r, lora.alpha on local", "lora.r=4 lora.alpha=8", "lora.r=8 lora.alpha=16", "queued"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry run lacks %q:\n%s", want, out.String())
		}
	}
	for _, d := range []string{"runs", "sweeps"} {
		if _, err := os.Stat(filepath.Join(dir, d)); !os.IsNotExist(err) {
			t.Errorf("--dry-run created %s", d)
		}
	}
}

func TestInvalidSweepsExit2(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"bad value", "base: base.yaml\nparameters:\n  lora.r: [8, -1]\n", "sweep.yaml:3:3: lora.r: point 1 (lora.r=-1): must be between 1 and 4096"},
		{"unknown key", "base: base.yaml\nparameters:\n  lora.rr: [8]\n", `sweep.yaml:3:3: parameters.lora.rr: unknown config key (did you mean "lora.r"?)`},
		{"bad driver option", "base: base.yaml\nparameters:\n  driver.local.gpus: [1]\n", "driver.local.gpus: point 0 (driver.local.gpus=1): unknown option"},
		// The driver is not part of a run id: only points that differ otherwise too
		// can disagree on it.
		{"two drivers", "base: base.yaml\nmethod: random\ncount: 20\nparameters:\n  driver.name:\n    choice: [local, slurm]\n  lora.r:\n    distribution: int\n    min: 1\n    max: 64\n", "a sweep runs on one driver"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, path := project(t, c.yaml)
			f, _, _ := factory(dir)
			f.ValidateDriverOptions = func(name string, raw json.RawMessage) error {
				_, err := local.DecodeOptions(raw)
				return err
			}
			err := sweepRun(context.Background(), &Options{Factory: f, File: path, DryRun: true})
			if cmdutil.ExitCode(err) != cmdutil.ExitInvalid || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("exit %d: %v\nwant %q", cmdutil.ExitCode(err), err, c.want)
			}
		})
	}
	dir, path := project(t, gridYAML)
	f, _, _ := factory(dir)
	err := sweepRun(context.Background(), &Options{Factory: f, File: path, Detach: true})
	if cmdutil.ExitCode(err) != cmdutil.ExitInvalid || !strings.Contains(err.Error(), "--detach needs a driver that submits job arrays") {
		t.Fatalf("--detach on the local driver: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sweeps")); !os.IsNotExist(err) {
		t.Error("a refused sweep wrote its state")
	}
	err = sweepRun(context.Background(), &Options{Factory: f, File: "nope.yaml"})
	if cmdutil.ExitCode(err) != cmdutil.ExitInvalid || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestLocalSlotsFromGPUs(t *testing.T) {
	dir, path := project(t, gridYAML)
	f, _, _ := factory(dir)
	file, err := sweep.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := sweep.Build(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		infos []gpu.Info
		want  string
	}{
		{"no gpu: max_parallel on the cpu", nil, "cpu cpu cpu"},
		{"two roomy gpus: capped at 3", []gpu.Info{{Name: "A", MemoryFreeBytes: 40 * gpu.GiB}, {Name: "B", MemoryFreeBytes: 40 * gpu.GiB}}, "gpu 0 gpu 1 gpu 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := &Options{Factory: f, Manager: func() gpu.Manager { return gputest.New(c.infos...) }}
			slots, err := o.localSlots(pl)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range slots {
				got = append(got, s.String())
			}
			if strings.Join(got, " ") != c.want {
				t.Fatalf("slots %v, want %s", got, c.want)
			}
		})
	}
	// A GPU with almost no free memory refuses the sweep with the pre-flight's exit 3.
	o := &Options{Factory: f, Manager: func() gpu.Manager {
		return gputest.New(gpu.Info{Name: "busy", MemoryFreeBytes: 1 << 20, MemoryTotalBytes: 80 * gpu.GiB})
	}}
	if _, err := o.localSlots(pl); cmdutil.ExitCode(err) != cmdutil.ExitNoFit {
		t.Fatalf("busy gpu: %v", err)
	}
}

func TestFlags(t *testing.T) {
	f, _, _ := factory(t.TempDir())
	var got *Options
	cmd := NewCmdSweep(f, func(o *Options) error { got = o; return nil })
	cmd.SetArgs([]string{"s.yaml", "--dry-run", "--detach", "--retry-failed", "--sweeps-dir", "/x"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.File != "s.yaml" || !got.DryRun || !got.Detach || !got.RetryFailed || got.SweepsDir != "/x" {
		t.Fatalf("options %+v", got)
	}

	var res *ResultsOptions
	cmd = NewCmdSweep(f, nil)
	cmd.RemoveCommand(cmd.Commands()...)
	parent := &Options{Factory: f}
	cmd.AddCommand(NewCmdResults(f, parent, func(o *ResultsOptions) error { res = o; return nil }))
	cmd.SetArgs([]string{"results", "abc", "--csv"})
	if err := cmd.Execute(); err != nil || res.ID != "abc" || !res.CSV {
		t.Fatalf("results: %v %+v", err, res)
	}
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs([]string{"results", "abc", "--csv", "--json"})
	if err := cmd.Execute(); cmdutil.ExitCode(err) != cmdutil.ExitInvalid {
		t.Fatalf("--csv --json: %v", err)
	}
}

func TestStatusAndResultsOfUnknownSweep(t *testing.T) {
	f, _, _ := factory(t.TempDir())
	parent := &Options{Factory: f}
	err := statusRun(context.Background(), &StatusOptions{Factory: f, Parent: parent, ID: "nope"})
	if cmdutil.ExitCode(err) != cmdutil.ExitInvalid || !strings.Contains(err.Error(), "no such sweep") {
		t.Fatalf("status: %v", err)
	}
	err = resultsRun(context.Background(), &ResultsOptions{Factory: f, Parent: parent, ID: "../etc"})
	if cmdutil.ExitCode(err) != cmdutil.ExitInvalid {
		t.Fatalf("results: %v", err)
	}
}

// TestDataCheckedPerPoint: points that sweep the data or max_length are checked with
// their own values, points that share them share one check, and one bad point stops
// the sweep before anything runs.
func TestDataCheckedPerPoint(t *testing.T) {
	var good strings.Builder
	for i := range 12 {
		fmt.Fprintf(&good, `{"messages":[{"role":"user","content":"q%d"},{"role":"assistant","content":"a%d"}]}`+"\n", i, i)
	}
	cases := []struct {
		name   string
		params string
		groups int    // distinct data checks
		fail   string // a line of the errors, when the check must fail
	}{
		{"lora only", "  lora.r: [4, 8, 16]\n", 1, ""},
		{"max_length", "  train.max_length: [64, 128]\n  lora.r: [4, 8]\n", 2, ""},
		{"bad second file", "  data.train: [good.jsonl, bad.jsonl]\n", 2, "bad.jsonl:2: not valid JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, path := project(t, "name: d\nbase: base.yaml\nparameters:\n"+c.params)
			bad := strings.Replace(good.String(), "\n", "\nnot json\n", 1)
			for name, body := range map[string]string{"good.jsonl": good.String(), "train.jsonl": good.String(), "bad.jsonl": bad,
				// A hub name: no tokenizer to run, the structural checks alone.
				"base.yaml": "name: t\nmodel: org/model\ndata:\n  train: train.jsonl\n  eval_split: 0.1\ntrain:\n  max_steps: 4\n"} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f, _, errOut := factory(dir)
			file, err := sweep.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			pl, err := sweep.Build(file, nil)
			if err != nil {
				t.Fatal(err)
			}
			o := &Options{Factory: f, File: path}
			checks, err := o.checkData(context.Background(), pl.Points, &runner.LaunchOptions{Python: "python3"}, nil)
			if c.fail != "" {
				if cmdutil.ExitCode(err) != cmdutil.ExitInvalid || !strings.Contains(errOut.String(), c.fail) ||
					!strings.Contains(errOut.String(), "checking the data of point(s) 1\n") {
					t.Fatalf("exit %d, %v; stderr:\n%s", cmdutil.ExitCode(err), err, errOut)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(checks) != len(pl.Points) {
				t.Fatalf("%d reports for %d points", len(checks), len(pl.Points))
			}
			distinct := map[string]bool{}
			for _, p := range pl.Points {
				distinct[string(checks[p.Index])] = true
			}
			// Reports differ by max_length only in their stats, so count the headers.
			if got := strings.Count(errOut.String(), "checking the data of point(s)"); c.groups > 1 && got != c.groups {
				t.Errorf("%d data checks, want %d:\n%s", got, c.groups, errOut)
			}
			if c.groups == 1 && (len(distinct) != 1 || strings.Contains(errOut.String(), "checking the data of")) {
				t.Errorf("points sharing the data were checked apart:\n%s", errOut)
			}
		})
	}
}
