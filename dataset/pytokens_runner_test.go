package dataset

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// execRunner runs the helper in a fresh interpreter of its own, as a warm process
// would run it in its: a PythonRunner that really runs the script. fail, when set,
// replaces the run.
type execRunner struct {
	python string
	fail   func() (int, error)
	calls  int
	env    map[string]string
}

func (r *execRunner) RunPython(ctx context.Context, script string, args []string, env map[string]string, stdout io.Writer) (int, []byte, error) {
	r.calls++
	r.env = env
	if r.fail != nil {
		code, err := r.fail()
		return code, []byte("runner's complaint"), err
	}
	cmd := exec.CommandContext(ctx, r.python, append([]string{script}, args...)...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout = stdout
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil, nil
	}
	return 0, nil, err
}

// TestPythonTokenCounterRunner: a count run in a PythonRunner (the warm trainer) gives
// the report a fresh interpreter gives, and a runner that cannot run it, or in which
// it fails, leaves the count to a fresh interpreter, whose words then stand.
func TestPythonTokenCounterRunner(t *testing.T) {
	py := testPython(t)
	train := writeLines(t, "train.jsonl", examples(0, 40, prod))
	tok := buildTokenizer(t, py, train)
	opts := func(c *PythonTokenCounter) Options {
		return Options{Train: train, EvalSplit: 0.1, MaxLength: 24, Tokenizer: c}
	}
	fresh := check(t, opts(&PythonTokenCounter{Python: py, Dir: tok}))

	missing := filepath.Join(t.TempDir(), "no-python")
	tests := []struct {
		name     string
		python   string // the fresh interpreter: missing where the runner must do it all
		fail     func() (int, error)
		wantWarm bool
		wantErr  string
	}{
		{"the runner counts; no interpreter is started", missing, nil, true, ""},
		{"the runner cannot run it: a fresh count", py, func() (int, error) { return 0, errors.New("gone") }, false, ""},
		{"it fails in the runner: a fresh count", py, func() (int, error) { return 1, nil }, false, ""},
		{"it fails in both: the fresh count's words", missing, func() (int, error) { return 2, nil }, false, "starting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &execRunner{python: py, fail: tt.fail}
			c := &PythonTokenCounter{Python: tt.python, Dir: tok, Runner: r}
			rep, err := Check(context.Background(), opts(c))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.calls != 1 || c.Warm != tt.wantWarm {
				t.Fatalf("runner called %d times, Warm=%v; want once, Warm=%v", r.calls, c.Warm, tt.wantWarm)
			}
			if r.env["HF_HUB_OFFLINE"] != "1" {
				t.Fatalf("the runner got env %v, without HF_HUB_OFFLINE=1", r.env)
			}
			if !reflect.DeepEqual(rep.Stats, fresh.Stats) || !reflect.DeepEqual(rep.Warnings, fresh.Warnings) {
				t.Fatalf("report differs from a fresh count's:\n%+v\n%+v", rep.Stats, fresh.Stats)
			}
		})
	}
}

// TestPythonTokenCounterRunnerCaches: a count run in the runner is cached like a fresh
// one, and the cached answer needs neither.
func TestPythonTokenCounterRunnerCaches(t *testing.T) {
	py := testPython(t)
	train := writeLines(t, "train.jsonl", examples(0, 20, prod))
	tok := buildTokenizer(t, py, train)
	cache := t.TempDir()
	r := &execRunner{python: py}
	first := &PythonTokenCounter{Python: py, Dir: tok, CacheDir: cache, Runner: r}
	want := check(t, Options{Train: train, Tokenizer: first})
	if !first.Warm || first.Cached {
		t.Fatalf("first count: warm=%v cached=%v", first.Warm, first.Cached)
	}
	second := &PythonTokenCounter{Python: py, Dir: tok, CacheDir: cache, Runner: r}
	got := check(t, Options{Train: train, Tokenizer: second})
	if !second.Cached || second.Warm || r.calls != 1 {
		t.Fatalf("second count: cached=%v warm=%v, runner calls %d", second.Cached, second.Warm, r.calls)
	}
	if !reflect.DeepEqual(got.Stats, want.Stats) {
		t.Fatalf("cached stats differ:\n%+v\n%+v", got.Stats, want.Stats)
	}
}

// TestPythonTokenCounterRunnerInterrupted: Ctrl-C while the runner counts ends the check
// with the interruption, not with a report that has no token counts in it, and starts
// no fresh count.
func TestPythonTokenCounterRunnerInterrupted(t *testing.T) {
	py := testPython(t)
	train := writeLines(t, "train.jsonl", examples(0, 20, prod))
	tok := buildTokenizer(t, py, train)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &execRunner{python: py, fail: func() (int, error) { cancel(); return 0, context.Canceled }}
	c := &PythonTokenCounter{Python: py, Dir: tok, Runner: r}
	rep, err := Check(ctx, Options{Train: train, MaxLength: 24, Tokenizer: c})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got report %v, error %v; want the interruption", rep != nil, err)
	}
	if r.calls != 1 || c.Warm {
		t.Fatalf("runner called %d times, Warm=%v", r.calls, c.Warm)
	}
}
