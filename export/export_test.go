package export

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/run/runtest"
)

// fakeRun writes a run dir with a manifest, resolved.json, an adapter and checkpoints
// (8 complete, 16 without its marker), and a base model dir of weightBytes bytes.
func fakeRun(t *testing.T, weightBytes int64) (string, *run.Manifest) {
	t.Helper()
	dir := t.TempDir()
	runDir := filepath.Join(dir, "runs", "r-1")
	base := filepath.Join(dir, "base")
	for _, d := range []string{filepath.Join(runDir, "adapter"), filepath.Join(runDir, "checkpoints", "checkpoint-8"),
		filepath.Join(runDir, "checkpoints", "checkpoint-16"), base} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path, s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(runDir, run.ResolvedFile), `{"model":{"name_or_path":"`+base+`","revision":""},"lora":{"r":24}}`)
	for _, d := range []string{"adapter", "checkpoints/checkpoint-8", "checkpoints/checkpoint-16"} {
		write(filepath.Join(runDir, d, "adapter_config.json"), "{}")
		write(filepath.Join(runDir, d, "adapter_model.safetensors"), "x")
	}
	runtest.Checkpoint(t, filepath.Join(runDir, "checkpoints", "checkpoint-8"), 8)
	write(filepath.Join(base, "config.json"), `{"dtype":"bfloat16"}`)
	f, err := os.Create(filepath.Join(base, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(weightBytes); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return runDir, &run.Manifest{RunID: "r-1", Name: "r", State: run.StateCompleted}
}

func TestRefusals(t *testing.T) {
	runDir, m := fakeRun(t, 1<<20)
	out := filepath.Join(filepath.Dir(filepath.Dir(runDir)), "out")
	existing := filepath.Join(filepath.Dir(out), "existing")
	if err := os.Mkdir(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	plenty := func(string) (uint64, error) { return 1 << 40, nil }
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no output", Options{}, "output directory is required"},
		{"bad format", Options{Out: out, Format: "onnx"}, `--format "onnx"`},
		{"bad quant", Options{Out: out, Format: "gguf", GGUFQuant: "q2"}, `--gguf-quant "q2"`},
		{"quant without gguf", Options{Out: out, GGUFQuant: "q8_0"}, "--gguf-quant is for --format gguf"},
		{"exists", Options{Out: existing}, "pass --force"},
		{"missing checkpoint", Options{Out: out, Checkpoint: 4}, "no checkpoint 4 (complete checkpoints: 8)"},
		{"incomplete checkpoint", Options{Out: out, Checkpoint: 16}, "checkpoint 16 is not complete"},
		{"too little disk", Options{Out: out, Merge: true, FreeBytes: func(string) (uint64, error) { return 1 << 20, nil }}, "needs about 33.0 MiB"},
		{"gguf too little disk", Options{Out: out, Format: "gguf", FreeBytes: func(string) (uint64, error) { return 33 << 20, nil }}, "gguf export needs about"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			o.RunDir, o.Manifest, o.Python = runDir, m, "/nonexistent/python"
			if o.FreeBytes == nil {
				o.FreeBytes = plenty
			}
			_, err := Run(context.Background(), o)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalid with %q", err, tt.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Error("the destination was created")
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".loractl-export-*")); len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}

	// No adapter: the message points at the newest complete checkpoint.
	if err := os.RemoveAll(filepath.Join(runDir, "adapter")); err != nil {
		t.Fatal(err)
	}
	_, err := Run(context.Background(), Options{RunDir: runDir, Manifest: m, Out: out, FreeBytes: plenty})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "has no adapter") || !strings.Contains(err.Error(), "--checkpoint 8") {
		t.Fatalf("no adapter: %v", err)
	}
}

func TestEstimate(t *testing.T) {
	runDir, _ := fakeRun(t, 1000<<20) // a bf16 base of 1000 MiB: 500M parameters
	b, err := baseModel(filepath.Join(runDir, run.ResolvedFile))
	if err != nil {
		t.Fatal(err)
	}
	ad := filepath.Join(runDir, "adapter")
	tests := []struct {
		mode, quant string
		want        int64
	}{
		{"adapter", "", 2 + 1 + slack},
		{"merge", "", 1000<<20 + slack},
		{"gguf", "f16", 2*(1000<<20) + slack},
		{"gguf", "q8_0", 1000<<20 + (500<<20)*34/32 + slack},
		{"gguf", "q4_k_m", 2*(1000<<20) + (500<<20)*34/32 + slack},
	}
	for _, tt := range tests {
		got, err := estimate(tt.mode, tt.quant, ad, b)
		if err != nil || got != tt.want {
			t.Errorf("%s %s: %d (%v), want %d", tt.mode, tt.quant, got, err, tt.want)
		}
	}
}

func TestReplaceKeepsOldUntilNewIsIn(t *testing.T) {
	dir := t.TempDir()
	out, tmp := filepath.Join(dir, "out"), filepath.Join(dir, ".tmp")
	for _, d := range []string{out, tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := replace(tmp, out); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(out, "f"))
	if string(b) != tmp {
		t.Errorf("out holds %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left: %v", entries)
	}
}

func TestServingAndCard(t *testing.T) {
	after, before, improved := 1.5, 2.5, true
	m := &run.Manifest{RunID: "acme-123", Name: "acme", State: run.StateCompleted, Seed: 7,
		Data:   []run.FileHash{{Role: "train", Path: "/d/train.jsonl", SHA256: "abc", Bytes: 10}},
		Result: &run.Result{Step: 9, EvalLossBefore: &before, EvalLossAfter: &after, Improved: &improved}}
	tests := []struct {
		mode string
		want []string
	}{
		{"adapter", []string{"vllm serve 'Org/Base model'", "--enable-lora", "--lora-modules acme=/srv/my-adapter", "--max-lora-rank 32",
			`"stop_token_ids": [7, 9]`, `"content": "Be \"nice\"."`}},
		{"merge", []string{"vllm serve /srv/my-adapter --served-model-name acme", `model="acme"`}},
		{"gguf", []string{"ollama create acme -f Modelfile", "llama-server -m /srv/my-adapter/model-q8_0.gguf --jinja", "11434"}},
	}
	for _, tt := range tests {
		c := cardData{Options: &Options{Manifest: m, SystemPrompt: `Be "nice".`, Version: "1.2.3"},
			Result: &Result{Mode: tt.mode, StopTokens: []string{"<eos>", "<eot>"}, StopIDs: []int{7, 9}, Probes: 2,
				GGUF: &GGUFRecord{File: "model-q8_0.gguf", Quant: "q8_0"}},
			Base: base{NameOrPath: "Org/Base model"}, Dir: "/srv/my-adapter", Rank: 24}
		s := c.serving()
		for _, w := range tt.want {
			if !strings.Contains(s, w) {
				t.Errorf("%s: SERVING.md lacks %q:\n%s", tt.mode, w, s)
			}
		}
		card := c.modelCard()
		lib := map[string]string{"adapter": "peft", "merge": "transformers", "gguf": "transformers"}[tt.mode]
		for _, w := range []string{"---\nbase_model: \"Org/Base model\"\nlibrary_name: " + lib + "\ntags:\n- loractl\n", "loractl 1.2.3",
			"loractl reproduce acme-123", "2.5000 (base) -> 1.5000 (adapter)", "| train | `train.jsonl` | `abc` | 10 |", "`<eos>`, `<eot>`"} {
			if !strings.Contains(card, w) {
				t.Errorf("%s: card lacks %q:\n%s", tt.mode, w, card)
			}
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"a/b-c.d": "a/b-c.d", "a b": "'a b'", "it's": `'it'\''s'`, "": "''", "$(x)": "'$(x)'"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
