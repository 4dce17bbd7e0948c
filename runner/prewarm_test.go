package runner

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/python"
	"github.com/loractl/loractl/run"
)

// warmingDriver records what Prewarm is asked to start and whether it was dropped.
type warmingDriver struct {
	fakeDriver
	warmed    []*driver.Task
	discarded int
}

func (d *warmingDriver) Prewarm(t *driver.Task) (driver.Warm, error) {
	d.warmed = append(d.warmed, t)
	return countedWarm{&d.discarded}, nil
}

// countedWarm counts its drops.
type countedWarm struct{ drops *int }

func (w countedWarm) Drop() { *w.drops++ }

func (countedWarm) RunPython(context.Context, string, []string, map[string]string, io.Writer) (int, []byte, error) {
	return 0, nil, errors.New("not used here")
}

func TestPrewarm(t *testing.T) {
	cases := []struct {
		name  string
		opts  func(*LaunchOptions)
		setup func(t *testing.T, trainer string)
		warm  bool
	}{
		{"a fresh run, trainer not installed yet", nil, nil, true},
		{"a fresh run, trainer installed", nil, func(t *testing.T, trainer string) {
			if _, err := ensureTrainer(trainer); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"a resumed run starts afresh", func(o *LaunchOptions) { o.Resume = ResumeAuto }, nil, false},
		{"a detached run starts afresh", func(o *LaunchOptions) { o.Detach = true }, nil, false},
		{"an edited trainer copy is left to Launch to reinstall, and say so", nil, func(t *testing.T, trainer string) {
			if _, err := ensureTrainer(trainer); err != nil {
				t.Fatal(err)
			}
			must(t, os.WriteFile(filepath.Join(trainer, run.TrainerFile), []byte("import os\n"), 0o644))
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := prepared(t, dir, cfgYAML)
			store, _ := run.NewStore(filepath.Join(dir, "runs"))
			d := &warmingDriver{}
			o := LaunchOptions{Driver: d, Python: "/usr/bin/python3", Env: map[string]string{"A": "1"}}
			if tc.opts != nil {
				tc.opts(&o)
			}
			trainer := trainerDir(store.Dir(p.RunID), p)
			if tc.setup != nil {
				tc.setup(t, trainer)
			}
			w := Prewarm(store, p, o)
			if got := len(d.warmed) == 1; got != tc.warm || (w != nil) != tc.warm {
				t.Fatalf("warmed %d times, returned %v, want warm=%v", len(d.warmed), w, tc.warm)
			}
			if w != nil {
				w.Drop()
			}
			if !tc.warm {
				if d.discarded != 0 {
					t.Fatal("discarded a warm start that never was")
				}
				return
			}
			if d.discarded != 1 {
				t.Fatalf("discard dropped %d warm starts, want 1", d.discarded)
			}
			want := TaskFor(store.Dir(p.RunID), p, o, "")
			if !slices.Equal(d.warmed[0].Command, want.Command) || d.warmed[0].Env["A"] != "1" {
				t.Fatalf("warmed %v, the launch would run %v", d.warmed[0].Command, want.Command)
			}
			if problem := checkFiles(trainer, python.TrainerFiles); problem != "" {
				t.Fatalf("the warmed trainer's copy: %s", problem)
			}
		})
	}
	t.Run("off with "+WarmStartEnv+"=0", func(t *testing.T) {
		t.Setenv(WarmStartEnv, "0")
		dir := t.TempDir()
		d := &warmingDriver{}
		store, _ := run.NewStore(filepath.Join(dir, "runs"))
		Prewarm(store, prepared(t, dir, cfgYAML), LaunchOptions{Driver: d, Python: "python3"})
		if len(d.warmed) != 0 {
			t.Fatal("warmed although turned off")
		}
	})
	t.Run("a driver that cannot warm", func(t *testing.T) {
		dir := t.TempDir()
		store, _ := run.NewStore(filepath.Join(dir, "runs"))
		if w := Prewarm(store, prepared(t, dir, cfgYAML), LaunchOptions{Driver: &fakeDriver{}, Python: "python3"}); w != nil {
			t.Fatalf("warmed %v with a driver that cannot warm", w)
		}
		if _, err := os.Stat(filepath.Join(dir, "runs")); err == nil {
			t.Fatal("installed a trainer copy for a driver that cannot warm")
		}
	})
}
