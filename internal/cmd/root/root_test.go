package root

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/loractl/loractl/internal/cmdtest"
	"github.com/loractl/loractl/internal/cmdutil"
)

// TestUsageErrorsExit2: a wrong argument count or an unknown command is a usage
// error (exit 2), whatever the command; no command and help exit 0.
func TestUsageErrorsExit2(t *testing.T) {
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"render"}, cmdutil.ExitInvalid, "accepts 1 arg(s), received 0"},
		{[]string{"logs"}, cmdutil.ExitInvalid, "accepts 1 arg(s)"},
		{[]string{"stop"}, cmdutil.ExitInvalid, ""},
		{[]string{"init", "a", "b"}, cmdutil.ExitInvalid, "accepts at most 1 arg(s)"},
		{[]string{"runs", "extra"}, cmdutil.ExitInvalid, `unknown command "extra"`},
		{[]string{"bogus"}, cmdutil.ExitInvalid, `unknown command "bogus"`},
		{[]string{"rnder", "x.yaml"}, cmdutil.ExitInvalid, "did you mean render?"},
		{[]string{"data", "bogus"}, cmdutil.ExitInvalid, `unknown command "bogus" for "loractl data"`},
		{[]string{"data", "chek", "x.jsonl"}, cmdutil.ExitInvalid, "did you mean check?"},
		{[]string{"data"}, cmdutil.ExitOK, ""},
		{[]string{"render", "--no-such-flag"}, cmdutil.ExitInvalid, "unknown flag"},
		{nil, cmdutil.ExitOK, ""},
		{[]string{"help", "exit-codes"}, cmdutil.ExitOK, ""},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			f, _, _ := cmdtest.Factory(t, nil)
			cmd := NewCmdRoot(f)
			cmd.SetArgs(tc.args)
			err := cmd.Execute()
			if got := cmdutil.ExitCode(err); got != tc.code {
				t.Fatalf("exit %d (%v), want %d", got, err, tc.code)
			}
			if tc.msg != "" && !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q lacks %q", err, tc.msg)
			}
		})
	}
}

// TestVersionAndHelpText: --version names the build; no flag's usage text turns a
// quoted command into a bogus value name (pflag reads `backquotes` as the name).
func TestVersionAndHelpText(t *testing.T) {
	f, _, _ := cmdtest.Factory(t, nil)
	cmd := NewCmdRoot(f)
	var out strings.Builder
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "loractl ") || strings.TrimSpace(out.String()) == "loractl" {
		t.Errorf("--version printed %q, want \"loractl <version>\"", out.String())
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(fl *pflag.Flag) {
			// A backquoted word names the value on purpose (`FILE`); a backquoted
			// command would become a bogus value name ("loractl logs -f").
			if name, _ := pflag.UnquoteUsage(fl); strings.Contains(fl.Usage, "`") && (strings.ContainsAny(name, " -") || strings.ToUpper(name) != name) {
				t.Errorf("%s --%s: usage has backquotes, shown as value name %q", c.CommandPath(), fl.Name, name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(cmd)
}
