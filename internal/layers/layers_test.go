// Package layers checks the import rules of docs/architecture.md over the whole module:
// a package outside internal/ (and the command binary, benchmarks and end-to-end
// tests) imports nothing under internal/, so everything public can be used from outside
// the module; and no command package imports another, so a command's logic lives in a
// package below the commands (or in internal/cmd/shared/) where its siblings reach it.
package layers

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/loractl/loractl/"

// imports maps each package dir (slash-separated, relative to the module root) to the
// module packages its non-test files import.
func imports(t *testing.T, root string) map[string]map[string]bool {
	t.Helper()
	out := map[string]map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		dir := filepath.ToSlash(rel)
		if out[dir] == nil {
			out[dir] = map[string]bool{}
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, module) {
				out[dir][strings.TrimPrefix(p, module)] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func under(dir, prefix string) bool { return dir == prefix || strings.HasPrefix(dir, prefix+"/") }

// breaks lists the rule violations of one package's imports.
func breaks(dir string, imps map[string]bool) []string {
	var out []string
	public := !under(dir, "internal") && !under(dir, "cmd") && !under(dir, "bench") && !under(dir, "test")
	cmdPkg := under(dir, "internal/cmd") && dir != "internal/cmd/root" && !under(dir, "internal/cmd/shared")
	for imp := range imps {
		switch {
		case public && under(imp, "internal"):
			out = append(out, dir+" (public) imports "+imp)
		case cmdPkg && under(imp, "internal/cmd") && !under(imp, "internal/cmd/shared"):
			out = append(out, dir+" (a command) imports the command "+imp)
		}
	}
	return out
}

func TestImportRules(t *testing.T) {
	all := imports(t, filepath.Join("..", ".."))
	if len(all) < 20 {
		t.Fatalf("found only %d packages: not the module root?", len(all))
	}
	for dir, imps := range all {
		for _, b := range breaks(dir, imps) {
			t.Error(b)
		}
	}
}

// The rules themselves, so the test above cannot pass by checking nothing.
func TestRulesCatchBreaks(t *testing.T) {
	tests := []struct {
		dir string
		imp string
		bad bool
	}{
		{"sweep", "internal/cmdutil", true},
		{"gpu/preflight", "runner", false},
		{"internal/cmd/sweep", "internal/cmd/train", true},
		{"internal/cmd/sweep", "internal/cmd/shared/prelaunch", false},
		{"internal/cmd/root", "internal/cmd/train", false},
		{"internal/cmd/shared/prelaunch", "internal/cmdutil", false},
		{"cmd/loractl", "internal/app", false},
		{"test/e2e", "internal/cmdutil", false},
	}
	for _, tt := range tests {
		if got := len(breaks(tt.dir, map[string]bool{tt.imp: true})) > 0; got != tt.bad {
			t.Errorf("%s importing %s: break %v, want %v", tt.dir, tt.imp, got, tt.bad)
		}
	}
}
