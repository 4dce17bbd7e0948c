package eval

import (
	"strings"
	"testing"

	"github.com/loractl/loractl/internal/cmdtest"
	"github.com/loractl/loractl/internal/cmdutil"
)

func TestAgainstFlags(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		code    int
		want    string // in the error
		keyEnv  string // when accepted: where the key is read from
		against string
	}{
		{"no prefix", []string{"--against", "ft:gpt-4o-mini"}, nil, 2, "want openai:MODEL", "", ""},
		{"no model", []string{"--against", "openai:"}, nil, 2, "want openai:MODEL", "", ""},
		{"endpoint alone", []string{"--endpoint", "http://127.0.0.1:8000/v1"}, nil, 2, "--endpoint only applies with --against", "", ""},
		{"key env alone", []string{"--api-key-env", "K"}, nil, 2, "--api-key-env only applies with --against", "", ""},
		{"bad endpoint", []string{"--against", "openai:m", "--endpoint", "ftp://x"}, nil, 2, "--endpoint", "", ""},
		{"zero concurrency", []string{"--against", "openai:m", "--concurrency", "0"}, nil, 2, "--concurrency must be >= 1", "", ""},
		{"OpenAI needs its key", []string{"--against", "openai:ft:m"}, map[string]string{"OPENAI_API_KEY": ""}, 2, "OPENAI_API_KEY", "", ""},
		{"OpenAI with its key", []string{"--against", "openai:ft:m"}, map[string]string{"OPENAI_API_KEY": "sk-x"}, 0, "", "OPENAI_API_KEY", "openai:ft:m"},
		{"local server, no key", []string{"--against", "openai:m", "--endpoint", "http://127.0.0.1:8000/v1"}, nil, 0, "", "", "openai:m"},
		{"named key", []string{"--against", "openai:m", "--endpoint", "http://h/v1", "--api-key-env", "MY_KEY"}, map[string]string{"MY_KEY": "k"}, 0, "", "MY_KEY", "openai:m"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			f, _, _ := cmdtest.Factory(t, nil)
			var got *Options
			cmd := NewCmdEval(f, func(o *Options) error {
				got = o
				_, err := o.against(&strings.Builder{})
				return err
			})
			cmd.SetArgs(append([]string{"demo-0123456789"}, tc.args...))
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			err := cmd.Execute()
			if code := cmdutil.ExitCode(err); code != tc.code || (tc.want != "" && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("exit %d (%v), want %d with %q", code, err, tc.code, tc.want)
			}
			if tc.code == 0 && (got.keyEnv() != tc.keyEnv || got.Against != tc.against) {
				t.Fatalf("key from %q against %q", got.keyEnv(), got.Against)
			}
		})
	}
}
