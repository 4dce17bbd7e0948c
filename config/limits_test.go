package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Hostile or mistaken config paths and contents are refused with a clear error before
// the YAML parser sees them; each case must return (the guard is a hang or an
// exhausted machine otherwise).
func TestConfigLimits(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	nestedBlocks := ""
	for i := 0; i < 100; i++ {
		nestedBlocks += strings.Repeat(" ", i) + "k:\n"
	}
	base := "model: ./m\ndata:\n  train: t.jsonl\n"
	cases := []struct {
		name, path, want string
	}{
		{"/dev/zero", "/dev/zero", "not a regular file (a character device)"},
		{"a FIFO", fifo, "not a regular file (a named pipe)"},
		{"a directory", dir, "not a regular file (a directory)"},
		{"2 MiB", write("big.yaml", base+"name: "+strings.Repeat("x", 2<<20)+"\n"), "over the 1048576-byte (1 MiB) limit"},
		{"100,000 nested [", write("flow.yaml", "a: "+strings.Repeat("[", 100_000)), "nested more than 64 levels deep"},
		{"nested {", write("map.yaml", "a: "+strings.Repeat("{b: ", 70)+"1"+strings.Repeat("}", 70)), "nested more than 64 levels deep"},
		{"100 indented levels", write("block.yaml", nestedBlocks), "nested more than 64 levels deep"},
		{"sequence of sequences", write("seq.yaml", "a:\n"+strings.Repeat("- ", 80)+"x\n"), "nested more than 64 levels deep"},
		{"500,000 values", write("wide.yaml", "a: ["+strings.Repeat("1,", 500_000)+"1]\n"), "more than 100,000 values"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				_, err := Load(tc.path, nil)
				done <- err
			}()
			select {
			case err := <-done:
				var fe *FieldError
				if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
					t.Fatalf("err %v, want a FieldError naming %s with %q", err, tc.path, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("not refused: still loading after 10s")
			}
		})
	}
}

// Brackets inside quotes and comments are text, not nesting.
func TestDepthCountsOnlyStructure(t *testing.T) {
	deep := strings.Repeat("[", 100)
	for _, src := range []string{
		`name: "` + deep + `"`,
		`name: '` + deep + `'`,
		"name: x # " + deep,
		"a:\n  b:\n    - - [1, [2, {c: [3]}]]\n",
	} {
		if e := checkDepth("f", []byte(src)); e != nil {
			t.Errorf("%q: %v", src, e)
		}
	}
	if e := checkDepth("f", []byte("a: ok\nb: "+strings.Repeat("[", 70))); e == nil || e.Line != 2 {
		t.Errorf("too deep on line 2: %+v", e)
	}
}

func TestSetValueGuard(t *testing.T) {
	cases := []struct{ raw, want string }{
		{"1\n---\n2", "a second YAML document"},
		{strings.Repeat("[", 1000), "nested more than 64 levels deep"},
	}
	for _, tc := range cases {
		if _, err := setValue(tc.raw); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("setValue(%.20q): %v, want %q", tc.raw, err, tc.want)
		}
	}
}

func TestSetNullSectionRefused(t *testing.T) {
	for _, tc := range []struct {
		set  string
		want string
	}{
		{"train=null", "train is a section"},
		{"lora=~", "lora is a section"},
		{"driver=null", "driver is a section"},
	} {
		if e := applySet(map[string]any{"train": map[string]any{"epochs": 2}}, tc.set); e == nil || !strings.Contains(e.Error(), tc.want) {
			t.Errorf("--set %s: %v, want %q", tc.set, e, tc.want)
		}
	}
	if e := applySet(map[string]any{}, "train.max_steps=null"); e != nil {
		t.Errorf("a value may be null: %v", e)
	}
}
