package data_test

import (
	"testing"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/internal/cmd/root"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/iostreams"
)

// TestDataRegistered runs `loractl data ...` through the real root command: the group is
// registered, and bad flags are usage errors (exit 2).
func TestDataRegistered(t *testing.T) {
	tests := []struct {
		args []string
		exit int
	}{
		{[]string{"data", "check", "--max-length", "many", "x.jsonl"}, cmdutil.ExitInvalid},
		{[]string{"data", "split", "x.jsonl", "--eval-fraction", "a lot", "-o", "d"}, cmdutil.ExitInvalid},
		{[]string{"data", "convert", "--no-such-flag", "x.jsonl"}, cmdutil.ExitInvalid},
		{[]string{"data", "check", "/nonexistent/train.jsonl"}, cmdutil.ExitInvalid},
		{[]string{"data", "--help"}, cmdutil.ExitOK},
	}
	for _, tt := range tests {
		io, _, _, _ := iostreams.Test()
		l := zerolog.Nop()
		f := &cmdutil.Factory{IO: io, Log: &l, RunsDir: func() string { return t.TempDir() }}
		cmd := root.NewCmdRoot(f)
		cmd.SetArgs(tt.args)
		cmd.SetOut(io.Out)
		cmd.SetErr(io.ErrOut)
		if got := cmdutil.ExitCode(cmd.Execute()); got != tt.exit {
			t.Errorf("%v: exit %d, want %d", tt.args, got, tt.exit)
		}
	}
}
