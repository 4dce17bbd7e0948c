package run

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func TestIDStability(t *testing.T) {
	resolved := []byte(`{"version":1,"name":"a","data":{"train":"/x/train.jsonl","eval":"","eval_split":0},"lora":{"r":16}}`)
	moved := []byte(`{"lora":{"r":16},"version":1,"name":"a","data":{"train":"/elsewhere/train.jsonl","eval":"","eval_split":0}}`)
	other := []byte(`{"version":1,"name":"a","data":{"train":"/x/train.jsonl","eval":"","eval_split":0},"lora":{"r":8}}`)
	id := func(b []byte, data ...string) string {
		t.Helper()
		s, err := ID("a", b, data)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := id(resolved, "train:abc")
	cases := []struct {
		name string
		got  string
		same bool
	}{
		{"same inputs", id(resolved, "train:abc"), true},
		{"data moved, key order differs", id(moved, "train:abc"), true},
		{"other hyperparameter", id(other, "train:abc"), false},
		{"other data content", id(resolved, "train:abd"), false},
	}
	for _, tc := range cases {
		if (tc.got == base) != tc.same {
			t.Errorf("%s: %s vs %s", tc.name, tc.got, base)
		}
	}
	if len(base) != len("a-")+10 {
		t.Errorf("id %q: want name-<10 hex>", base)
	}
}

func TestFollowerHoldsPartialLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), EventsFile)
	f := NewFollower(p)
	if evs, err := f.Poll(); err != nil || len(evs) != 0 {
		t.Fatalf("missing file: %v %v", evs, err)
	}
	appendTo(t, p, `{"type":"start","time":"2026-01-01T00:00:00Z","total_steps":4}`+"\n"+`{"type":"log","step":1,"lo`)
	evs, _ := f.Poll()
	if len(evs) != 1 || evs[0].Type != EventStart || evs[0].TotalSteps != 4 {
		t.Fatalf("first poll: %+v", evs)
	}
	appendTo(t, p, `ss":2.5}`+"\n"+"not json\n"+`{"no":"type"}`+"\n")
	evs, _ = f.Poll()
	if len(evs) != 1 || evs[0].Step != 1 || *evs[0].Loss != 2.5 {
		t.Fatalf("second poll: %+v", evs)
	}
	if string(evs[0].Raw) != `{"type":"log","step":1,"loss":2.5}` {
		t.Errorf("raw %s", evs[0].Raw)
	}
	g := NewFollower(p)
	g.StartAt(Size(p))
	appendTo(t, p, `{"type":"end","status":"completed"}`+"\n")
	if evs, _ := g.Poll(); len(evs) != 1 || evs[0].Status != "completed" {
		t.Fatalf("StartAt: %+v", evs)
	}
}

// TestFollowerRest: a last line without its newline is held back while the writer may
// still be writing it, and handed out by Rest once it is done; a torn line is not.
func TestFollowerRest(t *testing.T) {
	p := filepath.Join(t.TempDir(), EventsFile)
	appendTo(t, p, `{"type":"start","total_steps":4}`+"\n"+`{"type":"end","status":"completed"}`)
	f := NewFollower(p)
	if evs, _ := f.Poll(); len(evs) != 1 {
		t.Fatalf("poll: %+v", evs)
	}
	if e := f.Rest(); e == nil || e.Status != "completed" {
		t.Fatalf("Rest = %+v", e)
	}
	if e := f.Rest(); e != nil {
		t.Errorf("Rest twice: %+v", e)
	}
	q := filepath.Join(t.TempDir(), EventsFile)
	appendTo(t, q, `{"type":"end","sta`)
	g := NewFollower(q)
	if _, err := g.Poll(); err != nil {
		t.Fatal(err)
	}
	if e := g.Rest(); e != nil {
		t.Errorf("a torn line: %+v", e)
	}
}

func TestCheckpointsNumericOrderAndCompleteness(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name     string
		complete bool
	}{{"checkpoint-20", true}, {"checkpoint-100", false}, {"checkpoint-3", true}, {"notes", false}} {
		p := filepath.Join(dir, CheckpointsDir, c.name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if c.complete {
			writeRequired(t, p)
			appendTo(t, filepath.Join(p, CompleteMarker), `{"step":1}`)
		}
	}
	cps, err := Checkpoints(dir)
	if err != nil || len(cps) != 3 || cps[0].Step != 3 || cps[1].Step != 20 || cps[2].Step != 100 {
		t.Fatalf("%+v %v", cps, err)
	}
	latest, ok, _ := LatestComplete(dir)
	if !ok || latest.Step != 20 {
		t.Fatalf("latest complete %+v: the incomplete checkpoint-100 must be skipped", latest)
	}
}

func TestStoreAndLock(t *testing.T) {
	s, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Manifest("../etc"); err == nil {
		t.Fatal("path escape accepted")
	}
	dir := s.Dir("r1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteManifest(dir, &Manifest{RunID: "r1", State: StateRunning}); err != nil {
		t.Fatal(err)
	}
	ms, err := s.List()
	if err != nil || len(ms) != 1 || ms[0].RunID != "r1" {
		t.Fatalf("list: %+v %v", ms, err)
	}
	l, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockDir(dir); err == nil {
		t.Fatal("second lock on one run dir succeeded")
	}
	_ = l.Unlock()
	if l2, err := LockDir(dir); err != nil {
		t.Fatal(err)
	} else {
		_ = l2.Unlock()
	}
}

func appendTo(t *testing.T, p, s string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestLastStep(t *testing.T) {
	cases := []struct {
		name   string
		events string
		step   int
		ok     bool
	}{
		{"none", "", 0, false},
		{"fresh start", `{"type":"start","time":"2026-01-01T00:00:00Z"}` + "\n", 0, true},
		{"resumed, no step yet", `{"type":"start","time":"2026-01-01T00:00:00Z","resume_step":16}` + "\n", 16, true},
		{"logs and a checkpoint", `{"type":"start","time":"2026-01-01T00:00:00Z"}` + "\n" + `{"type":"log","time":"2026-01-01T00:00:00Z","step":10}` + "\n" + `{"type":"checkpoint","time":"2026-01-01T00:00:00Z","step":12}` + "\n" + `{"type":"gpu","time":"2026-01-01T00:00:00Z"}` + "\n", 12, true},
		{"torn last line", `{"type":"log","time":"2026-01-01T00:00:00Z","step":10}` + "\n" + `{"type":"log","ti`, 10, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.events != "" {
				appendTo(t, filepath.Join(dir, EventsFile), tc.events)
			}
			step, ok := LastStep(dir)
			if step != tc.step || ok != tc.ok {
				t.Errorf("LastStep = %d, %v; want %d, %v", step, ok, tc.step, tc.ok)
			}
		})
	}
}

// TestFollowerWake: closing Wake makes Follow look again at once, so the events the
// trainer wrote just before it exited arrive and Follow returns, with an interval long
// enough that only the wake can explain it.
func TestFollowerWake(t *testing.T) {
	p := filepath.Join(t.TempDir(), EventsFile)
	appendTo(t, p, `{"type":"start","total_steps":4}`+"\n")
	f := NewFollower(p)
	f.Interval = time.Hour
	wake := make(chan struct{})
	f.Wake = wake
	var exited atomic.Bool
	go func() {
		time.Sleep(50 * time.Millisecond)
		appendTo(t, p, `{"type":"end","status":"completed"}`+"\n")
		exited.Store(true)
		close(wake)
	}()
	var got []string
	errc := make(chan error, 1)
	go func() {
		errc <- f.Follow(context.Background(), exited.Load, func(e *Event) { got = append(got, e.Type) })
	}()
	select {
	case err := <-errc:
		if err != nil || len(got) != 2 || got[1] != EventEnd {
			t.Fatalf("Follow: %v, events %v", err, got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Follow did not wake when Wake closed")
	}
}
