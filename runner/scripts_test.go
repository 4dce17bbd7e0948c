package runner

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/loractl/loractl/python"
)

// Every embedded script is installed, once, in a dir named by their content.
func TestEnsureScripts(t *testing.T) {
	base := t.TempDir()
	dir, err := EnsureScripts(base)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := fs.Glob(python.FS(), "*.py")
	if len(names) < 3 {
		t.Fatalf("embedded scripts: %v", names)
	}
	for _, n := range names {
		want, _ := python.Read(n)
		got, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil || string(got) != string(want) {
			t.Fatalf("%s not installed as embedded: %v", n, err)
		}
	}
	again, err := EnsureScripts(base)
	if err != nil || again != dir {
		t.Fatalf("second install: %s %v (first %s)", again, err, dir)
	}
	if rel, _ := filepath.Rel(base, dir); filepath.Dir(rel) != ".trainer" {
		t.Fatalf("installed outside the store's trainer dirs: %s", dir)
	}
}
