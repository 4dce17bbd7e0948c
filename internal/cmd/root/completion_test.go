package root

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loractl/loractl/internal/cmdtest"
	"github.com/loractl/loractl/run"
)

// complete runs cobra's hidden __complete command, as the shell scripts do.
func complete(t *testing.T, runs string, args ...string) string {
	t.Helper()
	f, _, _ := cmdtest.Factory(t, nil)
	f.RunsDir = func() string { return runs }
	cmd := NewCmdRoot(f)
	var out strings.Builder
	cmd.SetOut(&out)
	cmd.SetArgs(append([]string{"__complete"}, args...))
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestCompletion(t *testing.T) {
	runs := filepath.Join(t.TempDir(), "runs")
	dir := filepath.Join(runs, "demo-0123456789")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := run.WriteManifest(dir, &run.Manifest{RunID: "demo-0123456789", State: run.StateCompleted}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(filepath.Dir(runs), "sweeps", "grid-abcdef0123"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want []string
		not  []string
	}{
		{"run ids for logs", []string{"logs", ""}, []string{"demo-0123456789\tcompleted"}, nil},
		{"run ids for --resume", []string{"train", "--resume", ""}, []string{"demo-0123456789\tcompleted"}, nil},
		{"sweep ids", []string{"sweep", "status", ""}, []string{"grid-abcdef0123"}, nil},
		{"config keys for --set", []string{"train", "--set", ""}, []string{"train.learning_rate=", "lora.r=", "driver.name="}, nil},
		{"enum values for --set", []string{"render", "x.yaml", "--set", "train.precision="}, []string{"train.precision=bf16", "train.precision=fp32"}, []string{"train.learning_rate="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := complete(t, runs, tt.args...)
			for _, w := range tt.want {
				if !strings.Contains(got, w+"\n") {
					t.Errorf("completions lack %q:\n%s", w, got)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(got, w) {
					t.Errorf("completions offer %q:\n%s", w, got)
				}
			}
		})
	}
}
