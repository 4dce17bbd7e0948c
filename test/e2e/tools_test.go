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

// TestToolCallingData: tool-calling chat data (a row's tools, an assistant turn that
// only calls a tool, a tool result) goes through the real binary: the data check with
// the real tokenizer passes it, the trainer renders the calls with the chat template
// and trains, and the adapter is adopted. One row with a weight-0 turn rides along.
func TestToolCallingData(t *testing.T) {
	py := pythonOrSkip(t)
	dir := t.TempDir()
	tools := []map[string]any{{"type": "function", "function": map[string]any{"name": "get_weather",
		"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}}}}
	cities := []string{"Paris", "Oslo", "Lima", "Cairo", "Quito", "Seoul", "Delhi", "Rome"}
	write := func(name string, from, to int) string {
		var b strings.Builder
		for i := from; i < to; i++ {
			c := cities[i%len(cities)]
			answer := map[string]any{"role": "assistant", "content": fmt.Sprintf("It is sunny in %s (%d).", c, i)}
			msgs := []map[string]any{
				{"role": "system", "content": "You are a weather bot."},
				{"role": "user", "content": fmt.Sprintf("weather in %s number %d?", c, i)},
				{"role": "assistant", "content": "", "tool_calls": []map[string]any{{"type": "function",
					"function": map[string]any{"name": "get_weather", "arguments": map[string]any{"city": c}}}}},
				{"role": "tool", "tool_call_id": "call0", "content": fmt.Sprintf("sunny %d", i)},
				answer,
			}
			if i == from {
				msgs[2]["weight"] = 0 // the call is context here; the answer is the target
			}
			line, _ := json.Marshal(map[string]any{"tools": tools, "messages": msgs})
			b.Write(line)
			b.WriteByte('\n')
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	train, eval := write("train.jsonl", 0, 64), write("eval.jsonl", 100, 110)
	cmd := exec.Command(py, filepath.Join(repoRoot(), "python", "make_tiny_model.py"), filepath.Join(dir, "model"),
		"--tool-template", "--data", train, "--data", eval)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make_tiny_model: %v\n%s", err, out)
	}
	cfg := "name: tools\nmodel: ./model\ndata:\n  train: " + train + "\n  eval: " + eval +
		"\nlora: {r: 8, target_modules: all-linear}\ntrain: {max_steps: 24, batch_size: 8, max_length: 128, learning_rate: 2.0e-2, warmup: 0, logging_steps: 4, save_steps: 24, gradient_checkpointing: false}\n"
	f := &fixture{dir: dir, python: py, config: filepath.Join(dir, "run.yaml"), runs: filepath.Join(dir, "runs")}
	if err := os.WriteFile(f.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r := f.loractl(t, "train", f.config, "--json")
	if r.code != 0 {
		t.Fatalf("train on tool-calling data: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	_, final := jsonLines(t, r.stdout)
	m, err := run.ReadManifest(filepath.Join(f.runs, final["run_id"].(string)))
	if err != nil || m.State != run.StateCompleted || m.Result == nil || m.Result.Improved == nil || !*m.Result.Improved {
		t.Fatalf("manifest: %+v %v", m, err)
	}
	var dc struct {
		Warnings []struct{ Code string } `json:"warnings"`
		Stats    struct {
			Tokens struct {
				Method string `json:"method"`
			} `json:"tokens"`
		} `json:"stats"`
	}
	if err := json.Unmarshal(m.DataCheck, &dc); err != nil || dc.Stats.Tokens.Method != "tokenizer" {
		t.Errorf("data check in the manifest: %s (%v)", m.DataCheck, err)
	}
	for _, w := range dc.Warnings {
		if w.Code == "labels_truncated_away" || w.Code == "missing_eos_in_template" {
			t.Errorf("unexpected data-check warning %s", w.Code)
		}
	}
}
