package importcmd_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/internal/cmd/root"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/iostreams"
)

func factory(t *testing.T) *cmdutil.Factory {
	io, _, _, _ := iostreams.Test()
	l := zerolog.Nop()
	return &cmdutil.Factory{IO: io, Log: &l, RunsDir: func() string { return t.TempDir() }}
}

func chatFile(t *testing.T, dir string, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"messages":[{"role":"user","content":"question %d"},{"role":"assistant","content":"answer %d"}]}`+"\n", i, i)
	}
	p := filepath.Join(dir, "train.jsonl")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImportExitCodes runs `loractl import openai` through the real root command: the
// group is registered, and bad flags and inputs exit 2.
func TestImportExitCodes(t *testing.T) {
	dir := t.TempDir()
	train := chatFile(t, dir, 12)
	job := filepath.Join(dir, "job.json")
	if err := os.WriteFile(job, []byte(`{"object":"file","id":"file-x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		exit int
	}{
		{[]string{"import", "openai", "--help"}, cmdutil.ExitOK},
		{[]string{"import", "openai", "-o", filepath.Join(dir, "a")}, cmdutil.ExitInvalid},
		{[]string{"import", "openai", "--training-file", train}, cmdutil.ExitInvalid},
		{[]string{"import", "openai", "--training-file", train, "--job", job, "-o", filepath.Join(dir, "b")}, cmdutil.ExitInvalid},
		{[]string{"import", "openai", "--training-file", train, "--gpu-memory", "lots", "-o", filepath.Join(dir, "c")}, cmdutil.ExitInvalid},
		{[]string{"import", "openai", "--training-file", train, "--gpu-memory", "1GiB", "-o", filepath.Join(dir, "d")}, cmdutil.ExitNoFit},
		{[]string{"import", "openai", "--training-file", train, "--model", "Qwen/Qwen2.5-0.5B-Instruct", "-o", filepath.Join(dir, "e")}, cmdutil.ExitOK},
	}
	for _, tt := range tests {
		f := factory(t)
		cmd := root.NewCmdRoot(f)
		cmd.SetArgs(tt.args)
		cmd.SetOut(f.IO.Out)
		cmd.SetErr(f.IO.ErrOut)
		if got := cmdutil.ExitCode(cmd.Execute()); got != tt.exit {
			t.Errorf("%v: exit %d, want %d", tt.args, got, tt.exit)
		}
	}
	for _, d := range []string{"a", "b", "c", "d"} {
		if _, err := os.Stat(filepath.Join(dir, d)); !os.IsNotExist(err) {
			t.Errorf("%s written on error", d)
		}
	}
}
