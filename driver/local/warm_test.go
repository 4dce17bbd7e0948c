package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/python"
)

// stubTrainer stands in for train_lora.py beside the real warm_start.py: its imports
// print (to stdout and stderr, as libraries do) and the heavy ones sleep, marking
// their start in STUB_HEAVY_MARK when set; main records how it ran (warm or fresh, its pid, argv, cwd
// and the environment the launch set) in the run dir, then exits 7.
const stubTrainer = `import json, os, sys, time

def import_light():
    print("light import says hi")  # a library that prints as it imports
    time.sleep(float(os.environ.get("STUB_LIGHT_SECONDS", "0")))

def import_heavy():
    if os.environ.get("STUB_HEAVY_MARK"):
        open(os.environ["STUB_HEAVY_MARK"], "w").close()
    print("heavy import warns", file=sys.stderr)
    time.sleep(float(os.environ.get("STUB_IMPORT_SECONDS", "0.3")))

def main(argv, mode="warm"):
    print("trainer says hello")
    with open(os.path.join(os.getcwd(), "ran.json"), "w") as f:
        json.dump({"mode": mode, "pid": os.getpid(), "argv": argv, "cwd": os.getcwd(),
                   "batch": os.environ.get("LORACTL_MICRO_BATCH"), "pgid": os.getpgid(0),
                   "helper_var": os.environ.get("HELPER_VAR")}, f)
    return 7

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], "fresh"))
`

type ran struct {
	Mode  string   `json:"mode"`
	PID   int      `json:"pid"`
	Argv  []string `json:"argv"`
	Cwd   string   `json:"cwd"`
	Batch *string  `json:"batch"`
	PGID  int      `json:"pgid"`
	// HelperVar is HELPER_VAR as the trainer saw it.
	HelperVar *string `json:"helper_var"`
}

// warmTask is a trainer task over the stub, in a fresh run dir.
func warmTask(t *testing.T) *driver.Task {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	trainer := t.TempDir()
	files := map[string][]byte{"train_lora.py": []byte(stubTrainer)}
	// The real warm start and the light support module it exits through, as installed.
	for _, name := range []string{warmScript, "train_lora_support.py"} {
		body, err := python.Read(name)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = body
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(trainer, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	return &driver.Task{
		RunID: "warm", RunDir: dir,
		Command: []string{py, filepath.Join(trainer, "train_lora.py"), "--config", filepath.Join(dir, "resolved.json"), "--run-dir", dir},
		Env:     map[string]string{"PYTHONDONTWRITEBYTECODE": "1"},
		LogPath: filepath.Join(dir, "train.log"),
	}
}

func readRan(t *testing.T, dir string) ran {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "ran.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r ran
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func gone(pid int) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); err != nil {
			return true
		}
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if f := statFields(string(b)); len(f) > 0 && f[0] == "Z" {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func TestWarmStart(t *testing.T) {
	cases := []struct {
		name string
		// late changes the task between Prewarm and Start, as the pre-flight does.
		late     func(*driver.Task)
		wantMode string
	}{
		{"takes the pre-flight's decisions", func(tk *driver.Task) {
			tk.Env["LORACTL_MICRO_BATCH"] = "4"
			tk.Env["CUDA_VISIBLE_DEVICES"] = ""
		}, "warm"},
		{"an environment read at import time starts afresh", func(tk *driver.Task) {
			tk.Env["HF_HOME"] = "/elsewhere"
			tk.Env["LORACTL_MICRO_BATCH"] = "4"
		}, "fresh"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := New()
			tk := warmTask(t)
			w, err := d.Prewarm(tk)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Drop()
			warm := d.warm.procs[commandKey(tk.Command)]
			if warm == nil {
				t.Fatal("no warm process")
			}
			tc.late(tk)
			h, err := d.Start(context.Background(), tk)
			if err != nil {
				t.Fatal(err)
			}
			res, err := d.Wait(context.Background(), h)
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != 7 {
				t.Fatalf("exit %d, want the trainer's 7", res.ExitCode)
			}
			r := readRan(t, tk.RunDir)
			if r.Mode != tc.wantMode {
				t.Fatalf("ran %s, want %s", r.Mode, tc.wantMode)
			}
			if h.ID != strconv.Itoa(r.PID) || r.PGID != r.PID {
				t.Fatalf("handle %s, trainer pid %d in group %d: the handle must name the trainer, leading its own group", h.ID, r.PID, r.PGID)
			}
			if (r.PID == warm.cmd.Process.Pid) != (tc.wantMode == "warm") {
				t.Fatalf("trainer pid %d, warm pid %d (mode %s)", r.PID, warm.cmd.Process.Pid, r.Mode)
			}
			if r.Batch == nil || *r.Batch != "4" || r.Cwd != tk.RunDir || strings.Join(r.Argv, " ") != strings.Join(tk.Command[2:], " ") {
				t.Fatalf("the trainer did not get the launch: %+v", r)
			}
			log, _ := os.ReadFile(tk.LogPath)
			if !strings.Contains(string(log), "trainer says hello") {
				t.Fatalf("train.log lacks the trainer's output: %q", log)
			}
			// What the imports printed is in the log before the trainer's own output,
			// as a fresh trainer would have written it, and took no answer's place.
			if tc.wantMode == "warm" && !strings.HasPrefix(string(log), "light import says hi\nheavy import warns\n") {
				t.Fatalf("train.log does not start with the imports' output: %q", log)
			}
			if !gone(warm.cmd.Process.Pid) {
				t.Fatal("the warm process outlived the run")
			}
		})
	}
}

func TestWarmProcessDiscarded(t *testing.T) {
	for _, when := range []string{"while importing", "after importing", "at a detached start"} {
		t.Run(when, func(t *testing.T) {
			d := New()
			tk := warmTask(t)
			if when == "while importing" {
				tk.Env["STUB_IMPORT_SECONDS"] = "30"
			}
			w, err := d.Prewarm(tk)
			if err != nil {
				t.Fatal(err)
			}
			pid := d.warm.procs[commandKey(tk.Command)].cmd.Process.Pid
			if when == "after importing" {
				time.Sleep(time.Second)
			}
			if when == "at a detached start" {
				h, err := d.StartDetached(context.Background(), tk)
				if err != nil {
					t.Fatal(err)
				}
				if h.ID == strconv.Itoa(pid) {
					t.Fatal("a detached start took over the warm process")
				}
				if !gone(pid) {
					t.Fatal("the warm process was not dropped")
				}
				deadline := time.Now().Add(10 * time.Second)
				for time.Now().Before(deadline) {
					if _, err := os.Stat(filepath.Join(tk.RunDir, "ran.json")); err == nil {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				if r := readRan(t, tk.RunDir); r.Mode != "fresh" {
					t.Fatalf("detached trainer ran %s", r.Mode)
				}
				return
			}
			w.Drop()
			if !gone(pid) {
				t.Fatal("a discarded warm process is still running")
			}
			if _, err := os.Stat(filepath.Join(tk.RunDir, "ran.json")); err == nil {
				t.Fatal("a discarded warm process ran the trainer")
			}
			if _, err := os.Stat(tk.LogPath); err == nil {
				t.Fatal("a discarded warm process wrote the log")
			}
		})
	}
}

func TestPrewarmLeavesOtherCommandsAlone(t *testing.T) {
	d := New()
	tk := task(t, "exit 0")
	w, err := d.Prewarm(tk)
	if err != nil {
		t.Fatal(err)
	}
	if w != nil || len(d.warm.procs) != 0 {
		t.Fatal("a command that is not the trainer was warmed")
	}
}

// helperScript stands in for the pre-flight's token count: it prints its arguments
// and HELPER_VAR, writes to stderr, and exits with the status its first argument names
// (or sleeps, for "sleep"; reads its input to the end, for "stdin").
const helperScript = `import os, sys, time
print("args", sys.argv[1:], os.environ.get("HELPER_VAR"))
print("helper complains", file=sys.stderr)
if sys.argv[1] == "sleep":
    time.sleep(60)
if sys.argv[1] == "stdin":
    print("read", repr(sys.stdin.read()))
    sys.exit(0)
sys.exit(int(sys.argv[1]))
`

// TestWarmRunsHelpers: a helper run in the warm process gives a fresh run's status and
// output, as often as asked, and leaves nothing behind for the trainer it then becomes.
func TestWarmRunsHelpers(t *testing.T) {
	d := New()
	tk := warmTask(t)
	script := filepath.Join(t.TempDir(), "helper.py")
	if err := os.WriteFile(script, []byte(helperScript), 0o644); err != nil {
		t.Fatal(err)
	}
	mark := filepath.Join(t.TempDir(), "heavy-started")
	tk.Env["STUB_HEAVY_MARK"] = mark
	tk.Env["STUB_LIGHT_SECONDS"] = "0.5" // the first helper waits for the light imports
	w, err := d.Prewarm(tk)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Drop()
	pid := d.warm.procs[commandKey(tk.Command)].cmd.Process.Pid
	// A helper that reads its input gets none, as a fresh one would, rather than
	// waiting on the request pipe.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var in bytes.Buffer
	if got, _, err := w.RunPython(ctx, script, []string{"stdin"}, nil, &in); err != nil || got != 0 || !strings.HasSuffix(in.String(), "read ''\n") {
		t.Fatalf("a helper reading its input: exit %d, %v, stdout %q", got, err, in.String())
	}
	// The heavy imports go on once the helpers are answered, while the pre-flight
	// still works, not only when the launch arrives.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(mark); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the heavy imports did not start before the launch")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, code := range []int{3, 0} {
		var out bytes.Buffer
		got, stderr, err := w.RunPython(context.Background(), script, []string{strconv.Itoa(code), "two words"}, map[string]string{"HELPER_VAR": "set"}, &out)
		if err != nil {
			t.Fatal(err)
		}
		if got != code || out.String() != "args ['"+strconv.Itoa(code)+"', 'two words'] set\n" || !strings.Contains(string(stderr), "helper complains") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want %d", got, out.String(), stderr, code)
		}
	}
	h, err := d.Start(context.Background(), tk)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := d.Wait(context.Background(), h); err != nil || res.ExitCode != 7 {
		t.Fatalf("trainer: %+v %v", res, err)
	}
	r := readRan(t, tk.RunDir)
	if r.Mode != "warm" || r.PID != pid {
		t.Fatalf("ran %s in %d, want warm in the helpers' process %d", r.Mode, r.PID, pid)
	}
	if r.HelperVar != nil {
		t.Fatalf("the trainer inherited the helper's HELPER_VAR=%s", *r.HelperVar)
	}
	if _, _, err := w.RunPython(context.Background(), script, []string{"0"}, nil, io.Discard); !errors.Is(err, errWarmGone) {
		t.Fatalf("a helper after the launch: %v, want errWarmGone", err)
	}
}

func TestWarmHelperCancelledOrDropped(t *testing.T) {
	script := filepath.Join(t.TempDir(), "helper.py")
	if err := os.WriteFile(script, []byte(helperScript), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("cancelled", func(t *testing.T) {
		d := New()
		w, err := d.Prewarm(warmTask(t))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Drop()
		pid := w.(*warmRef).w.cmd.Process.Pid
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		if _, _, err := w.RunPython(ctx, script, []string{"sleep"}, nil, io.Discard); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want the deadline", err)
		}
		if !gone(pid) {
			t.Fatal("the warm process outlived its cancelled helper")
		}
	})
	t.Run("dropped", func(t *testing.T) {
		d := New()
		w, err := d.Prewarm(warmTask(t))
		if err != nil {
			t.Fatal(err)
		}
		w.Drop()
		if _, _, err := w.RunPython(context.Background(), script, []string{"0"}, nil, io.Discard); !errors.Is(err, errWarmGone) {
			t.Fatalf("got %v, want errWarmGone", err)
		}
	})
}
