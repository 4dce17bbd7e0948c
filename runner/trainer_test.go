package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loractl/loractl/python"
	"github.com/loractl/loractl/run"
)

func TestEnsureTrainerVerifiesEveryLaunch(t *testing.T) {
	embedded, err := python.Read(run.TrainerFile)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		notice string // "" when nothing needs reinstalling
	}{
		{"intact", func(*testing.T, string) {}, ""},
		{"stale bytecode is removed quietly", func(t *testing.T, dir string) {
			must(t, os.MkdirAll(filepath.Join(dir, "__pycache__"), 0o755))
			must(t, os.WriteFile(filepath.Join(dir, "__pycache__", "train_lora_support.cpython-311.pyc"), []byte("x"), 0o644))
		}, ""},
		{"edited in place", func(t *testing.T, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, run.TrainerFile), append([]byte("import os; os.system('id')\n"), embedded...), 0o644))
		}, "train_lora.py was modified"},
		{"truncated", func(t *testing.T, dir string) {
			must(t, os.Truncate(filepath.Join(dir, "train_lora_support.py"), 10))
		}, "train_lora_support.py was modified"},
		{"replaced by a link", func(t *testing.T, dir string) {
			other := filepath.Join(t.TempDir(), "t.py")
			must(t, os.WriteFile(other, embedded, 0o644))
			must(t, os.Remove(filepath.Join(dir, run.TrainerFile)))
			must(t, os.Symlink(other, filepath.Join(dir, run.TrainerFile)))
		}, "symbolic link"},
		{"a module planted beside it", func(t *testing.T, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, "transformers.py"), []byte("raise SystemExit"), 0o644))
		}, "unexpected file transformers.py"},
		{"removed", func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, run.TrainerFile))) }, "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), ".trainer", "0123456789abcdef")
			if notice, err := ensureTrainer(dir); err != nil || notice != "" {
				t.Fatalf("fresh install: %q %v", notice, err)
			}
			tc.damage(t, dir)
			notice, err := ensureTrainer(dir)
			if err != nil {
				t.Fatal(err)
			}
			if (tc.notice == "") != (notice == "") || !strings.Contains(notice, tc.notice) {
				t.Fatalf("notice %q, want %q", notice, tc.notice)
			}
			if p := checkFiles(dir, python.TrainerFiles); p != "" {
				t.Fatalf("after ensureTrainer: %s", p)
			}
			entries, _ := os.ReadDir(filepath.Dir(dir))
			if len(entries) != 1 {
				t.Errorf("leftovers beside the trainer dir: %v", entries)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
