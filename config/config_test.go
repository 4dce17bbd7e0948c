package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeConfig writes yaml into a temp dir holding train.jsonl and eval.jsonl.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"train.jsonl", "eval.jsonl"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(`{"messages":[]}`+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "model"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const base = `name: demo
model: ./model
data:
  train: train.jsonl
  eval: eval.jsonl
`

func TestDefaults(t *testing.T) {
	c, err := Load(writeConfig(t, base), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Resolved
	checks := []struct {
		name      string
		got, want any
	}{
		{"r", r.LoRA.R, 16},
		{"alpha", r.LoRA.Alpha, 32.0},
		{"dropout", r.LoRA.Dropout, 0.05},
		{"targets", strings.Join(r.LoRA.TargetModuleList(), ","), "q_proj,v_proj"},
		{"bias", r.LoRA.Bias, "none"},
		{"epochs", r.Train.Epochs, 3.0},
		{"lr", r.Train.LearningRate, 2e-4},
		{"batch", r.Train.BatchSize, 4},
		{"max_length", r.Train.MaxLength, 2048},
		{"max_steps", r.Train.MaxSteps, -1},
		{"quant", r.Quantization.Mode, "none"},
		{"precision", r.Train.Precision, "auto"},
		{"driver", c.DriverName, "local"},
		{"gpu", c.GPU, -1},
		{"model abs", r.Model.NameOrPath, filepath.Join(c.Dir, "model")},
		{"train abs", r.Data.Train, filepath.Join(c.Dir, "train.jsonl")},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

// Every invalid value is an error naming the key and the line it is on.
func TestInvalidValues(t *testing.T) {
	cases := []struct {
		name, yaml string
		sets       []string
		want       string // substring: "file:line:col: key: message"
	}{
		{"r zero", base + "lora:\n  r: 0\n", nil, ":7:3: lora.r: must be between 1 and 4096"},
		{"r negative", base + "lora:\n  r: -4\n", nil, ":7:3: lora.r: must be between 1 and 4096"},
		{"r not int", base + "lora:\n  r: big\n", nil, ":7:3: lora.r: must be an integer"},
		{"dropout one", base + "lora:\n  dropout: 1\n", nil, ":7:3: lora.dropout: must be in [0, 1)"},
		{"dropout negative", base + "lora:\n  dropout: -0.1\n", nil, "lora.dropout: must be in [0, 1)"},
		{"lr zero", base + "train:\n  learning_rate: 0\n", nil, ":7:3: train.learning_rate: must be > 0"},
		{"lr word", base + "train:\n  learning_rate: fast\n", nil, ":7:3: train.learning_rate: must be a number, not \"fast\""},
		{"lr word shown once", base + "train:\n  learning_rate: fast\n", []string{"lora.r=-1"}, "must be a number, not \"fast\"\n"},
		{"set lr word shown once", base, []string{"train.learning_rate=fast", "lora.r=-1"}, "--set: train.learning_rate: must be a number, not \"fast\"\n"},
		{"lr nan", base + "train:\n  learning_rate: .nan\n", nil, "train.learning_rate: must be a number"},
		{"epochs inf", base + "train:\n  epochs: .inf\n", nil, "train.epochs: must be a number"},
		{"seed negative", base + "train:\n  seed: -5\n", nil, ":7:3: train.seed: must be between 0 and 4294967295"},
		{"lr negative", base + "train:\n  learning_rate: -1e-4\n", nil, "train.learning_rate: must be > 0"},
		{"missing train file", "model: ./model\ndata:\n  train: nope.jsonl\n", nil, ":3:3: data.train: file"},
		{"train is dir", "model: ./model\ndata:\n  train: model\n", nil, "is a directory"},
		{"missing eval file", "model: ./model\ndata:\n  train: train.jsonl\n  eval: gone.jsonl\n", nil, ":4:3: data.eval: file"},
		{"eval split one", "model: ./model\ndata:\n  train: train.jsonl\n  eval_split: 1\n", nil, ":4:3: data.eval_split: must be between 0 and 1"},
		{"eval split zero", "model: ./model\ndata:\n  train: train.jsonl\n  eval_split: 0\n", nil, "data.eval_split: must be between 0 and 1"},
		{"eval and split", base + "  eval_split: 0.1\n", nil, "give data.eval or data.eval_split, not both"},
		{"no model", "data:\n  train: train.jsonl\n", nil, "model: is required"},
		{"missing model dir", "model: ./absent\ndata:\n  train: train.jsonl\n", nil, ":1:1: model: local model directory"},
		{"no train", "model: ./model\n", nil, "data.train: is required"},
		{"bad bias", base + "lora:\n  bias: some\n", nil, "lora.bias: must be none, all or lora_only"},
		{"bad targets", base + "lora:\n  target_modules: [q_proj, \"x;rm\"]\n", nil, "lora.target_modules[1]"},
		{"empty targets", base + "lora:\n  target_modules: []\n", nil, "lora.target_modules: must not be empty"},
		{"bad quant", base + "quantization: 3bit\n", nil, "quantization.mode: must be none, 4bit or 8bit"},
		{"bad precision", base + "train:\n  precision: fp8\n", nil, "train.precision"},
		{"bad scheduler", base + "train:\n  scheduler: wavy\n", nil, "train.scheduler"},
		{"batch zero", base + "train:\n  batch_size: 0\n", nil, "train.batch_size: must be > 0"},
		{"max_steps zero", base + "train:\n  max_steps: 0\n", nil, "train.max_steps: must be > 0"},
		{"bad name", "name: \"a/b\"\n" + base[len("name: demo\n"):], nil, ":1:1: name:"},
		{"bad env name", base + "env:\n  pass: [\"HF TOKEN\"]\n", nil, "env.pass[0]"},
		{"bad driver name", base + "driver:\n  name: \"Slurm;rm\"\n", nil, "driver.name"},
		{"unknown key", base + "lora:\n  rank: 8\n", nil, ":7:3: lora.rank: unknown key (did you mean \"r\"?)"},
		{"unknown top key", base + "trian:\n  epochs: 1\n", nil, ":6:1: trian: unknown key (did you mean \"train\"?)"},
		{"unknown train key", base + "train:\n  learning_rat: 1\n", nil, "train.learning_rat: unknown key (did you mean \"learning_rate\"?)"},
		{"set bad value", base, []string{"lora.r=-1"}, "--set: lora.r: must be between 1 and 4096"},
		{"set unknown key", base, []string{"lora.rr=8"}, "--set: lora.rr: unknown key (did you mean \"r\"?)"},
		{"set no equals", base, []string{"lora.r"}, "want key=value"},
		{"unknown tracker", base + "train:\n  report_to: [tensorboard, comet]\n", nil, "train.report_to[1]: must be one of tensorboard, mlflow, wandb, got \"comet\""},
		{"tracker twice", base + "train:\n  report_to: [wandb, wandb]\n", nil, "train.report_to[1]: wandb is listed twice"},
		{"alias in YAML", base + "train:\n  lr: 1e-4\n", nil, "train.lr: unknown key (did you mean \"learning_rate\"?)"},
		{"alias in --set", base, []string{"train.lr=1e-4"}, "--set: train.lr: unknown key (did you mean \"learning_rate\"?)"},
		{"HF name in --set", base, []string{"train.gradient_accumulation_steps=4"}, "did you mean \"grad_accum\"?"},
		{"not yaml", "model: [unclosed\n", nil, "invalid YAML"},
		{"not a mapping", "- a\n- b\n", nil, "mapping"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConfig(t, tc.yaml)
			_, err := Load(p, tc.sets)
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.yaml)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	_, err := Load(writeConfig(t, base+"lora:\n  r: 0\n  rank: 8\n  dropout: 2\ntrain:\n  learning_rate: 0\n"), nil)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 4 {
		t.Fatalf("want 4 problems (an unknown key and three bad values), got %v", err)
	}
}

func TestOverrides(t *testing.T) {
	c, err := Load(writeConfig(t, base), []string{
		"train.learning_rate=1e-4", "lora.target_modules=[q_proj, k_proj]", "train.packing=true", "quantization.mode=4bit",
	})
	if err != nil {
		t.Fatal(err)
	}
	r := c.Resolved
	if r.Train.LearningRate != 1e-4 || !r.Train.Packing || r.Quantization.Mode != "4bit" ||
		strings.Join(r.LoRA.TargetModuleList(), ",") != "q_proj,k_proj" {
		t.Fatalf("overrides not applied: %+v", r)
	}
}

func TestQuantizationShorthandWithOverride(t *testing.T) {
	c, err := Load(writeConfig(t, base+"quantization: 4bit\n"), []string{"quantization.double_quant=false"})
	if err != nil {
		t.Fatal(err)
	}
	if q := c.Resolved.Quantization; q.Mode != "4bit" || q.DoubleQuant {
		t.Fatalf("override replaced the shorthand: %+v", q)
	}
}

func TestShorthands(t *testing.T) {
	c, err := Load(writeConfig(t, base+"quantization: 4bit\nlora:\n  target_modules: all-linear\ntrain:\n  assistant_only_loss: true\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Resolved.Quantization.Mode != "4bit" || !c.Resolved.Quantization.DoubleQuant || !c.Resolved.LoRA.AllLinear() || c.Resolved.Train.AssistantOnlyLoss != true {
		t.Fatalf("shorthands: %+v", c.Resolved)
	}
}

func TestHubModelStaysAnID(t *testing.T) {
	c, err := Load(writeConfig(t, "model: Qwen/Qwen2.5-0.5B-Instruct\ndata:\n  train: train.jsonl\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Resolved.Model.NameOrPath != "Qwen/Qwen2.5-0.5B-Instruct" {
		t.Fatal(c.Resolved.Model.NameOrPath)
	}
}

func TestDriverSections(t *testing.T) {
	c, err := Load(writeConfig(t, base+"driver:\n  name: slurm\n  slurm:\n    partition: gpu\n  docker:\n    image: x\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.DriverName != "slurm" || string(c.DriverOptions) != `{"partition":"gpu"}` {
		t.Fatalf("driver %s options %s", c.DriverName, c.DriverOptions)
	}
}

func TestDidYouMean(t *testing.T) {
	cases := map[string]string{"rank": "r", "lerning_rate": "learning_rate", "epoch": "epochs", "zzzzzz": ""}
	cands := []string{"r", "alpha", "learning_rate", "epochs"}
	for in, want := range cases {
		if got := didYouMean(in, cands); got != want {
			t.Errorf("didYouMean(%q) = %q, want %q", in, got, want)
		}
	}
}
