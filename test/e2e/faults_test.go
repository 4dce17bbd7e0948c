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
		resumeStep int    // the step the resumed trainer starts at (-1: nothing trained)
		say        string // in the controller's output
	}
	resume := []string{"train", "--resume", runID}
	cases := []struct {
		name   string
		damage func(t *testing.T, g *fixture, dir string)
		args   []string // default: train --resume RUN
		want   check
		after  func(t *testing.T, g *fixture, dir string)
	}{
		{name: "killed after a checkpoint", want: check{0, 16, "resuming from"}},
		{name: "optimizer.pt removed from the newest checkpoint", damage: func(t *testing.T, _ *fixture, dir string) {
			must(t, os.Remove(filepath.Join(cpDir(dir, 16), "optimizer.pt")))
		}, want: check{0, 8, "checkpoint-16 is not used: optimizer.pt is missing"}},
		{name: "adapter truncated in the newest checkpoint", damage: func(t *testing.T, _ *fixture, dir string) {
			must(t, os.Truncate(filepath.Join(cpDir(dir, 16), "adapter_model.safetensors"), 100))
		}, want: check{0, 8, "checkpoint-16 is not used: adapter_model.safetensors has 100 bytes"}},
		{name: "scheduler changed in place", damage: func(t *testing.T, _ *fixture, dir string) {
			p := filepath.Join(cpDir(dir, 16), "scheduler.pt")
			b, err := os.ReadFile(p)
			must(t, err)
			b[len(b)/2] ^= 1
			must(t, os.WriteFile(p, b, 0o644))
		}, want: check{0, 8, "checkpoint-16 is not used: scheduler.pt: sha256"}},
		{name: "empty marker", damage: func(t *testing.T, _ *fixture, dir string) {
			must(t, os.WriteFile(filepath.Join(cpDir(dir, 16), run.CompleteMarker), nil, 0o644))
		}, want: check{0, 8, "checkpoint-16 is not used: loractl-complete.json: not a JSON object"}},
		{name: "marker removed (killed inside the save)", damage: func(t *testing.T, _ *fixture, dir string) {
			must(t, os.Remove(filepath.Join(cpDir(dir, 16), run.CompleteMarker)))
			must(t, os.Truncate(filepath.Join(cpDir(dir, 16), "optimizer.pt"), 10))
		}, want: check{0, 8, "checkpoint-16 is not used: loractl-complete.json"}},
		{name: "no checkpoint verifies", damage: func(t *testing.T, _ *fixture, dir string) {
			for _, s := range []int{8, 16} {
				must(t, os.Remove(filepath.Join(cpDir(dir, s), "optimizer.pt")))
			}
		}, want: check{2, -1, "checkpoint-8: optimizer.pt is missing"}},
		{name: "trainer copy edited in the store", damage: func(t *testing.T, g *fixture, _ string) {
			trainers, _ := filepath.Glob(filepath.Join(g.runs, ".trainer", "*", run.TrainerFile))
			if len(trainers) != 1 {
				t.Fatalf("trainer copies: %v", trainers)
			}
			b, _ := os.ReadFile(trainers[0])
			must(t, os.WriteFile(trainers[0], append([]byte("raise SystemExit('edited copy ran')\n"), b...), 0o644))
		}, want: check{0, 16, "train_lora.py was modified): reinstalled it"}},
		{name: "train.log is a link", damage: func(t *testing.T, g *fixture, dir string) {
			victim := filepath.Join(g.dir, "victim.txt")
			must(t, os.WriteFile(victim, []byte("keep\n"), 0o644))
			log := filepath.Join(dir, run.LogFile)
			must(t, os.Remove(log))
			must(t, os.Symlink(victim, log))
		}, want: check{1, -1, "train.log is a symbolic link"}, after: func(t *testing.T, g *fixture, _ string) {
			if b, _ := os.ReadFile(filepath.Join(g.dir, "victim.txt")); string(b) != "keep\n" {
				t.Errorf("the link's target was written: %q", b)
			}
		}},
		{name: "events.jsonl with garbage lines", damage: func(t *testing.T, _ *fixture, dir string) {
			fh, err := os.OpenFile(filepath.Join(dir, run.EventsFile), os.O_WRONLY|os.O_APPEND, 0)
			must(t, err)
			_, err = fh.WriteString("\x00\x00 not json\n{\"type\":\"log\",\"st")
			must(t, err)
			must(t, fh.Close())
		}, want: check{0, 16, "resuming from"}, after: func(t *testing.T, g *fixture, _ string) {
			if r := g.loractl(t, "logs", runID); r.code != 0 || !strings.Contains(r.stdout, "trainer completed") {
				t.Errorf("logs after garbage: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
		}},
		{name: "manifest.json corrupted", damage: func(t *testing.T, _ *fixture, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, run.ManifestFile), []byte(`{"run_id": "x", "state":`), 0o644))
		}, want: check{2, -1, "manifest cannot be read"}, after: func(t *testing.T, g *fixture, _ string) {
			r := g.loractl(t, "train", g.config, "--force")
			if r.code != 0 || !strings.Contains(r.stderr, "manifest.json was unreadable") {
				t.Fatalf("train --force over a corrupt manifest: exit %d\n%s", r.code, r.stderr)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := *f
			g.runs = copyStore(t, killedStore)
			dir := filepath.Join(g.runs, runID)
			if tc.damage != nil {
				tc.damage(t, &g, dir)
			}
			args := tc.args
			if args == nil {
				args = resume
			}
			r := g.loractl(t, args...)
			if r.code != tc.want.code || !strings.Contains(r.stderr+r.stdout, tc.want.say) {
				t.Fatalf("exit %d, want %d with %q:\n%s\n%s", r.code, tc.want.code, tc.want.say, r.stdout, r.stderr)
			}
			if tc.after != nil {
				tc.after(t, &g, dir)
			}
			if tc.want.resumeStep < 0 {
				return
			}
			if got := resumedAt(t, dir); got != tc.want.resumeStep {
				t.Errorf("resumed at step %d, want %d", got, tc.want.resumeStep)
			}
			sameAs(t, want, outcome(t, dir))
		})
	}

	// Killed with SIGKILL while checkpoint-16 was being written: whatever the save had
	// written, resume takes a checkpoint that verifies and ends where the
	// uninterrupted run ends.
	t.Run("killed inside a checkpoint save", func(t *testing.T) {
		g := *f
		g.runs = filepath.Join(t.TempDir(), "runs")
		dir := killAt(t, &g, func(dir string) bool {
			_, err := os.Stat(cpDir(dir, 16))
			return err == nil
		})
		_, markerErr := os.Stat(filepath.Join(cpDir(dir, 16), run.CompleteMarker))
		if r := g.loractl(t, "train", "--resume", filepath.Base(dir)); r.code != 0 {
			t.Fatalf("resume: exit %d\n%s", r.code, r.stderr)
		}
		step := resumedAt(t, dir)
		if (markerErr != nil && step != 8) || (step != 8 && step != 16) {
			t.Errorf("resumed at %d (marker of checkpoint-16 present: %v)", step, markerErr == nil)
		}
		t.Logf("killed inside the save: checkpoint-16 marker present %v, resumed at %d", markerErr == nil, step)
		sameAs(t, want, outcome(t, dir))
	})

	// Ctrl-C three times: the third kills the trainer; the exit is still 130 and a
	// resume still ends where the uninterrupted run ends.
	t.Run("ctrl-c storm", func(t *testing.T) {
		g := *f
		g.runs = filepath.Join(t.TempDir(), "runs")
		cmd := g.command(t, "train", g.config)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		must(t, cmd.Start())
		for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if ms, _ := (&run.Store{Base: g.runs}).List(); len(ms) == 1 {
				if s, ok := run.LastStep(filepath.Join(g.runs, ms[0].RunID)); ok && s >= 10 {
					break
				}
			}
		}
		for i := 0; i < 3; i++ {
			_ = cmd.Process.Signal(syscall.SIGINT)
			time.Sleep(20 * time.Millisecond)
		}
		err := cmd.Wait()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 130 {
			t.Fatalf("after three Ctrl-C: %v\n%s", err, out.String())
		}
		ms, _ := (&run.Store{Base: g.runs}).List()
		dir := filepath.Join(g.runs, ms[0].RunID)
		if pid, _ := strconv.Atoi(ms[0].Handle.ID); pid > 0 {
			waitGone(t, pid)
		}
		if r := g.loractl(t, "train", "--resume", ms[0].RunID); r.code != 0 {
			t.Fatalf("resume after the storm: exit %d\n%s", r.code, r.stderr)
		}
		sameAs(t, want, outcome(t, dir))
	})

	t.Run("read-only store", func(t *testing.T) {
		mnt := tmpfs(t, "16m")
		g := *f
		g.runs = filepath.Join(mnt, "runs")
		if out, err := exec.Command("cp", "-a", killedStore, g.runs).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		if out, err := exec.Command("mount", "-o", "remount,ro", mnt).CombinedOutput(); err != nil {
			t.Fatalf("remount ro: %v %s", err, out)
		}
		// The controller was killed, so the manifest still says running: runs must tell
		// the truth from the driver even though it cannot record it.
		r := g.loractl(t, "runs")
		if r.code != 0 || strings.Contains(r.stdout, "running") || !strings.Contains(r.stderr, "not recorded") {
			t.Errorf("runs on a read-only store: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stdout, " 16 ") {
			t.Errorf("runs does not show the step the killed run reached (16):\n%s", r.stdout)
		}
		r = g.loractl(t, "train", "--resume", runID)
		if r.code == 0 || !strings.Contains(r.stderr, "read-only file system") {
			t.Errorf("resume on a read-only store: exit %d\n%s", r.code, r.stderr)
		}
	})

	t.Run("disk full", func(t *testing.T) {
		mnt := tmpfs(t, "8m")
		g := *f
		g.runs = filepath.Join(mnt, "runs")
		if out, err := exec.Command("cp", "-a", killedStore, g.runs).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		// Leave room for the logs but not for checkpoint-24.
		var st syscall.Statfs_t
		must(t, syscall.Statfs(mnt, &st))
		filler := filepath.Join(mnt, "filler")
		must(t, os.WriteFile(filler, make([]byte, int64(st.Bavail)*st.Bsize-96<<10), 0o644))
		r := g.loractl(t, "train", "--resume", runID)
		if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "is full (") {
			t.Fatalf("resume on a full disk: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		// The save that failed left nothing behind: its space is free again, and the
		// controller could record the failure.
		if _, err := os.Stat(filepath.Join(g.runs, runID, run.CheckpointsDir, "checkpoint-24")); err == nil {
			t.Error("the failed save left checkpoint-24 behind")
		}
		if m, err := run.ReadManifest(filepath.Join(g.runs, runID)); err != nil || m.State != run.StateFailed {
			t.Errorf("the failure was not recorded: %v", err)
		}
		must(t, os.Remove(filler))
		r = g.loractl(t, "train", "--resume", runID)
		if r.code != 0 {
			t.Fatalf("resume once there is room: exit %d\n%s", r.code, r.stderr)
		}
		sameAs(t, want, outcome(t, filepath.Join(g.runs, runID)))
	})
}

// tmpfs mounts a small tmpfs for the test (root only: mount needs it).
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

func sameAs(t *testing.T, want, got reference) {
	t.Helper()
	if got.evalAfter != want.evalAfter || !bytes.Equal(got.adapter, want.adapter) {
		t.Errorf("eval loss %v (uninterrupted %v), adapter identical: %v", got.evalAfter, want.evalAfter, bytes.Equal(got.adapter, want.adapter))
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
