package local

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loractl/loractl/driver"
)

// task runs script under sh in a fresh run dir.
func task(t *testing.T, script string) *driver.Task {
	t.Helper()
	dir := t.TempDir()
	return &driver.Task{
		RunID:   "test",
		RunDir:  dir,
		Command: []string{"/bin/sh", "-c", script},
		Env:     map[string]string{"LORACTL_TEST_VALUE": "it's $(not) expanded"},
		LogPath: filepath.Join(dir, "train.log"),
	}
}

func TestExitCodes(t *testing.T) {
	cases := []struct {
		name   string
		script string
		code   int
		signal int
	}{
		{"success", "exit 0", 0, 0},
		{"failure", "exit 1", 1, 0},
		{"interrupted", "exit 75", 75, 0},
		{"killed", "kill -9 $$", 137, 9},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := New()
			h, err := d.Start(context.Background(), task(t, tc.script))
			if err != nil {
				t.Fatal(err)
			}
			res, err := d.Wait(context.Background(), h)
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != tc.code || res.Signal != tc.signal {
				t.Fatalf("got exit %d signal %d, want %d %d", res.ExitCode, res.Signal, tc.code, tc.signal)
			}
		})
	}
}

func TestLogAndEnvironment(t *testing.T) {
	d := New()
	tk := task(t, `echo "out:$LORACTL_TEST_VALUE"; echo err >&2; pwd`)
	h, err := d.Start(context.Background(), tk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Wait(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(tk.LogPath)
	for _, want := range []string{"out:it's $(not) expanded", "err", tk.RunDir} {
		if !strings.Contains(string(b), want) {
			t.Errorf("log %q lacks %q", b, want)
		}
	}
}

// A second controller process decodes the stored handle and stops the trainer; the
// trainer's TERM trap runs (it would save a checkpoint) before it exits.
func TestReattachAndStop(t *testing.T) {
	first := New()
	tk := task(t, `trap 'echo checkpoint > cp; exit 75' TERM; echo ready > ready; while :; do sleep 0.05; done`)
	h, err := first.Start(context.Background(), tk)
	if err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(tk.RunDir, "ready"))
	raw, _ := json.Marshal(h)
	var stored driver.Handle
	if err := json.Unmarshal(raw, &stored); err != nil {
		t.Fatal(err)
	}

	second := New()
	st, err := second.Inspect(context.Background(), &stored)
	if err != nil || st.State != driver.StateRunning {
		t.Fatalf("inspect from a new driver: %+v %v", st, err)
	}
	if err := second.Stop(context.Background(), &stored, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	res, err := first.Wait(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 75 {
		t.Fatalf("exit %d, want 75 from the TERM trap", res.ExitCode)
	}
	if _, err := os.Stat(filepath.Join(tk.RunDir, "cp")); err != nil {
		t.Fatal("the trap did not run before exit")
	}
	if st, _ := second.Inspect(context.Background(), &stored); st.State != driver.StateExited {
		t.Fatalf("state after stop: %s", st.State)
	}
	if err := second.Signal(context.Background(), &stored, "TERM"); !errors.Is(err, driver.ErrTaskNotFound) {
		t.Fatalf("signal to a gone task: %v, want ErrTaskNotFound", err)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	d := New()
	tk := task(t, `trap '' TERM; echo ready > ready; while :; do sleep 0.05; done`)
	h, err := d.Start(context.Background(), tk)
	if err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(tk.RunDir, "ready"))
	if err := d.Stop(context.Background(), h, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	res, _ := d.Wait(context.Background(), h)
	if res.Signal != 9 {
		t.Fatalf("got %+v, want killed by SIGKILL", res)
	}
}

func TestHandleChecks(t *testing.T) {
	d := New()
	cases := map[string]*driver.Handle{
		"other driver": {Driver: "slurm", Version: driver.HandleVersion, State: json.RawMessage(`{"pid":1}`)},
		"old version":  {Driver: Name, Version: 99, State: json.RawMessage(`{"pid":1}`)},
		"bad state":    {Driver: Name, Version: driver.HandleVersion, State: json.RawMessage(`{}`)},
	}
	for name, h := range cases {
		if _, err := d.Inspect(context.Background(), h); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := DecodeOptions(json.RawMessage(`{"gpus": 2}`)); err == nil {
		t.Error("unknown local option accepted")
	}
}

func waitFile(t *testing.T, p string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(p); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never appeared", p)
}

// A train.log planted as a link is refused: resuming appends to the log, and the
// append must not land in the link's target.
func TestLogLinkRefused(t *testing.T) {
	tk := task(t, "echo written")
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, tk.LogPath); err != nil {
		t.Fatal(err)
	}
	_, err := New().Start(context.Background(), tk)
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("Start with train.log a link: %v", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep\n" {
		t.Errorf("the link's target changed: %q", b)
	}
}
