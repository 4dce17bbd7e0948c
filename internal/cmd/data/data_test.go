package data

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/dataset"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/iostreams"
)

func factory() (*cmdutil.Factory, *bytes.Buffer, *bytes.Buffer) {
	io, _, out, errOut := iostreams.Test()
	l := zerolog.Nop()
	return &cmdutil.Factory{IO: io, Log: &l}, out, errOut
}

func chat(i int, system string) string {
	return fmt.Sprintf(`{"messages": [{"role": "system", "content": %q}, {"role": "user", "content": "question %d"}, {"role": "assistant", "content": "answer %d"}]}`, system, i, i)
}

func writeFile(t *testing.T, name string, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func chats(from, n int) []string {
	var out []string
	for i := from; i < from+n; i++ {
		out = append(out, chat(i, "Be brief."))
	}
	return out
}

func TestNewCmdCheckFlags(t *testing.T) {
	f, _, _ := factory()
	var got *CheckOptions
	cmd := NewCmdCheck(f, func(o *CheckOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"train.jsonl", "--eval", "eval.jsonl", "--system-prompt", "@p.txt", "--max-length", "512",
		"--tokenizer", "./model", "--python", "/usr/bin/python3", "--epochs", "2", "--max-errors", "5", "--json"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	want := CheckOptions{Train: "train.jsonl", Eval: "eval.jsonl", SystemPrompt: "@p.txt", MaxLength: 512, Tokenizer: "./model",
		Python: "/usr/bin/python3", Epochs: 2, MaxErrors: 5, JSON: true, MaxLineBytes: dataset.DefaultMaxLineBytes}
	if got.Train != want.Train || got.Eval != want.Eval || got.SystemPrompt != want.SystemPrompt || got.MaxLength != want.MaxLength ||
		got.Tokenizer != want.Tokenizer || got.Python != want.Python || got.Epochs != want.Epochs || got.MaxErrors != want.MaxErrors ||
		!got.JSON || got.MaxLineBytes != want.MaxLineBytes {
		t.Errorf("options %+v", got)
	}
	cmd = NewCmdCheck(f, func(o *CheckOptions) error { got = o; return nil })
	cmd.SetArgs([]string{})
	cmd.SetErr(&bytes.Buffer{})
	if err := cmd.Execute(); err == nil {
		t.Error("no file accepted")
	}
}

func TestCheckRun(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, "train.jsonl", chats(0, 60)...)
	eval := writeFile(t, "eval.jsonl", chats(100, 20)...)
	bad := writeFile(t, "bad.jsonl", append(chats(0, 60), `{"messages": [{"role": "human", "content": "x"}]}`)...)
	prompt := filepath.Join(dir, "prompt.txt")
	if err := os.WriteFile(prompt, []byte("Be brief.\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		opts     CheckOptions
		exit     int
		out      []string // substrings of stdout
		notOut   []string
		errMatch string
	}{
		{name: "clean", opts: CheckOptions{Train: good, Eval: eval, SystemPrompt: "@" + prompt},
			out: []string{"train.jsonl: 60 examples (eval: 20), 0 errors, 1 warning", "small_dataset", "tokens/example", "(estimate)", "Eval (" + eval + ")"}, notOut: []string{"Errors:", "system_prompt_mismatch"}},
		{name: "warnings only exit 0", opts: CheckOptions{Train: good, SystemPrompt: "Another prompt."},
			out: []string{"no_eval_set", "system_prompt_mismatch", "lines 1, 2, 3, 4, 5, … (60 in all)"}},
		{name: "errors exit 2", opts: CheckOptions{Train: bad, Eval: eval}, exit: 2,
			out: []string{"1 error", "line 61: unrecognized_role messages[0].role", "Fix the errors above"}},
		{name: "missing file exit 2", opts: CheckOptions{Train: filepath.Join(dir, "nope.jsonl")}, exit: 2, errMatch: "nope.jsonl: no such file"},
		{name: "directory exit 2", opts: CheckOptions{Train: dir}, exit: 2, errMatch: "is a directory"},
		{name: "missing eval exit 2", opts: CheckOptions{Train: good, Eval: filepath.Join(dir, "e.jsonl")}, exit: 2, errMatch: "e.jsonl: no such file"},
		{name: "missing prompt file exit 2", opts: CheckOptions{Train: good, SystemPrompt: "@" + filepath.Join(dir, "p")}, exit: 2, errMatch: "--system-prompt"},
		{name: "tokenizer without python exit 2", opts: CheckOptions{Train: good, Tokenizer: dir}, exit: 2, errMatch: "needs the trainer's Python environment"},
		{name: "bad limits exit 2", opts: CheckOptions{Train: good, MaxLineBytes: -1}, exit: 2, errMatch: "--max-line-bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, out, _ := factory()
			opts := tt.opts
			opts.IO = f.IO
			opts.MaxLength, opts.Epochs = 2048, 3
			if opts.MaxLineBytes == 0 {
				opts.MaxLineBytes = dataset.DefaultMaxLineBytes
			}
			opts.MaxErrors = 50
			opts.FindPython = func() (string, error) { return "", errors.New("no venv") }
			err := checkRun(&opts)
			if code := cmdutil.ExitCode(err); code != tt.exit {
				t.Fatalf("exit %d (%v), want %d\n%s", code, err, tt.exit, out)
			}
			if tt.errMatch != "" && (err == nil || !strings.Contains(err.Error(), tt.errMatch)) {
				t.Errorf("error %v does not mention %q", err, tt.errMatch)
			}
			for _, s := range tt.out {
				if !strings.Contains(out.String(), s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tt.notOut {
				if strings.Contains(out.String(), s) {
					t.Errorf("output has %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestCheckRunJSON(t *testing.T) {
	f, out, _ := factory()
	train := writeFile(t, "train.jsonl", append(chats(0, 60), "{")...)
	err := checkRun(&CheckOptions{IO: f.IO, Train: train, MaxLength: 2048, Epochs: 1, MaxLineBytes: 1 << 20, MaxErrors: 10, JSON: true})
	if cmdutil.ExitCode(err) != 2 {
		t.Fatalf("exit %d", cmdutil.ExitCode(err))
	}
	var rep dataset.Report
	dec := json.NewDecoder(out)
	if err := dec.Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if dec.More() {
		t.Error("more than one JSON object printed")
	}
	if rep.File != train || rep.Examples != 61 || rep.ErrorsTotal != 1 || rep.Errors[0].Line != 61 || rep.Errors[0].Code != dataset.CodeInvalidJSON {
		t.Errorf("report %+v", rep)
	}
	if rep.Warning(dataset.CodeNoEvalSet) == nil || !rep.Stats.Tokens.Estimated {
		t.Errorf("warnings %+v tokens %+v", rep.Warnings, rep.Stats.Tokens)
	}
}

func TestSplitRun(t *testing.T) {
	in := writeFile(t, "all.jsonl", chats(0, 100)...)
	out := filepath.Join(t.TempDir(), "split")
	f, stdout, _ := factory()
	if err := splitRun(&SplitOptions{IO: f.IO, Input: in, OutDir: out, EvalFraction: 0.2, Seed: 1, MaxLineBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "(80 examples)") || !strings.Contains(stdout.String(), "(20 examples)") {
		t.Errorf("output %s", stdout)
	}
	// Again without --force: refused as invalid input.
	err := splitRun(&SplitOptions{IO: f.IO, Input: in, OutDir: out, EvalFraction: 0.2, MaxLineBytes: 1 << 20})
	if cmdutil.ExitCode(err) != 2 {
		t.Errorf("overwrite: exit %d (%v)", cmdutil.ExitCode(err), err)
	}
	// A broken file: errors listed on stderr, exit 2, nothing written.
	bad := writeFile(t, "bad.jsonl", append(chats(0, 10), "nope")...)
	f, _, stderr := factory()
	err = splitRun(&SplitOptions{IO: f.IO, Input: bad, OutDir: filepath.Join(t.TempDir(), "x"), EvalFraction: 0.2, MaxLineBytes: 1 << 20})
	if cmdutil.ExitCode(err) != 2 || !strings.Contains(stderr.String(), "line 11: invalid_json") {
		t.Errorf("exit %d, stderr %s", cmdutil.ExitCode(err), stderr)
	}
	if err := splitRun(&SplitOptions{IO: f.IO, Input: in, EvalFraction: 0.2}); cmdutil.ExitCode(err) != 2 {
		t.Errorf("no -o: %v", err)
	}
}

func TestConvertRun(t *testing.T) {
	in := writeFile(t, "alpaca.jsonl", `{"instruction": "a", "output": "b"}`, `{"instruction": "c"}`, `{"instruction": "d", "input": "e", "output": "f"}`)
	outPath := filepath.Join(t.TempDir(), "chat.jsonl")
	f, _, stderr := factory()
	err := convertRun(&ConvertOptions{IO: f.IO, Input: in, Output: outPath, From: dataset.FormatAuto, SystemPrompt: "Sys.", MaxLineBytes: 1 << 20, MaxErrors: 10})
	if cmdutil.ExitCode(err) != 2 {
		t.Fatalf("exit %d (%v)", cmdutil.ExitCode(err), err)
	}
	if !strings.Contains(stderr.String(), "converted 2 lines to "+outPath+" (alpaca 2)") || !strings.Contains(stderr.String(), `line 2: missing_field output: missing "output"`) {
		t.Errorf("stderr %s", stderr)
	}
	b, _ := os.ReadFile(outPath)
	want := `{"messages":[{"role":"system","content":"Sys."},{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}` + "\n" +
		`{"messages":[{"role":"system","content":"Sys."},{"role":"user","content":"d\n\ne"},{"role":"assistant","content":"f"}]}` + "\n"
	if string(b) != want {
		t.Errorf("output\n%s\nwant\n%s", b, want)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(outPath), ".*.tmp"))
	if len(leftovers) != 0 {
		t.Errorf("temp files left: %v", leftovers)
	}

	// To stdout, clean input: exit 0.
	f, stdout, _ := factory()
	clean := writeFile(t, "pc.jsonl", `{"prompt": "p", "completion": "c"}`)
	if err := convertRun(&ConvertOptions{IO: f.IO, Input: clean, From: dataset.FormatPromptCompletion, MaxLineBytes: 1 << 20, MaxErrors: 10}); err != nil {
		t.Fatal(err)
	}
	if stdout.String() != `{"messages":[{"role":"user","content":"p"},{"role":"assistant","content":"c"}]}`+"\n" {
		t.Errorf("stdout %q", stdout)
	}
	for name, o := range map[string]ConvertOptions{
		"overwriting the input": {Input: clean, Output: clean, From: dataset.FormatAuto},
		"unknown format":        {Input: clean, From: "csv"},
		"missing input":         {Input: filepath.Join(t.TempDir(), "x.jsonl")},
	} {
		o.IO = f.IO
		if err := convertRun(&o); cmdutil.ExitCode(err) != 2 {
			t.Errorf("%s: exit %d (%v)", name, cmdutil.ExitCode(err), err)
		}
	}
}

// TestConvertEdgeRows: an empty answer is an error, not an empty assistant turn; a
// system prompt file's final newline is not part of the prompt; nothing converted
// writes no output file.
func TestConvertEdgeRows(t *testing.T) {
	dir := t.TempDir()
	prompt := filepath.Join(dir, "prompt.txt")
	if err := os.WriteFile(prompt, []byte("Be brief.\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		rows    []string
		exit    int
		want    string // the output file, "" when none may exist
		stderr  string
		sysFile bool
	}{
		{"empty alpaca output", []string{`{"instruction": "a", "output": "  "}`, `{"instruction": "c", "output": "d"}`}, 2,
			`{"messages":[{"role":"user","content":"c"},{"role":"assistant","content":"d"}]}` + "\n", "empty_assistant_content output", false},
		{"empty completion", []string{`{"prompt": "p", "completion": ""}`, `{"prompt": "q", "completion": "r"}`}, 2,
			`{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"r"}]}` + "\n", "empty_assistant_content completion", false},
		{"system prompt file newline", []string{`{"instruction": "a", "output": "b"}`}, 0,
			`{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}` + "\n", "converted 1 line", true},
		{"nothing converts", []string{`{"instruction": "a", "output": ""}`}, 2, "", "nothing converted: not written", false},
		// An empty input is not a conversion that succeeded: exit 0 would leave an OUT from an
		// earlier conversion in place for the next step to train on.
		{"no rows at all", []string{"", "  "}, 2, "", "no rows to convert", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := writeFile(t, "in.jsonl", tt.rows...)
			out := filepath.Join(t.TempDir(), "out.jsonl")
			f, _, stderr := factory()
			o := ConvertOptions{IO: f.IO, Input: in, Output: out, From: dataset.FormatAuto, MaxLineBytes: 1 << 20, MaxErrors: 10}
			if tt.sysFile {
				o.SystemPrompt = "@" + prompt
			}
			err := convertRun(&o)
			if code := cmdutil.ExitCode(err); code != tt.exit {
				t.Fatalf("exit %d (%v), want %d; stderr %s", code, err, tt.exit, stderr)
			}
			said := stderr.String()
			if err != nil {
				said += err.Error() // printed by main
			}
			if !strings.Contains(said, tt.stderr) {
				t.Errorf("stderr %q lacks %q", said, tt.stderr)
			}
			b, rerr := os.ReadFile(out)
			if tt.want == "" {
				if rerr == nil {
					t.Errorf("output written (%d bytes) although nothing converted", len(b))
				}
				return
			}
			if string(b) != tt.want {
				t.Errorf("output\n%s\nwant\n%s", b, tt.want)
			}
		})
	}
}

// convert -o refuses an existing file (as init and split do) unless --force, and the
// file is replaced whole or not at all.
func TestConvertRefusesToOverwrite(t *testing.T) {
	in := writeFile(t, "pc.jsonl", `{"prompt": "p", "completion": "c"}`)
	outPath := filepath.Join(t.TempDir(), "train.jsonl")
	if err := os.WriteFile(outPath, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, _, _ := factory()
	o := ConvertOptions{IO: f.IO, Input: in, Output: outPath, From: dataset.FormatAuto, MaxLineBytes: 1 << 20, MaxErrors: 10}
	err := convertRun(&o)
	if cmdutil.ExitCode(err) != 2 || !strings.Contains(err.Error(), "exists (use --force to overwrite)") {
		t.Fatalf("exit %d (%v)", cmdutil.ExitCode(err), err)
	}
	if b, _ := os.ReadFile(outPath); string(b) != "precious\n" {
		t.Fatalf("the existing file changed: %q", b)
	}
	o.Force = true
	if err := convertRun(&o); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(outPath); !strings.Contains(string(b), `"messages"`) {
		t.Fatalf("--force did not replace it: %q", b)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(outPath), ".*.tmp")); len(leftovers) != 0 {
		t.Errorf("temp files left: %v", leftovers)
	}
}
