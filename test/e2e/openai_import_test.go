package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loractl/loractl/run"
)

// TestImportOpenAITrains: OpenAI fine-tuning files as OpenAI documents them (weights,
// tools with null content and JSON-string arguments, the legacy functions form, an image
// row) and a job object go through `loractl import openai`; the written config renders
// and trains to completion on the CPU tiny model, the data check with the real tokenizer
// and chat template passing the converted rows.
func TestImportOpenAITrains(t *testing.T) {
	py := pythonOrSkip(t)
	dir := t.TempDir()
	tool := map[string]any{"type": "function", "function": map[string]any{"name": "get_weather",
		"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}}}
	cities := []string{"Paris", "Oslo", "Lima", "Cairo", "Quito", "Seoul"}
	write := func(name string, from, to int, extra ...string) {
		var b strings.Builder
		for i := from; i < to; i++ {
			c := cities[i%len(cities)]
			var row map[string]any
			switch i % 3 {
			case 0:
				row = map[string]any{"messages": []any{
					map[string]any{"role": "system", "content": "You are a weather bot."},
					map[string]any{"role": "user", "content": fmt.Sprintf("hello number %d", i)},
					map[string]any{"role": "assistant", "content": "hmm", "weight": 0},
					map[string]any{"role": "user", "content": "say it"},
					map[string]any{"role": "assistant", "content": fmt.Sprintf("Hello %d from %s.", i, c), "weight": 1}}}
			case 1:
				args, _ := json.Marshal(map[string]any{"city": c})
				row = map[string]any{"tools": []any{tool}, "parallel_tool_calls": false, "messages": []any{
					map[string]any{"role": "system", "content": "You are a weather bot."},
					map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": fmt.Sprintf("weather in %s number %d?", c, i)}}},
					map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{"id": "call_0", "type": "function",
						"function": map[string]any{"name": "get_weather", "arguments": string(args)}}}},
					map[string]any{"role": "tool", "tool_call_id": "call_0", "content": fmt.Sprintf("sunny %d", i)},
					map[string]any{"role": "assistant", "content": fmt.Sprintf("It is sunny in %s (%d).", c, i)}}}
			default:
				row = map[string]any{"functions": []any{tool["function"]}, "messages": []any{
					map[string]any{"role": "system", "content": "You are a weather bot."},
					map[string]any{"role": "user", "content": fmt.Sprintf("rain in %s number %d?", c, i)},
					map[string]any{"role": "assistant", "content": nil, "function_call": map[string]any{"name": "get_weather", "arguments": fmt.Sprintf(`{"city": %q}`, c)}},
					map[string]any{"role": "function", "name": "get_weather", "content": fmt.Sprintf("rain %d", i)},
					map[string]any{"role": "assistant", "content": fmt.Sprintf("It rains in %s (%d).", c, i)}}}
			}
			line, _ := json.Marshal(row)
			b.Write(line)
			b.WriteByte('\n')
		}
		for _, e := range extra {
			b.WriteString(e + "\n")
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	image := `{"messages":[{"role":"user","content":[{"type":"text","text":"what?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]},{"role":"assistant","content":"a cat"}]}`
	write("openai-train.jsonl", 0, 48, image)
	write("file-valid7.jsonl", 100, 109) // the job's validation_file, saved under its id
	job := `{"object":"fine_tuning.job","id":"ftjob-e2e","model":"gpt-4o-mini-2024-07-18","status":"succeeded",
	  "training_file":"file-train7","validation_file":"file-valid7","seed":7,"suffix":"weather",
	  "method":{"type":"supervised","supervised":{"hyperparameters":{"n_epochs":1,"batch_size":8,"learning_rate_multiplier":"auto"}}}}`
	if err := os.WriteFile(filepath.Join(dir, "job.json"), []byte(job), 0o644); err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(dir, "model") // built below from the imported data's words
	f := &fixture{dir: dir, python: py, runs: filepath.Join(dir, "runs")}
	r := f.loractl(t, "import", "openai", "--training-file", "openai-train.jsonl", "--job", "job.json",
		"--model", model, "--skip-unsupported", "-o", "imported")
	if r.code != 0 {
		t.Fatalf("import: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"48 rows", "16 legacy functions rows converted to tools", "1 rows with images skipped (lines 49)", "Data check: 48 examples (eval: 9), 0 errors"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("import output lacks %q:\n%s", want, r.stdout)
		}
	}
	out := filepath.Join(dir, "imported")
	cmd := exec.Command(py, filepath.Join(repoRoot(), "python", "make_tiny_model.py"), model, "--tool-template",
		"--data", filepath.Join(out, "train.jsonl"), "--data", filepath.Join(out, "eval.jsonl"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make_tiny_model: %v\n%s", err, b)
	}
	// With the model in place, a second import counts with its tokenizer and chat template.
	r = f.loractl(t, "import", "openai", "--training-file", "openai-train.jsonl", "--job", "job.json",
		"--model", model, "--skip-unsupported", "-o", "imported-exact")
	if r.code != 0 || strings.Contains(r.stdout, "(estimated") || !strings.Contains(r.stdout, "tokens (the model's tokenizer)") ||
		!strings.Contains(r.stdout, "chat template  generation markers; ends assistant turns with") {
		t.Fatalf("import with the model's tokenizer: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	config := filepath.Join(out, "loractl.yaml")
	r = f.loractl(t, "render", config)
	if r.code != 0 {
		t.Fatalf("render: exit %d\n%s", r.code, r.stderr)
	}
	var resolved struct {
		Name  string `json:"name"`
		Train struct {
			Epochs       float64 `json:"epochs"`
			BatchSize    int     `json:"batch_size"`
			GradAccum    int     `json:"grad_accum"`
			LearningRate float64 `json:"learning_rate"`
			Seed         int     `json:"seed"`
		} `json:"train"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &resolved); err != nil {
		t.Fatalf("render output: %v\n%s", err, r.stdout)
	}
	tr := resolved.Train
	if resolved.Name != "weather" || tr.Epochs != 1 || tr.BatchSize*tr.GradAccum != 8 || tr.LearningRate != 2e-4 || tr.Seed != 7 {
		t.Fatalf("resolved: %+v", resolved)
	}
	// A few steps at a rate the tiny model learns at: the point is the whole path.
	r = f.loractl(t, "train", config, "--json", "--set", "train.max_steps=6", "--set", "train.learning_rate=2e-2",
		"--set", "train.gradient_checkpointing=false", "--set", "train.save_steps=6")
	if r.code != 0 {
		t.Fatalf("train: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	_, final := jsonLines(t, r.stdout)
	m, err := run.ReadManifest(filepath.Join(f.runs, final["run_id"].(string)))
	if err != nil || m.State != run.StateCompleted || m.Result == nil {
		t.Fatalf("manifest: %+v %v", m, err)
	}
	if _, err := os.Stat(filepath.Join(f.runs, final["run_id"].(string), "adapter", "adapter_model.safetensors")); err != nil {
		t.Errorf("no adapter: %v", err)
	}
}
