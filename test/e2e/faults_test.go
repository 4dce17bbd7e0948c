package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loractl/loractl/run"
)

// The fault-injection suite: the real controller and the real trainer on the CPU, a
// fault applied to a run, and then a table of (fault, expected exit, expected state).
// A resume must end exactly where the uninterrupted run ends (same eval loss, the
// same adapter bytes), or refuse with a message that says why.
//
// Cost is kept small: one uninterrupted reference run, one run killed with SIGKILL right
// after its checkpoint-16 is complete, one killed inside the save of checkpoint-16; each
// case resumes a copy of one of those stores.

// reference is what the uninterrupted run ends with.
type reference struct {
	evalAfter float64
	adapter   []byte
}

var (
	refOnce sync.Once
	ref     reference
	refErr  string
)

func uninterrupted(t *testing.T) reference {
	t.Helper()
	refOnce.Do(func() {
		f := newFixture(t, "")
		r := f.loractl(t, "train", f.config)
		if r.code != 0 {
			refErr = "reference run: " + r.stderr
			return
		}
		dir := onlyRun(t, f.runs)
		ref = outcome(t, dir)
	})
	if refErr != "" {
		t.Fatal(refErr)
	}
	return ref
}

func onlyRun(t *testing.T, runs string) string {
	t.Helper()
	ms, err := (&run.Store{Base: runs}).List()
	if err != nil || len(ms) != 1 {
		t.Fatalf("runs in %s: %d, %v", runs, len(ms), err)
	}
	return filepath.Join(runs, ms[0].RunID)
}

func outcome(t *testing.T, dir string) reference {
	t.Helper()
	m, err := run.ReadManifest(dir)
	if err != nil || m.Result == nil || m.Result.EvalLossAfter == nil {
		t.Fatalf("no result in %s: %v", dir, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, run.AdapterDir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	return reference{*m.Result.EvalLossAfter, b}
}

// killAt trains f's config and SIGKILLs the trainer and then the controller as soon as
// ready(runDir) is true (polled every few ms), like a power cut at that moment.
func killAt(t *testing.T, f *fixture, ready func(runDir string) bool) string {
	t.Helper()
	cmd := f.command(t, "train", f.config)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		if ms, _ := (&run.Store{Base: f.runs}).List(); len(ms) == 1 && ms[0].Handle != nil {
			dir := filepath.Join(f.runs, ms[0].RunID)
			if ready(dir) {
				var pid int
				if _, err := fmt.Sscan(ms[0].Handle.ID, &pid); err != nil || pid <= 0 {
					t.Fatalf("handle %+v", ms[0].Handle)
				}
				_ = syscall.Kill(pid, syscall.SIGKILL)
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				waitGone(t, pid)
				if m, _ := run.ReadManifest(dir); m != nil && m.State == run.StateCompleted {
					t.Fatalf("the run completed before the kill:\n%s", out.String())
				}
				return dir
			}
		}
		time.Sleep(3 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	t.Fatalf("the fault point never came:\n%s", out.String())
	return ""
}

// waitGone waits until pid has exited (gone, or a zombie nobody reaps yet): a process
// killed with SIGKILL still runs for a moment while the kernel tears it down.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 2000 && pid > 0; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if i := bytes.LastIndexByte(b, ')'); i > 0 && len(b) > i+2 && b[i+2] == 'Z' {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("pid %d still runs after SIGKILL", pid)
}

// copyStore copies a run store (run dirs, the trainer copy) to a fresh directory, so
// that each case damages its own copy of one killed run.
func copyStore(t *testing.T, from string) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "runs")
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return to
}

func cpDir(dir string, step int) string {
	return filepath.Join(dir, run.CheckpointsDir, "checkpoint-"+strconv.Itoa(step))
}

func TestFaults(t *testing.T) {
	want := uninterrupted(t)
	f := newFixture(t, "")
	// Killed right after checkpoint-16 became complete.
	killed := killAt(t, f, func(dir string) bool {
		_, err := os.Stat(filepath.Join(cpDir(dir, 16), run.CompleteMarker))
		return err == nil
	})
	killedStore := filepath.Dir(killed)
	runID := filepath.Base(killed)

	type check struct {
		code       int
		resumeStep int    // the step the resumed trainer starts at (0: refused)
		say        string // in the controller's output
	}
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   check
	}{
		{"killed after a checkpoint", nil, check{0, 16, "resuming from"}},
		{"optimizer.pt removed from the newest checkpoint", func(t *testing.T, dir string) {
			must(t, os.Remove(filepath.Join(cpDir(dir, 16), "optimizer.pt")))
		}, check{0, 8, "checkpoint-16 is not used: optimizer.pt is missing"}},
		{"adapter truncated in the newest checkpoint", func(t *testing.T, dir string) {
			must(t, os.Truncate(filepath.Join(cpDir(dir, 16), "adapter_model.safetensors"), 100))
		}, check{0, 8, "checkpoint-16 is not used: adapter_model.safetensors has 100 bytes"}},
		{"scheduler changed in place", func(t *testing.T, dir string) {
			p := filepath.Join(cpDir(dir, 16), "scheduler.pt")
			b, err := os.ReadFile(p)
			must(t, err)
			b[len(b)/2] ^= 1
			must(t, os.WriteFile(p, b, 0o644))
		}, check{0, 8, "checkpoint-16 is not used: scheduler.pt: sha256"}},
		{"empty marker", func(t *testing.T, dir string) {
			must(t, os.WriteFile(filepath.Join(cpDir(dir, 16), run.CompleteMarker), nil, 0o644))
		}, check{0, 8, "checkpoint-16 is not used: loractl-complete.json: not a JSON object"}},
		{"no checkpoint verifies", func(t *testing.T, dir string) {
			for _, s := range []int{8, 16} {
				must(t, os.Remove(filepath.Join(cpDir(dir, s), "optimizer.pt")))
			}
		}, check{2, 0, "checkpoint-8: optimizer.pt is missing"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := *f
			g.runs = copyStore(t, killedStore)
			dir := filepath.Join(g.runs, runID)
			if tc.damage != nil {
				tc.damage(t, dir)
			}
			r := g.loractl(t, "train", "--resume", runID)
			if r.code != tc.want.code || !strings.Contains(r.stderr+r.stdout, tc.want.say) {
				t.Fatalf("exit %d, want %d with %q:\n%s\n%s", r.code, tc.want.code, tc.want.say, r.stdout, r.stderr)
			}
			if tc.want.resumeStep == 0 {
				return
			}
			if got := resumedAt(t, dir); got != tc.want.resumeStep {
				t.Errorf("resumed at step %d, want %d", got, tc.want.resumeStep)
			}
			got := outcome(t, dir)
			if got.evalAfter != want.evalAfter || !bytes.Equal(got.adapter, want.adapter) {
				t.Errorf("eval loss %v (uninterrupted %v), adapter identical: %v", got.evalAfter, want.evalAfter, bytes.Equal(got.adapter, want.adapter))
			}
		})
	}
}

// resumedAt is the resume_step of the last attempt's start event.
func resumedAt(t *testing.T, dir string) int {
	t.Helper()
	evs, err := run.ReadEvents(filepath.Join(dir, run.EventsFile))
	if err != nil {
		t.Fatal(err)
	}
	step := -1
	for _, e := range evs {
		if e.Type == run.EventStart {
			step = e.ResumeStep
		}
	}
	return step
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
