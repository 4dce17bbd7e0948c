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
