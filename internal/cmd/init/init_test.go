package initcmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/internal/cmdtest"
	"github.com/loractl/loractl/internal/cmdutil"
)

func TestInitWritesAValidStarter(t *testing.T) {
	f, out, _ := cmdtest.Factory(t, nil)
	dir := t.TempDir()
	p := filepath.Join(dir, "my.yaml")
	if err := initRun(&Options{Factory: f, Path: p}); err != nil {
		t.Fatal(err)
	}
	// The starter validates once its data files exist; every value it shows is a default.
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"train.jsonl", "eval.jsonl"} {
		if err := os.WriteFile(filepath.Join(dir, "data", n), []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := config.Load(p, nil)
	if err != nil {
		t.Fatalf("starter config does not load: %v", err)
	}
	if c.Resolved.LoRA.R != config.DefaultR || c.Resolved.Train.LearningRate != config.DefaultLearningRate {
		t.Errorf("starter disagrees with the defaults: %+v", c.Resolved)
	}
	// The modeline names the schema written beside the config.
	if b, _ := os.ReadFile(p); !strings.HasPrefix(string(b), "# yaml-language-server: $schema="+SchemaFile+"\n") {
		t.Errorf("no modeline: %.80q", b)
	}
	if b, err := os.ReadFile(filepath.Join(dir, SchemaFile)); err != nil || string(b) != string(config.SchemaJSON(false)) {
		t.Errorf("schema beside the config: %v", err)
	}
	if err := initRun(&Options{Factory: f, Path: p}); cmdutil.ExitCode(err) != cmdutil.ExitInvalid {
		t.Fatalf("overwrite without --force: %v", err)
	}
	if err := initRun(&Options{Factory: f, Path: p, Force: true}); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := initRun(&Options{Factory: f, Path: "-"}); err != nil || !strings.Contains(out.String(), "target_modules") {
		t.Fatalf("stdout: %v", err)
	}
}
