package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad data stops `loractl train` before anything is launched: exit 2, the line and
// JSON path named, no run directory created.
func TestBadDataStopsBeforeLaunch(t *testing.T) {
	f := newFixture(t, "")
	bad := filepath.Join(f.dir, "bad.jsonl")
	src, err := os.ReadFile(filepath.Join(repoRoot(), "examples", "data", "train.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(src), "\n")
	lines[4] = `{"messages":[{"role":"user","content":"hi"},{"role":"robot","content":"beep"}]}` + "\n"
	if err := os.WriteFile(bad, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	r := f.loractl(t, "train", f.config, "--set", "data.train="+bad)
	if r.code != 2 {
		t.Fatalf("exit %d, want 2\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "bad.jsonl:5: messages[1].role") || !strings.Contains(r.stderr, "unrecognized_role") {
		t.Errorf("error does not name line and path:\n%s", r.stderr)
	}
	if entries, _ := os.ReadDir(f.runs); len(entries) != 0 {
		t.Errorf("a run dir was created for data that failed the check")
	}
}

// Data the tokenizer refuses (here the chat template raises on one row) stops `loractl
// train` after the token count, before any model is loaded: the trainer started ahead,
// which ran the count in its own interpreter, is dropped before it trains. The model's
// weights are garbage, so loading them would fail with another error and leave a run
// behind.
func TestTokenLevelRefusalLoadsNoModel(t *testing.T) {
	f := newFixture(t, "")
	model := filepath.Join(f.dir, "model")
	tpl := filepath.Join(model, "chat_template.jinja")
	b, err := os.ReadFile(tpl)
	if err != nil {
		t.Fatal(err)
	}
	raising := "{%- for m in messages -%}{%- if m['content'] == 'boom' -%}{{ raise_exception('no boom here') }}{%- endif -%}{%- endfor -%}" + string(b)
	if err := os.WriteFile(tpl, []byte(raising), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(model, "model.safetensors"), []byte("not weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(repoRoot(), "examples", "data", "train.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(src), "\n")
	lines[6] = `{"messages":[{"role":"user","content":"boom"},{"role":"assistant","content":"ok"}]}` + "\n"
	bad := filepath.Join(f.dir, "boom.jsonl")
	if err := os.WriteFile(bad, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	// A cache of its own: the count must run, not be replayed from an earlier test run.
	cmd := f.command(t, "train", f.config, "--set", "data.train="+bad, "--log-level", "debug")
	cmd.Env = append(cmd.Env, "LORACTL_CACHE="+filepath.Join(f.dir, "cache"))
	var errb strings.Builder
	cmd.Stderr = &errb
	err = cmd.Run()
	r := result{code: cmd.ProcessState.ExitCode(), stderr: errb.String()}
	if err != nil && r.code < 0 {
		t.Fatal(err)
	}
	if r.code != 2 {
		t.Fatalf("exit %d, want 2\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "in_trainer_process=true") {
		t.Errorf("the tokens were not counted in the warm trainer process:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "boom.jsonl:7") || !strings.Contains(r.stderr, "chat_template_error") || !strings.Contains(r.stderr, "no boom here") {
		t.Errorf("error does not name the line and the template's refusal:\n%s", r.stderr)
	}
	entries, _ := os.ReadDir(f.runs)
	for _, e := range entries {
		if e.Name() != ".trainer" {
			t.Errorf("the refused run left %s in the run store", e.Name())
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmdline, _ := os.ReadFile(p)
		if strings.Contains(string(cmdline), f.runs) {
			t.Errorf("a trainer process outlived the refused run: %s", strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
}
