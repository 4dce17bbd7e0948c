package report

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loractl/loractl/internal/cmdtest"
	"github.com/loractl/loractl/internal/cmdutil"
)

// fixtureRun copies the report package's fixture run into the factory's run store.
func fixtureRun(t *testing.T, runs, id string) string {
	t.Helper()
	src := filepath.Join("..", "..", "..", "report", "testdata", "quickstart")
	dst := filepath.Join(runs, id)
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestReport(t *testing.T) {
	f, out, _ := cmdtest.Factory(t, &cmdtest.Driver{})
	dir := fixtureRun(t, f.RunsDir(), "quickstart-8494bb1ebe")
	other := filepath.Join(t.TempDir(), "r.html")
	tests := []struct {
		name, ref, output string
		code              int
		check             func(t *testing.T)
	}{
		{"run dir by prefix", "quickstart-84", "", 0, func(t *testing.T) {
			for _, f := range []string{"report.html", "loss.png"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Error(err)
				}
			}
			if strings.TrimSpace(out.String()) != filepath.Join(dir, "report.html") {
				t.Errorf("printed %q", out)
			}
		}},
		{"to a file", "quickstart-8494bb1ebe", other, 0, func(t *testing.T) {
			if b, err := os.ReadFile(other); err != nil || !strings.Contains(string(b), "quickstart-8494bb1ebe") {
				t.Errorf("%s: %v", other, err)
			}
		}},
		{"to stdout", "quickstart", "-", 0, func(t *testing.T) {
			if !strings.HasPrefix(out.String(), "<!DOCTYPE html>") {
				t.Errorf("stdout: %.40q", out)
			}
		}},
		{"no such run", "nope", "", cmdutil.ExitInvalid, nil},
		{"into a missing dir", "quickstart", "/nonexistent/dir/r.html", cmdutil.ExitInvalid, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out.Reset()
			err := reportRun(&Options{Factory: f, RunID: tt.ref, Output: tt.output})
			if got := cmdutil.ExitCode(err); got != tt.code {
				t.Fatalf("exit %d (%v), want %d", got, err, tt.code)
			}
			if tt.check != nil {
				tt.check(t)
			}
		})
	}
}

func TestReportNotARun(t *testing.T) {
	f, _, _ := cmdtest.Factory(t, &cmdtest.Driver{})
	dir := fixtureRun(t, f.RunsDir(), "broken")
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := reportRun(&Options{Factory: f, RunID: "broken"})
	if cmdutil.ExitCode(err) != cmdutil.ExitInvalid || !strings.Contains(err.Error(), "manifest.json") {
		t.Fatalf("err = %v, want exit 2 naming manifest.json", err)
	}
}

// TestReportOutputNotARunFile: -o naming one of the run's own files (its manifest) is
// refused and the file kept; the run's report.html may be rewritten.
func TestReportOutputNotARunFile(t *testing.T) {
	f, _, _ := cmdtest.Factory(t, &cmdtest.Driver{})
	dir := fixtureRun(t, f.RunsDir(), "quickstart-8494bb1ebe")
	manifest := filepath.Join(dir, "manifest.json")
	before, _ := os.ReadFile(manifest)
	err := reportRun(&Options{Factory: f, RunID: "quickstart", Output: manifest})
	if cmdutil.ExitCode(err) != cmdutil.ExitInvalid || !strings.Contains(fmt.Sprint(err), "would overwrite") {
		t.Errorf("-o the manifest: %v, want exit 2", err)
	}
	if b, _ := os.ReadFile(manifest); string(b) != string(before) {
		t.Fatal("the run's manifest was overwritten")
	}
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := reportRun(&Options{Factory: f, RunID: "quickstart", Output: page}); err != nil {
		t.Fatalf("-o the run's report.html: %v", err)
	}
}
