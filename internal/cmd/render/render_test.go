package render

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/slurm"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/iostreams"
)

var update = flag.Bool("update", false, "rewrite golden files")

func factory(t *testing.T) *cmdutil.Factory {
	io, _, _, _ := iostreams.Test()
	l := zerolog.Nop()
	runs := filepath.Join(t.TempDir(), "runs")
	return &cmdutil.Factory{IO: io, Log: &l, RunsDir: func() string { return runs }}
}

// The resolved config for each example is pinned by a golden file; the temp dir is
// written as $DIR so the files are stable.
func TestRenderGolden(t *testing.T) {
	cases := []struct {
		name, yaml string
		sets       []string
	}{
		{"defaults", "name: demo\nmodel: ./model\ndata:\n  train: train.jsonl\n  eval: eval.jsonl\n", nil},
		{"qlora-all-linear", "name: q\nmodel: org/base-model\ndata:\n  train: train.jsonl\n  eval_split: 0.1\nquantization: 4bit\nlora:\n  r: 64\n  alpha: 16\n  target_modules: all-linear\n  use_rslora: true\ntrain:\n  max_steps: 500\n  precision: bf16\n", []string{"train.learning_rate=1e-4", "train.grad_accum=8"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range []string{"train.jsonl", "eval.jsonl"} {
				if err := os.WriteFile(filepath.Join(dir, f), []byte("{}\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Mkdir(filepath.Join(dir, "model"), 0o755); err != nil {
				t.Fatal(err)
			}
			cfg := filepath.Join(dir, "c.yaml")
			if err := os.WriteFile(cfg, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}

			f := factory(t)
			if err := renderRun(&Options{Factory: f, Config: cfg, Sets: tc.sets}); err != nil {
				t.Fatal(err)
			}
			got := strings.ReplaceAll(f.IO.Out.(interface{ String() string }).String(), dir, "$DIR")
			golden := filepath.Join("testdata", tc.name+".json")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if got != string(want) {
				t.Errorf("render differs from %s:\n%s", golden, got)
			}
			if _, err := os.Stat(f.RunsDir()); !os.IsNotExist(err) {
				t.Error("render wrote to the run store")
			}
		})
	}
}

func TestRenderInvalidIsExit2(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte("model: x\ndata:\n  train: missing.jsonl\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := factory(t)
	err := renderRun(&Options{Factory: f, Config: cfg})
	if cmdutil.ExitCode(err) != cmdutil.ExitInvalid || !strings.Contains(err.Error(), "c.yaml:3:3: data.train") {
		t.Fatalf("got %v (exit %d)", err, cmdutil.ExitCode(err))
	}
	err = renderRun(&Options{Factory: f, Config: filepath.Join(dir, "absent.yaml")})
	if cmdutil.ExitCode(err) != cmdutil.ExitInvalid {
		t.Fatalf("missing config: %v", err)
	}
}

// TestRenderFollowsConfigDriver: a Slurm config renders its batch script without
// --driver; --resolved still gives resolved.json.
func TestRenderFollowsConfigDriver(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "model"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte("name: s\nmodel: ./model\ndata:\n  train: train.jsonl\ndriver:\n  name: slurm\n  slurm:\n    partition: gpu\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		resolved bool
		want     string
	}{
		{"config's driver", false, "#SBATCH --partition=gpu"},
		{"--resolved", true, `"model"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := factory(t)
			f.Driver = func(name string) (driver.Driver, error) {
				if name != "slurm" {
					t.Fatalf("driver %q asked for", name)
				}
				return slurm.New(), nil
			}
			if err := renderRun(&Options{Factory: f, Config: cfg, Resolved: tt.resolved}); err != nil {
				t.Fatal(err)
			}
			if got := f.IO.Out.(interface{ String() string }).String(); !strings.Contains(got, tt.want) {
				t.Errorf("render printed:\n%s\nwant it to contain %q", got, tt.want)
			}
		})
	}
}
