package compare

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loractl/loractl/internal/cmdtest"
	"github.com/loractl/loractl/internal/cmdutil"
)

const testdata = "../../../report/testdata"

func fixtureRun(t *testing.T, runs, id string) string {
	t.Helper()
	dst := filepath.Join(runs, id)
	if err := os.CopyFS(dst, os.DirFS(filepath.Join(testdata, "quickstart"))); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestCompare(t *testing.T) {
	f, out, _ := cmdtest.Factory(t, &cmdtest.Driver{})
	fixtureRun(t, f.RunsDir(), "qs-aaa")
	b := fixtureRun(t, f.RunsDir(), "qs-bbb")
	// B trained with another learning rate; same eval set.
	p := filepath.Join(b, "resolved.json")
	raw, _ := os.ReadFile(p)
	if err := os.WriteFile(p, []byte(strings.Replace(string(raw), `"learning_rate": 0.02`, `"learning_rate": 0.001`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	badCSV := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(badCSV, []byte("step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n1,x,0.1,,\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	html := filepath.Join(t.TempDir(), "c.html")

	tests := []struct {
		name string
		opts Options
		code int
		want []string
	}{
		{"two runs by prefix", Options{Runs: []string{"qs-a", "qs-b"}, Output: html}, 0,
			[]string{"same: 8 examples paired", "train.learning_rate  0.02  0.001", "no difference resolved", "wrote " + html}},
		{"json", Options{Runs: []string{"qs-aaa", "qs-bbb"}, JSON: true}, 0, []string{`"paired":8`}},
		{"openai", Options{Runs: []string{"qs-a"}, OpenAIResults: filepath.Join(testdata, "openai_results.csv")}, 0,
			[]string{"LORACTL", "OPENAI", "full valid loss final"}},
		{"bad csv", Options{Runs: []string{"qs-a"}, OpenAIResults: badCSV}, cmdutil.ExitInvalid, nil},
		{"missing csv", Options{Runs: []string{"qs-a"}, OpenAIResults: "/nonexistent.csv"}, cmdutil.ExitInvalid, nil},
		{"ambiguous prefix", Options{Runs: []string{"qs", "qs-bbb"}}, cmdutil.ExitInvalid, nil},
		{"no such run", Options{Runs: []string{"qs-aaa", "zzz"}}, cmdutil.ExitInvalid, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out.Reset()
			tt.opts.Factory = f
			err := compareRun(&tt.opts)
			if got := cmdutil.ExitCode(err); got != tt.code {
				t.Fatalf("exit %d (%v), want %d", got, err, tt.code)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if tt.opts.JSON {
				var v map[string]any
				if err := json.Unmarshal(out.Bytes(), &v); err != nil {
					t.Errorf("--json output is not one JSON object: %v", err)
				}
			}
		})
	}
	if b, err := os.ReadFile(html); err != nil || !strings.Contains(string(b), "<svg") {
		t.Errorf("-o wrote no chart: %v", err)
	}
}

func TestCompareArgs(t *testing.T) {
	f, _, _ := cmdtest.Factory(t, &cmdtest.Driver{})
	for _, args := range [][]string{{"a"}, {"a", "b", "c"}, {"a", "b", "--openai-results", "x.csv"}} {
		cmd := NewCmdCompare(f, func(*Options) error { return nil })
		cmd.SetArgs(args)
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		if err := cmd.Execute(); cmdutil.ExitCode(err) != cmdutil.ExitInvalid {
			t.Errorf("compare %v: %v, want exit 2", args, err)
		}
	}
}

// TestOutputNeverAnInput: -o naming the results CSV, or a file in a compared run's
// directory, is refused (exit 2) and the file kept: the page would replace it.
func TestOutputNeverAnInput(t *testing.T) {
	f, _, _ := cmdtest.Factory(t, &cmdtest.Driver{})
	a := fixtureRun(t, f.RunsDir(), "qs-aaa")
	fixtureRun(t, f.RunsDir(), "qs-bbb")
	csv := filepath.Join(t.TempDir(), "results.csv")
	raw, _ := os.ReadFile(filepath.Join(testdata, "openai_results.csv"))
	if err := os.WriteFile(csv, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(a, "manifest.json")
	before, _ := os.ReadFile(manifest)
	for _, o := range []Options{
		{Runs: []string{"qs-a"}, OpenAIResults: csv, Output: csv},
		{Runs: []string{"qs-a", "qs-b"}, Output: manifest},
		{Runs: []string{"qs-a", "qs-b"}, Output: filepath.Join(a, "eval", "..", "events.jsonl")},
	} {
		o.Factory = f
		if err := compareRun(&o); cmdutil.ExitCode(err) != cmdutil.ExitInvalid || !strings.Contains(fmt.Sprint(err), "would overwrite") {
			t.Errorf("-o %s: %v, want exit 2", o.Output, err)
		}
	}
	if b, _ := os.ReadFile(csv); string(b) != string(raw) {
		t.Error("the results CSV was overwritten")
	}
	if b, _ := os.ReadFile(manifest); string(b) != string(before) {
		t.Error("the run's manifest was overwritten")
	}
}
