package sweep

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/run/runtest"
	"github.com/loractl/loractl/runner"
)

// fakeDriver stands in for a driver and its trainer: each task "trains" for a while,
// writing the events the trainer would, then exits as behave decides from the
// task's resolved config. Its state is keyed by handle id, so a second executor (a
// restarted controller) can inspect tasks the first one started.
type fakeDriver struct {
	behave func(r *config.Resolved) (exit int, after time.Duration)

	mu         sync.Mutex
	procs      map[string]*fakeProc
	starts     []string // run ids, in start order
	running    int
	maxRunning int
	holdUntil  int        // see holdForOverlap; 0: no hold
	arrays     [][]string // StartArray calls: run ids
	arrayCap   []int
}

type fakeProc struct {
	task *driver.Task
	done chan struct{}
	exit int
	stop chan string
	once sync.Once
}

func newFake(behave func(r *config.Resolved) (int, time.Duration)) *fakeDriver {
	return &fakeDriver{behave: behave, procs: map[string]*fakeProc{}}
}

func (d *fakeDriver) Name() string { return "fake" }

// holdForOverlap keeps a started point running until holdUntil points have run at
// once (or 10 s pass), so a test of parallelism does not depend on machine speed.
func (d *fakeDriver) holdForOverlap() {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		d.mu.Lock()
		enough := d.maxRunning >= d.holdUntil
		d.mu.Unlock()
		if enough {
			return
		}
	}
}

func (d *fakeDriver) Start(ctx context.Context, t *driver.Task) (*driver.Handle, error) {
	b, err := os.ReadFile(filepath.Join(t.RunDir, run.ResolvedFile))
	if err != nil {
		return nil, err
	}
	var r config.Resolved
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	exit, after := d.behave(&r)
	p := &fakeProc{task: t, done: make(chan struct{}), stop: make(chan string, 1)}
	d.mu.Lock()
	id := fmt.Sprintf("%s#%d", t.RunID, len(d.starts))
	d.procs[id] = p
	d.starts = append(d.starts, t.RunID)
	d.running++
	d.maxRunning = max(d.maxRunning, d.running)
	d.mu.Unlock()
	events := filepath.Join(t.RunDir, run.EventsFile)
	emit := func(ev map[string]any) {
		ev["time"] = time.Now().UTC()
		_ = run.AppendEvent(events, ev)
	}
	emit(map[string]any{"type": "start", "device": "cpu"})
	go func() {
		d.holdForOverlap()
		defer func() {
			d.mu.Lock()
			d.running--
			d.mu.Unlock()
			close(p.done)
		}()
		select {
		case <-time.After(after):
		case sig := <-p.stop:
			if sig == "KILL" {
				p.exit = 137
				return
			}
			cp := filepath.Join(t.RunDir, run.CheckpointsDir, "checkpoint-2")
			_ = runtest.WriteCheckpoint(cp, 2)
			emit(map[string]any{"type": "end", "status": "interrupted", "step": 2})
			p.exit = runner.TrainerInterrupted
			return
		}
		p.exit = exit
		if exit != 0 {
			emit(map[string]any{"type": "error", "error_type": "ValueError", "message": "scripted failure"})
			emit(map[string]any{"type": "end", "status": "failed", "step": 1})
			return
		}
		loss := 1.0 / float64(r.LoRA.R)
		emit(map[string]any{"type": "end", "status": "completed", "step": 4, "eval_loss_before": 2.0,
			"eval_loss_after": loss, "adapter_path": filepath.Join(t.RunDir, "adapter")})
	}()
	return &driver.Handle{Driver: "fake", Version: driver.HandleVersion, ID: id}, nil
}

func (d *fakeDriver) proc(h *driver.Handle) *fakeProc {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.procs[h.ID]
}

func (d *fakeDriver) Wait(ctx context.Context, h *driver.Handle) (*driver.ExitResult, error) {
	p := d.proc(h)
	if p == nil {
		return nil, driver.ErrTaskNotFound
	}
	select {
	case <-p.done:
		return &driver.ExitResult{ExitCode: p.exit}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (d *fakeDriver) Signal(_ context.Context, h *driver.Handle, sig string) error {
	p := d.proc(h)
	if p == nil {
		return driver.ErrTaskNotFound
	}
	p.once.Do(func() { p.stop <- sig })
	return nil
}

func (d *fakeDriver) Stop(ctx context.Context, h *driver.Handle, _ time.Duration) error {
	return d.Signal(ctx, h, "TERM")
}

func (d *fakeDriver) Capabilities() driver.Capabilities { return driver.Capabilities{} }

func (d *fakeDriver) Inspect(_ context.Context, h *driver.Handle) (*driver.Status, error) {
	p := d.proc(h)
	if p == nil {
		return nil, driver.ErrTaskNotFound
	}
	select {
	case <-p.done:
		return &driver.Status{State: driver.StateExited, Exit: &driver.ExitResult{ExitCode: p.exit}}, nil
	default:
		return &driver.Status{State: driver.StateRunning}, nil
	}
}

func (d *fakeDriver) startCount(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, s := range d.starts {
		if s == id {
			n++
		}
	}
	return n
}

// arrayDriver adds job arrays to the fake.
type arrayDriver struct{ *fakeDriver }

func (d arrayDriver) StartArray(ctx context.Context, tasks []*driver.Task, maxParallel int) ([]*driver.Handle, error) {
	var ids []string
	var hs []*driver.Handle
	for _, t := range tasks {
		h, err := d.Start(ctx, t)
		if err != nil {
			return nil, err
		}
		ids = append(ids, t.RunID)
		hs = append(hs, h)
	}
	d.mu.Lock()
	d.arrays = append(d.arrays, ids)
	d.arrayCap = append(d.arrayCap, maxParallel)
	d.mu.Unlock()
	return hs, nil
}

// harness is a sweep ready to execute against a driver.
type harness struct {
	dir   string
	store *run.Store
	plan  *Plan
	out   bytes.Buffer
}

func newHarness(t *testing.T, sweepYAML string) *harness {
	t.Helper()
	dir := project(t)
	f, err := parse(t, dir, sweepYAML)
	must(t, err)
	pl, err := Build(f, nil)
	must(t, err)
	store, err := run.NewStore(filepath.Join(dir, "runs"))
	must(t, err)
	return &harness{dir: dir, store: store, plan: pl}
}

// execute opens the sweep (as a fresh controller would) and runs it.
func (h *harness) execute(t *testing.T, d driver.Driver, slots int, tweak func(*Executor)) (*Summary, *Sweep) {
	t.Helper()
	sw, err := Open(filepath.Join(h.dir, "sweeps"), h.plan, d.Name())
	must(t, err)
	defer sw.Close()
	x := &Executor{Store: h.store, Sweep: sw, Plan: h.plan, Driver: d, Slots: make([]Slot, slots),
		Launch: runner.LaunchOptions{Python: "python3"}, Poll: 20 * time.Millisecond, Out: &h.out}
	if tweak != nil {
		tweak(x)
	}
	sum, err := x.Run(context.Background())
	must(t, err)
	return sum, sw
}

func (h *harness) point(i int) string { return h.plan.Points[i].RunID() }

func quick(exit int) func(*config.Resolved) (int, time.Duration) {
	return func(*config.Resolved) (int, time.Duration) { return exit, 30 * time.Millisecond }
}

const fourPoints = "name: s\nbase: base.yaml\nmax_parallel: 2\nretries: 1\nparameters:\n  lora.r: [1, 2, 3, 4]\n"

func TestSequentialThenNothingToDo(t *testing.T) {
	h := newHarness(t, fourPoints)
	d := newFake(quick(0))
	sum, sw := h.execute(t, d, 1, nil)
	if sum.Completed != 4 || sum.Launched != 4 || d.maxRunning != 1 {
		t.Fatalf("summary %+v, %d at once", sum, d.maxRunning)
	}
	for i := range 4 {
		m, err := h.store.Manifest(h.point(i))
		must(t, err)
		if m.State != run.StateCompleted || m.Sweep != sw.State.ID {
			t.Errorf("point %d: %s, sweep %q", i, m.State, m.Sweep)
		}
	}
	// Points run in expansion order.
	if want := []string{h.point(0), h.point(1), h.point(2), h.point(3)}; fmt.Sprint(d.starts) != fmt.Sprint(want) {
		t.Errorf("start order %v", d.starts)
	}
	// A finished sweep has nothing to do.
	d2 := newFake(quick(0))
	sum, _ = h.execute(t, d2, 1, nil)
	if len(d2.starts) != 0 || sum.Completed != 4 || sum.Launched != 0 {
		t.Fatalf("second run launched %v, summary %+v", d2.starts, sum)
	}
	tbl, err := Results(h.store, sw.State)
	must(t, err)
	// eval loss = 1/r: the largest rank is best.
	if tbl.Best == nil || tbl.Best.RunID != h.point(3) || tbl.Rows[3].RunID != h.point(0) || tbl.Rows[0].Rank != 1 {
		t.Fatalf("ranking %+v", tbl.Rows)
	}
}

func TestParallelCappedBySlots(t *testing.T) {
	h := newHarness(t, fourPoints)
	d := newFake(func(*config.Resolved) (int, time.Duration) { return 0, 20 * time.Millisecond })
	// Each point runs until two have run at once: a sweep that ran them one by one
	// shows maxRunning 1 (after the hold's timeout), whatever the machine's speed.
	d.holdUntil = 2
	sum, _ := h.execute(t, d, 2, nil)
	if sum.Completed != 4 || d.maxRunning != 2 {
		t.Fatalf("summary %+v, at most %d at once; want 2", sum, d.maxRunning)
	}
}

func TestFailedPointRetriedOthersContinue(t *testing.T) {
	h := newHarness(t, fourPoints)
	d := newFake(func(r *config.Resolved) (int, time.Duration) {
		if r.LoRA.R == 2 {
			return 1, 10 * time.Millisecond
		}
		return 0, 40 * time.Millisecond
	})
	sum, sw := h.execute(t, d, 2, nil)
	if sum.Completed != 3 || sum.Failed != 1 {
		t.Fatalf("summary %+v\n%s", sum, h.out.String())
	}
	if n := d.startCount(h.point(1)); n != 2 {
		t.Errorf("failing point started %d times, want 2 (1 retry)", n)
	}
	ps := sw.State.Points[1]
	if ps.State != run.StateFailed || ps.Failures != 2 || ps.Launches != 2 || !strings.Contains(ps.Error, "scripted failure") {
		t.Errorf("point state %+v", ps)
	}
	if !strings.Contains(h.out.String(), "(try 1 of 2; retrying)") || !strings.Contains(h.out.String(), "(try 2 of 2)") {
		t.Errorf("output:\n%s", h.out.String())
	}
	// Running the sweep again leaves the point that used up its retries alone...
	d2 := newFake(quick(1))
	h.execute(t, d2, 2, nil)
	if len(d2.starts) != 0 {
		t.Fatalf("second run started %v", d2.starts)
	}
	// ...unless asked to retry it.
	d3 := newFake(quick(0))
	sum, _ = h.execute(t, d3, 2, func(x *Executor) { x.RetryFailed = true })
	if len(d3.starts) != 1 || sum.Completed != 4 {
		t.Fatalf("--retry-failed started %v, summary %+v\n%s", d3.starts, sum, h.out.String())
	}
}

// TestPointsUseTheirOwnPython: a point whose config names another interpreter is
// launched with it; the others with the template's.
func TestPointsUseTheirOwnPython(t *testing.T) {
	h := newHarness(t, fourPoints)
	d := newFake(quick(0))
	h.execute(t, d, 1, func(x *Executor) { x.Pythons = map[int]string{2: "/opt/other/python"} })
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.procs {
		want := "python3"
		if p.task.RunID == h.point(2) {
			want = "/opt/other/python"
		}
		if got := p.task.Command[0]; got != want {
			t.Errorf("%s ran %s, want %s", p.task.RunID, got, want)
		}
	}
}

// TestEditedSweepKeepsRetryCounts: adding a value gives the sweep a new id, but a
// point that used up its retries under the old one does not get a fresh set.
func TestEditedSweepKeepsRetryCounts(t *testing.T) {
	h := newHarness(t, fourPoints)
	failR2 := func(r *config.Resolved) (int, time.Duration) {
		if r.LoRA.R == 2 {
			return 1, 10 * time.Millisecond
		}
		return 0, 10 * time.Millisecond
	}
	h.execute(t, newFake(failR2), 2, nil)
	f, err := parse(t, h.dir, strings.Replace(fourPoints, "[1, 2, 3, 4]", "[1, 2, 3, 4, 5]", 1))
	must(t, err)
	edited, err := Build(f, nil)
	must(t, err)
	if edited.ID == h.plan.ID {
		t.Fatal("the edited sweep kept its id")
	}
	h.plan = edited
	d := newFake(failR2)
	sum, sw := h.execute(t, d, 2, nil)
	if len(d.starts) != 1 || d.starts[0] != h.point(4) {
		t.Fatalf("edited sweep started %v, want only the new point %s\n%s", d.starts, h.point(4), h.out.String())
	}
	if ps := sw.State.Points[1]; ps.Failures != 2 || ps.Launches != 2 || sum.Failed != 1 {
		t.Errorf("carried point state %+v, summary %+v", ps, sum)
	}
}

// TestResumeAfterControllerDied: the controller dies while a point runs (its lock
// goes with it and the trainer saves a checkpoint on the parent-death signal). The
// next run of the sweep skips completed points, resumes the interrupted one from
// its checkpoint and runs the rest.
func TestResumeAfterControllerDied(t *testing.T) {
	h := newHarness(t, fourPoints)
	d := newFake(quick(0))
	// First controller: point 0 completes.
	h.execute(t, d, 1, func(x *Executor) { x.Plan = &Plan{File: h.plan.File, ID: h.plan.ID, Points: h.plan.Points[:1]} })
	// Point 1 was running when the controller died.
	slow := newFake(func(*config.Resolved) (int, time.Duration) { return 0, time.Hour })
	a, err := runner.Launch(context.Background(), h.store, h.plan.Points[1].Prepared, runner.LaunchOptions{Driver: slow, Python: "python3"})
	must(t, err)
	must(t, a.Release())
	must(t, slow.Signal(context.Background(), a.Handle, "TERM"))
	<-slow.proc(a.Handle).done

	sum, sw := h.execute(t, slow, 1, func(x *Executor) { x.Driver = slow; slow.behave = quick(0) })
	if sum.Completed != 4 {
		t.Fatalf("summary %+v\n%s", sum, h.out.String())
	}
	if n := slow.startCount(h.point(0)); n != 0 {
		t.Errorf("completed point 0 started again")
	}
	m, err := h.store.Manifest(h.point(1))
	must(t, err)
	if len(m.Attempts) != 2 || m.Attempts[0].State != run.StateInterrupted || !strings.HasSuffix(m.Attempts[1].ResumeFrom, "checkpoint-2") {
		t.Errorf("point 1 attempts %+v", m.Attempts)
	}
	if ps := sw.State.Points[1]; ps.Failures != 0 {
		t.Errorf("an interruption counted as a failure: %+v", ps)
	}
	if !strings.Contains(h.out.String(), "resumed") {
		t.Errorf("output:\n%s", h.out.String())
	}
}

func TestStopInterruptsRunningPoints(t *testing.T) {
	h := newHarness(t, fourPoints)
	d := newFake(func(*config.Resolved) (int, time.Duration) { return 0, time.Hour })
	sum, sw := h.execute(t, d, 2, func(x *Executor) {
		go func() {
			for {
				d.mu.Lock()
				n := d.running
				d.mu.Unlock()
				if n == 2 {
					x.Stop()
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	})
	if !sum.Stopped || sum.Interrupted != 2 || len(d.starts) != 2 {
		t.Fatalf("summary %+v, started %v", sum, d.starts)
	}
	if sw.State.Points[2].State != Queued {
		t.Errorf("a point was launched after the stop: %+v", sw.State.Points[2])
	}
}

func TestArraySubmitsOnceAndFollows(t *testing.T) {
	h := newHarness(t, strings.Replace(fourPoints, "max_parallel: 2", "max_parallel: 3", 1))
	d := arrayDriver{newFake(func(r *config.Resolved) (int, time.Duration) {
		if r.LoRA.R == 4 {
			return 1, 10 * time.Millisecond
		}
		return 0, 20 * time.Millisecond
	})}
	sum, sw := h.execute(t, d, 1, nil)
	if sum.Completed != 3 || sum.Failed != 1 {
		t.Fatalf("summary %+v\n%s", sum, h.out.String())
	}
	// One array of four, then the failed point again (its one retry), capped at 3.
	if len(d.arrays) != 2 || fmt.Sprint(d.arrays[0]) != fmt.Sprint([]string{h.point(0), h.point(1), h.point(2), h.point(3)}) || fmt.Sprint(d.arrays[1]) != fmt.Sprint([]string{h.point(3)}) || d.arrayCap[0] != 3 {
		t.Fatalf("arrays %v caps %v", d.arrays, d.arrayCap)
	}
	for i := range 4 {
		m, err := h.store.Manifest(h.point(i))
		must(t, err)
		if m.Handle == nil || m.Driver != "fake" || m.Sweep != sw.State.ID {
			t.Errorf("point %d manifest %+v", i, m)
		}
	}
	if !strings.Contains(h.out.String(), "submitted 4 points as one fake job array (at most 3 at a time)") {
		t.Errorf("output:\n%s", h.out.String())
	}
}

func TestArrayDetach(t *testing.T) {
	h := newHarness(t, fourPoints)
	d := arrayDriver{newFake(func(*config.Resolved) (int, time.Duration) { return 0, 100 * time.Millisecond })}
	sum, _ := h.execute(t, d, 1, func(x *Executor) { x.Detach = true })
	if sum.Running != 4 || sum.Completed != 0 {
		t.Fatalf("detached summary %+v", sum)
	}
	// A later run of the sweep follows the submitted points instead of resubmitting.
	sum, _ = h.execute(t, d, 1, nil)
	if sum.Completed != 4 || len(d.arrays) != 1 {
		t.Fatalf("follow-up summary %+v, arrays %v", sum, d.arrays)
	}
}

func TestOpenRefusesSecondController(t *testing.T) {
	h := newHarness(t, fourPoints)
	sw, err := Open(filepath.Join(h.dir, "sweeps"), h.plan, "fake")
	must(t, err)
	defer sw.Close()
	if _, err := Open(filepath.Join(h.dir, "sweeps"), h.plan, "fake"); err == nil || !strings.Contains(err.Error(), "another loractl process") {
		t.Fatalf("second open: %v", err)
	}
	for _, name := range []string{SweepFileName, BaseFileName, PointsFileName} {
		if _, err := os.Stat(filepath.Join(sw.Dir, name)); err != nil {
			t.Errorf("sweep dir lacks %s", name)
		}
	}
	dir, st, err := Find(filepath.Join(h.dir, "sweeps"), "s-")
	if err != nil || dir != sw.Dir || len(st.Points) != 4 {
		t.Fatalf("find by prefix: %v %s", err, dir)
	}
}
