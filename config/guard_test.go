package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestHostileFiles: files that are not one plain config are refused with the line
// that makes them so, before anything walks the decoded tree.
func TestHostileFiles(t *testing.T) {
	bomb := "model: ./model\ndata:\n  train: train.jsonl\nlora:\n  target_modules: &a0 [x, x, x, x, x, x, x, x, x]\n"
	prev := "a0"
	for i := 1; i <= 9; i++ {
		name := "a" + string(rune('0'+i))
		bomb += "  x" + name + ": &" + name + " [*" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + "]\n"
		prev = name
	}
	cases := []struct {
		name, yaml, want string
	}{
		{"alias bomb", bomb, "more than 100,000 values once the aliases"},
		{"two documents", base + "---\nlora:\n  r: 8\n", ":6:1: a second YAML document"},
		{"self-referential alias", base + "lora: &a\n  r: *a\n", "an alias refers to itself"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tc.yaml), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	// Anchors and aliases of ordinary size keep working.
	c, err := Load(writeConfig(t, base+"lora:\n  target_modules: &t [q_proj, v_proj]\n  r: &r 8\n  alpha: *r\n"), nil)
	if err != nil || c.Resolved.LoRA.Alpha != 8 {
		t.Errorf("an anchor and an alias: %v", err)
	}
}

func TestByteOrderMark(t *testing.T) {
	c, err := Load(writeConfig(t, "\xef\xbb\xbf"+base), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Resolved.Name != "demo" || !strings.HasPrefix(string(c.Source), "\xef\xbb\xbf") {
		t.Errorf("name %q; source kept as given: %v", c.Resolved.Name, strings.HasPrefix(string(c.Source), "\xef\xbb\xbf"))
	}
}

// TestEveryTypeErrorReported: several keys of the wrong type are all named, with
// their lines, and nothing about them is repeated as "required".
func TestEveryTypeErrorReported(t *testing.T) {
	yaml := "model: [a]\ndata:\n  train: train.jsonl\nlora:\n  r: \"x\"\n  dropout: 5\ntrain:\n  batch_size: \"y\"\n  packing: 3\n"
	_, err := Load(writeConfig(t, yaml), nil)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v", err)
	}
	got := map[string]string{}
	for _, e := range errs {
		got[e.Key] = e.Error()
	}
	for key, where := range map[string]string{"model": ":1:1:", "lora.r": ":5:3:", "lora.dropout": ":6:3:", "train.batch_size": ":8:3:", "train.packing": ":9:3:"} {
		if !strings.Contains(got[key], where) {
			t.Errorf("%s: %q, want it at %s", key, got[key], where)
		}
	}
	if strings.Contains(err.Error(), "is required") {
		t.Errorf("a wrong type repeated as missing:\n%v", err)
	}
}

// TestSetErrorsNameTheSet: a problem in a value given with --set is reported as
// --set, never at a line of the file that is fine.
func TestSetErrorsNameTheSet(t *testing.T) {
	cases := []struct {
		set, want string
	}{
		{"lora.target_modules=[q_proj, 1x]", "--set: lora.target_modules[1]"},
		{"lora={r: 0}", "--set: lora.r: must be between 1 and 4096"},
		{"lora={r: 1, bogus: 2}", "--set: lora.bogus: unknown key"},
		{"quantization=4bit", ""},
	}
	for _, tc := range cases {
		t.Run(tc.set, func(t *testing.T) {
			c, err := Load(writeConfig(t, base+"lora:\n  target_modules: [q_proj]\n"), []string{tc.set})
			if tc.want == "" {
				if err != nil || c.Resolved.Quantization.Mode != "4bit" {
					t.Fatalf("got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "run.yaml:") {
				t.Fatalf("got %v, want %q and no file line", err, tc.want)
			}
		})
	}
}

// TestDataMustBeRegularFiles: a pipe as data or a huge system prompt file is refused
// instead of hanging or filling memory.
func TestDataMustBeRegularFiles(t *testing.T) {
	p := writeConfig(t, base)
	dir := filepath.Dir(p)
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.jsonl"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.txt")
	if err := os.WriteFile(big, make([]byte, maxPromptBytes+1), 0o644); err != nil {
		t.Fatal(err)
	}
	for set, want := range map[string]string{
		"data.eval=fifo.jsonl":           "data.eval: " + filepath.Join(dir, "fifo.jsonl") + " is not a regular file",
		"data.system_prompt=@big.txt":    "larger than 1048576 bytes",
		"data.system_prompt=@/dev/zero":  "not a regular file",
		"data.system_prompt=@fifo.jsonl": "not a regular file",
		"train.batch_size=0":             "train.batch_size: must be > 0",
		"train.max_length=99999999999":   "train.max_length: must be at most",
	} {
		_, err := Load(p, []string{set})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: %v, want %q", set, err, want)
		}
		if set == "train.batch_size=0" && strings.Contains(err.Error(), "eval_batch_size") {
			t.Errorf("a derived key reported: %v", err)
		}
	}
}

func TestNameFromFile(t *testing.T) {
	for file, want := range map[string]string{
		"run.yaml": "run", "my run (v2).yaml": "my-run-v2", ".hidden.yaml": "hidden", "___.yaml": "run-___", "ü.yaml": "run-",
	} {
		got := nameFromFile("/x/" + file)
		if got != want && !(want == "run-" && nameRE.MatchString(got)) {
			t.Errorf("%s: %q, want %q", file, got, want)
		}
		if !nameRE.MatchString(got) {
			t.Errorf("%s: %q is not a valid name", file, got)
		}
	}
}

func TestAbsolutePathSets(t *testing.T) {
	wd, _ := os.Getwd()
	got := AbsolutePathSets([]string{"data.train=data/v2.jsonl", "model=./m", "model=Qwen/Qwen2.5-0.5B", "data.system_prompt=@p.txt",
		"data.system_prompt=Be brief.", "lora.r=8", "data.eval=/abs/e.jsonl", "python=python3", "python=venv/bin/python"})
	want := []string{`data.train="` + filepath.Join(wd, "data/v2.jsonl") + `"`, `model="` + filepath.Join(wd, "m") + `"`, "model=Qwen/Qwen2.5-0.5B",
		`data.system_prompt="@` + filepath.Join(wd, "p.txt") + `"`, "data.system_prompt=Be brief.", "lora.r=8", "data.eval=/abs/e.jsonl",
		"python=python3", `python="` + filepath.Join(wd, "venv/bin/python") + `"`}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%d: %s, want %s", i, got[i], want[i])
		}
	}
}

func TestEnvScalarsBecomeStrings(t *testing.T) {
	c, err := Load(writeConfig(t, base+"env:\n  set:\n    OMP_NUM_THREADS: 4\n    DEBUG: true\n    SCALE: 0.5\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Spec.Env.Set; s["OMP_NUM_THREADS"] != "4" || s["DEBUG"] != "true" || s["SCALE"] != "0.5" {
		t.Errorf("env.set %v", s)
	}
	if _, err := Load(writeConfig(t, base+"env:\n  set:\n    X: [1]\n"), nil); err == nil || !strings.Contains(err.Error(), "env.set") {
		t.Errorf("a list in env.set: %v", err)
	}
}

func TestEnvValuesAsWritten(t *testing.T) {
	c, err := Load(writeConfig(t, base+"env:\n  set:\n    ARCH: 8.0\n    VER: 1.10\n    MASK: 0755\n    ON: yes\n"), []string{"env.set.LR=1.0e-4"})
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"ARCH": "8.0", "VER": "1.10", "MASK": "0755", "LR": "1.0e-4"} {
		if got := c.Spec.Env.Set[k]; got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

// TestNoFalseRequired: a NaN or a bad driver section is one error, not also
// "model is required" for a config that sets it.
func TestNoFalseRequired(t *testing.T) {
	for name, yaml := range map[string]string{
		"nan":            base + "lora:\n  dropout: .nan\n",
		"driver section": base + "driver:\n  slurm: 5\n",
	} {
		_, err := Load(writeConfig(t, yaml), nil)
		var errs Errors
		if !errors.As(err, &errs) || len(errs) != 1 {
			t.Errorf("%s: %v, want exactly one problem", name, err)
		}
	}
}

func TestSetModelDirRelativeToWorkingDir(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.MkdirAll(filepath.Join("models", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	got := AbsolutePathSets([]string{"model=models/x", "model=org/name"})
	if want := `model="` + filepath.Join(dir, "models", "x") + `"`; got[0] != want {
		t.Errorf("%s, want %s", got[0], want)
	}
	if got[1] != "model=org/name" {
		t.Errorf("a hub id was rewritten: %s", got[1])
	}
}

func TestTypeErrorsShowTheValue(t *testing.T) {
	_, err := Load(writeConfig(t, base+"lora:\n  r: 1e30\n"), nil)
	if err == nil || !strings.Contains(err.Error(), `lora.r: must be an integer, not string "1e30"`) {
		t.Errorf("got %v", err)
	}
}

func TestNaNInAList(t *testing.T) {
	_, err := Load(writeConfig(t, base+"lora:\n  target_modules: [q_proj, .nan]\n"), nil)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Key != "lora.target_modules[1]" {
		t.Errorf("got %v", err)
	}
}
