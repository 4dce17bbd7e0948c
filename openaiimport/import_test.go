package openaiimport

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loractl/loractl/config"
)

// Fixtures in each documented OpenAI format, written by the tests.

var weatherTool = map[string]any{"type": "function", "function": map[string]any{"name": "get_weather",
	"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}}}

// chatRows returns n OpenAI chat rows cycling through the supervised shapes: weights,
// tools with tool_calls (null content, JSON-string arguments, text parts), and the legacy
// functions / function_call form.
func chatRows(n, offset int) []any {
	var rows []any
	for k := offset; k < offset+n; k++ {
		switch k % 3 {
		case 0:
			rows = append(rows, map[string]any{"messages": []any{
				map[string]any{"role": "system", "content": "You answer in one word."},
				map[string]any{"role": "user", "content": fmt.Sprintf("question %d", k)},
				map[string]any{"role": "assistant", "content": "draft", "weight": 0},
				map[string]any{"role": "user", "content": "again"},
				map[string]any{"role": "assistant", "content": fmt.Sprintf("answer%d", k), "weight": 1}}})
		case 1:
			args, _ := json.Marshal(map[string]any{"city": "Paris", "day": k})
			rows = append(rows, map[string]any{"messages": []any{
				map[string]any{"role": "system", "content": "You answer in one word."},
				map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": fmt.Sprintf("weather on day %d?", k)}}},
				map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{"id": "call_a", "type": "function",
					"function": map[string]any{"name": "get_weather", "arguments": string(args)}}}},
				map[string]any{"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
				map[string]any{"role": "assistant", "content": fmt.Sprintf("sunny%d", k)}},
				"tools": []any{weatherTool}, "parallel_tool_calls": false})
		default:
			rows = append(rows, map[string]any{"messages": []any{
				map[string]any{"role": "system", "content": "You answer in one word."},
				map[string]any{"role": "user", "content": fmt.Sprintf("rain on day %d?", k)},
				map[string]any{"role": "assistant", "content": nil, "function_call": map[string]any{"name": "get_weather", "arguments": `{"city": "Oslo"}`}},
				map[string]any{"role": "function", "name": "get_weather", "content": "rain"},
				map[string]any{"role": "assistant", "content": fmt.Sprintf("rain%d", k)}},
				"functions": []any{weatherTool["function"]}})
		}
	}
	return rows
}

var (
	imageRow = map[string]any{"messages": []any{
		map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "what is this?"},
			map[string]any{"type": "image_url", "image_url": map[string]any{"url": "data:image/png;base64,iVBORw0KGgo="}}}},
		map[string]any{"role": "assistant", "content": "a cat"}}}
	preferenceRow = map[string]any{"input": map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi"}}},
		"preferred_output":     []any{map[string]any{"role": "assistant", "content": "Hello!"}},
		"non_preferred_output": []any{map[string]any{"role": "assistant", "content": "go away"}}}
)

func writeJSONL(t *testing.T, path string, rows ...any) string {
	t.Helper()
	var b strings.Builder
	for _, r := range rows {
		if s, ok := r.(string); ok {
			b.WriteString(s + "\n")
			continue
		}
		line, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func jobJSON(hyper string, extra string) string {
	return `{"object":"fine_tuning.job","id":"ftjob-abc123","model":"gpt-4o-mini-2024-07-18","fine_tuned_model":"ft:gpt-4o-mini-2024-07-18:acme:weather:9xYz",
	"status":"succeeded","training_file":"file-train1","seed":4242,"suffix":"weather bot",` + extra +
		`"method":{"type":"supervised","supervised":{"hyperparameters":` + hyper + `}}}`
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func TestImportWritesACheckedRunDirectory(t *testing.T) {
	dir := t.TempDir()
	train := writeJSONL(t, filepath.Join(dir, "train.jsonl"), append(chatRows(30, 0), imageRow, "")...)
	writeJSONL(t, filepath.Join(dir, "file-valid1.jsonl"), chatRows(6, 100)...) // found by the job's validation_file
	job := filepath.Join(dir, "job.json")
	if err := os.WriteFile(job, []byte(jobJSON(`{"n_epochs":4,"batch_size":6,"learning_rate_multiplier":1.5}`, `"validation_file":"file-valid1",`)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	res, err := Import(context.Background(), Options{TrainingFile: train, JobFile: job, GPUMemory: 24 << 30, SkipUnsupported: true, OutDir: out})
	if err != nil {
		t.Fatal(err)
	}
	// Every row that trains is kept, in order; the image row is dropped and counted.
	got := lines(t, filepath.Join(out, TrainFile))
	if len(got) != 30 || res.Train.Rows != 30 || res.Train.Skipped != 1 || res.Train.SkippedLines[0] != 31 {
		t.Fatalf("train rows %d, counts %+v", len(got), res.Train)
	}
	for k, l := range got {
		var row struct {
			Messages []map[string]any `json:"messages"`
			Tools    []any            `json:"tools"`
		}
		if err := json.Unmarshal([]byte(l), &row); err != nil {
			t.Fatal(err)
		}
		last := row.Messages[len(row.Messages)-1]["content"]
		if want := []string{"answer", "sunny", "rain"}[k%3] + fmt.Sprint(k); last != want {
			t.Errorf("row %d ends with %q, want %q (order lost?)", k, last, want)
		}
		if k%3 != 0 && len(row.Tools) != 1 {
			t.Errorf("row %d: tools %v", k, row.Tools)
		}
		for _, m := range row.Messages {
			if _, ok := m["content"].(string); !ok {
				t.Errorf("row %d: content %v is not a string", k, m["content"])
			}
			if m["role"] == "function" || m["function_call"] != nil {
				t.Errorf("row %d: legacy form left: %v", k, m)
			}
		}
	}
	if c := res.Train; c.LegacyFunctions != 10 || c.Tools != 20 || c.ToolCalls != 20 || c.ArgumentsDecoded != 20 || c.Weight0Turns != 10 || c.NullContent != 20 || c.ParallelToolCalls != 10 || c.Unchanged != 10 {
		t.Errorf("counts %+v", c)
	}
	if ev := lines(t, filepath.Join(out, EvalFile)); len(ev) != 6 || !strings.Contains(res.ValidationFrom, "file-valid1") {
		t.Errorf("eval rows %d (from %q)", len(ev), res.ValidationFrom)
	}
	if res.Check == nil || res.Check.HasErrors() || res.Check.Stats.Eval == nil {
		t.Fatalf("data check: %+v", res.Check)
	}
	// The config loads, with every mapped value.
	cfg, err := config.Load(filepath.Join(out, ConfigFile), nil)
	if err != nil {
		t.Fatalf("the written config does not load: %v", err)
	}
	r := cfg.Resolved
	tr := r.Train
	if r.Name != "weather-bot" || tr.Epochs != 4 || tr.BatchSize*tr.GradAccum != 6 || tr.LearningRate != 1.5e-4 || tr.Seed != 4242 || tr.MaxLength != 512 {
		t.Errorf("resolved %+v / %+v", r, tr)
	}
	if r.Data.Train != filepath.Join(out, TrainFile) || r.Data.Eval != filepath.Join(out, EvalFile) {
		t.Errorf("data paths %q %q", r.Data.Train, r.Data.Eval)
	}
	if r.Model.NameOrPath != res.Model || res.Proposals[0].Model != res.Model || !res.Proposals[0].InClass {
		t.Errorf("model %q, proposals %+v", r.Model.NameOrPath, res.Proposals)
	}
	yaml, _ := os.ReadFile(filepath.Join(out, ConfigFile))
	for _, want := range []string{"n_epochs = 4", "batch_size = 6", "learning_rate_multiplier = 1.5", "job seed", "job suffix", "file-valid1", "gpt-4o-mini-2024-07-18"} {
		if !strings.Contains(string(yaml), want) {
			t.Errorf("loractl.yaml does not say where %q came from:\n%s", want, yaml)
		}
	}
	// Nothing is left beside the output.
	if entries, _ := os.ReadDir(dir); len(entries) != 4 {
		t.Errorf("temp files left: %v", entries)
	}

	// Again without --force: refused, the directory untouched; with it: replaced.
	before, _ := os.ReadFile(filepath.Join(out, ConfigFile))
	_, err = Import(context.Background(), Options{TrainingFile: train, JobFile: job, Model: "Qwen/Qwen2.5-0.5B-Instruct", SkipUnsupported: true, OutDir: out})
	if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("existing dir: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(out, ConfigFile)); string(after) != string(before) {
		t.Error("the existing directory changed without --force")
	}
	res, err = Import(context.Background(), Options{TrainingFile: train, JobFile: job, Model: "Qwen/Qwen2.5-0.5B-Instruct", SkipUnsupported: true, OutDir: out, Force: true})
	if err != nil || res.ModelFrom != "--model" || res.Estimate == nil {
		t.Fatalf("--force: %+v %v", res, err)
	}
	if after, _ := os.ReadFile(filepath.Join(out, ConfigFile)); !strings.Contains(string(after), `model: "Qwen/Qwen2.5-0.5B-Instruct"`) {
		t.Errorf("not replaced:\n%s", after)
	}
}

func TestImportAutoHyperparametersAndNoJob(t *testing.T) {
	dir := t.TempDir()
	train := writeJSONL(t, filepath.Join(dir, "train.jsonl"), chatRows(20, 0)...)
	job := filepath.Join(dir, "job.json")
	if err := os.WriteFile(job, []byte(jobJSON(`{"n_epochs":"auto","batch_size":"auto","learning_rate_multiplier":"auto"}`, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, jobFile := range []string{job, ""} {
		out := filepath.Join(t.TempDir(), "a", "b", "out") // missing parents are made
		res, err := Import(context.Background(), Options{TrainingFile: train, JobFile: jobFile, Model: "Qwen/Qwen2.5-0.5B-Instruct", OutDir: out})
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(res.Config, nil)
		if err != nil {
			t.Fatal(err)
		}
		tr := cfg.Resolved.Train
		// 20 examples: OpenAI's rule gives 100/20 = 5 epochs; batch 4; loractl's LR.
		if tr.Epochs != 5 || tr.BatchSize*tr.GradAccum != 4 || tr.LearningRate != DefaultLearningRate || cfg.Resolved.Data.Eval != "" {
			t.Errorf("job %q: %+v", jobFile, tr)
		}
		if res.Check.Warning("no_eval_set") == nil {
			t.Errorf("no warning about the missing eval set: %+v", res.Check.Warnings)
		}
	}
}

// TestImportRefuses: bad inputs exit 2 (ErrInput) with the file, the line and what was
// expected, and nothing is written.
func TestImportRefuses(t *testing.T) {
	dir := t.TempDir()
	good := writeJSONL(t, filepath.Join(dir, "good.jsonl"), chatRows(12, 0)...)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notAJob := write("file.json", `{"object":"file","id":"file-abc","purpose":"fine-tune","filename":"train.jsonl"}`)
	needsValid := write("job-valid.json", jobJSON(`{"n_epochs":3}`, `"validation_file":"file-missing9",`))
	alpaca := writeJSONL(t, filepath.Join(dir, "alpaca.jsonl"), `{"instruction":"a","input":"","output":"b"}`)
	legacy := writeJSONL(t, filepath.Join(dir, "legacy.jsonl"), append(chatRows(3, 0), map[string]any{"prompt": "a ->", "completion": " b"})...)
	dpo := writeJSONL(t, filepath.Join(dir, "dpo.jsonl"), preferenceRow, preferenceRow)
	images := writeJSONL(t, filepath.Join(dir, "images.jsonl"), append(chatRows(12, 0), imageRow)...)
	broken := writeJSONL(t, filepath.Join(dir, "broken.jsonl"), append(append(chatRows(5, 0), "",
		`{"messages":[{"role":"user","content":"x"},{"role":"asistant","content":"y"}]}`), chatRows(7, 5)...)...)

	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{"not a job", Options{TrainingFile: good, JobFile: notAJob}, []string{"file.json", `"file" is not a fine-tuning job`}},
		{"validation file named by the job, not given", Options{TrainingFile: good, JobFile: needsValid}, []string{"file-missing9", "--validation-file"}},
		{"Alpaca", Options{TrainingFile: alpaca}, []string{"alpaca.jsonl:1", "Alpaca", `{"messages"`, "loractl data convert"}},
		{"legacy prompt/completion after chat rows", Options{TrainingFile: legacy}, []string{"legacy.jsonl:4", "prompt/completion"}},
		{"preference rows", Options{TrainingFile: dpo}, []string{"dpo.jsonl", "2 preference rows", "lines 1, 2", "DPO"}},
		{"image rows", Options{TrainingFile: images}, []string{"images.jsonl:13", "image_url", "--skip-unsupported"}},
		{"data check errors at the input's lines", Options{TrainingFile: broken}, []string{"broken.jsonl:7", "unrecognized_role", "messages[1].role"}},
		{"missing training file", Options{TrainingFile: filepath.Join(dir, "nope.jsonl")}, []string{"nope.jsonl"}},
		{"a directory as the training file", Options{TrainingFile: dir}, []string{dir}},
		{"bad validation file", Options{TrainingFile: good, ValidationFile: alpaca}, []string{"alpaca.jsonl:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			tt.opts.OutDir = filepath.Join(parent, "new", "out") // missing parents are not made either
			tt.opts.Model = "Qwen/Qwen2.5-0.5B-Instruct"
			_, err := Import(context.Background(), tt.opts)
			if !errors.Is(err, ErrInput) {
				t.Fatalf("error %v, want an input error", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 0 {
				t.Errorf("written on error: %v", entries)
			}
		})
	}

	// --force never replaces a directory that holds an input.
	holder := filepath.Join(dir, "holder")
	if err := os.MkdirAll(holder, 0o755); err != nil {
		t.Fatal(err)
	}
	in := writeJSONL(t, filepath.Join(holder, "train.jsonl"), chatRows(12, 0)...)
	if _, err := Import(context.Background(), Options{TrainingFile: in, Model: "Qwen/Qwen2.5-0.5B-Instruct", OutDir: holder, Force: true}); !errors.Is(err, ErrInput) {
		t.Errorf("replacing the input's directory: %v", err)
	}
	if _, err := os.Stat(in); err != nil {
		t.Errorf("input lost: %v", err)
	}
}

func TestImportNoFit(t *testing.T) {
	dir := t.TempDir()
	train := writeJSONL(t, filepath.Join(dir, "train.jsonl"), chatRows(12, 0)...)
	out := filepath.Join(dir, "out")
	_, err := Import(context.Background(), Options{TrainingFile: train, GPUMemory: 512 << 20, OutDir: out})
	if !errors.Is(err, ErrNoFit) {
		t.Fatalf("512 MiB: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("written without a fit: %v", err)
	}
}

func TestImportCancelled(t *testing.T) {
	dir := t.TempDir()
	train := writeJSONL(t, filepath.Join(dir, "train.jsonl"), chatRows(5000, 0)...)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	parent := t.TempDir()
	_, err := Import(ctx, Options{TrainingFile: train, Model: "Qwen/Qwen2.5-0.5B-Instruct", OutDir: filepath.Join(parent, "out")})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}

// TestImportForceKeepsOtherFiles: --force replaces a directory an earlier import wrote,
// never one that holds anything else (a mistyped -o, a home or project directory): the
// replace would delete it with no way back.
func TestImportForceKeepsOtherFiles(t *testing.T) {
	dir := t.TempDir()
	train := writeJSONL(t, filepath.Join(dir, "train.jsonl"), chatRows(12, 0)...)
	for _, extra := range []string{"notes.txt", "runs/r1/manifest.json"} {
		t.Run(extra, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "project")
			keep := filepath.Join(out, extra)
			if err := os.MkdirAll(filepath.Dir(keep), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(keep, []byte("precious"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Import(context.Background(), Options{TrainingFile: train, Model: "Qwen/Qwen2.5-0.5B-Instruct", OutDir: out, Force: true})
			if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "an import did not write") {
				t.Errorf("--force over a directory with %s: %v", extra, err)
			}
			if b, err := os.ReadFile(keep); err != nil || string(b) != "precious" {
				t.Errorf("%s lost: %v", extra, err)
			}
		})
	}
	// A directory an earlier import wrote is still replaced.
	out := filepath.Join(dir, "again")
	for range 2 {
		if _, err := Import(context.Background(), Options{TrainingFile: train, Model: "Qwen/Qwen2.5-0.5B-Instruct", OutDir: out, Force: true}); err != nil {
			t.Fatalf("--force over an earlier import: %v", err)
		}
	}
}
