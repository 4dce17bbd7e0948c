package sweep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/runner"
)

// DefaultPoll is how often points running under a scheduler are checked.
const DefaultPoll = 5 * time.Second

// Executor runs a sweep's points to the end. Each point is an ordinary run: it goes
// through runner.Launch, so the run id rules hold (a completed point is never run
// again) and its manifest names the sweep.
type Executor struct {
	Store  *run.Store
	Sweep  *Sweep
	Plan   *Plan
	Driver driver.Driver
	// Launch is the template of every point's launch (interpreter, data check); each
	// point adds its own env, its slot's GPU, and resume or restart as needed.
	Launch runner.LaunchOptions
	// DataChecks, by point index, replace Launch.DataCheck for points whose data was
	// checked with their own values (a swept data.train or max_length).
	DataChecks map[int]json.RawMessage
	// Pythons, by point index, replace Launch.Python for points whose config names
	// another interpreter (a swept python:).
	Pythons map[int]string
	// Slots bound how many points run at once when the driver runs them here; each
	// gives its point a GPU or the CPU. Drivers that submit job arrays ignore them:
	// the array's own cap (max_parallel) applies on the cluster.
	Slots []Slot
	// RetryFailed gives points that used up their retries in an earlier run a new set.
	RetryFailed bool
	// Detach returns once array points are submitted, leaving them to the scheduler.
	Detach bool
	// Poll is how often points under a scheduler are checked (DefaultPoll if zero).
	Poll time.Duration
	// BeforeLaunch, when set, runs once before the first point is launched, with the
	// points about to run (the data check, the GPU pre-flight); an error stops the
	// sweep before anything runs.
	BeforeLaunch func(ctx context.Context, queued []*Planned) error
	// Out receives one line per point event.
	Out io.Writer
	Log *zerolog.Logger

	stopping atomic.Bool
	stopCh   chan struct{}
	stopOnce sync.Once
	outMu    sync.Mutex
	mu       sync.Mutex
	active   map[string]*runner.Active
}

// Summary is how the points stand when Run returns.
type Summary struct {
	Completed   int `json:"completed"`
	Failed      int `json:"failed"`
	Interrupted int `json:"interrupted"`
	// Running are points still under a scheduler (a detached array) or driven by
	// another loractl process.
	Running  int  `json:"running"`
	Launched int  `json:"launched"`
	Stopped  bool `json:"stopped"`
}

// job is one point on its way through the executor.
type job struct {
	p  *Planned
	ps *PointState
}

func (j *job) id() string { return j.p.RunID() }

// action is what a point needs when the sweep (re)starts.
type action int

const (
	actDone      action = iota // completed, or failed with no retries left
	actLaunch                  // never run, interrupted, or failed with retries left
	actWatch                   // running under a scheduler: follow it
	actElsewhere               // driven by another loractl process
)

// Run executes every point that still needs it and returns when none is left to run
// or wait for (or, after Stop, once the running points have checkpointed).
func (x *Executor) Run(ctx context.Context) (*Summary, error) {
	x.init()
	var queue, watch []*job
	sum := &Summary{}
	for i, p := range x.Plan.Points {
		j := &job{p: p, ps: x.Sweep.State.Points[i]}
		act, err := x.classify(ctx, j)
		if err != nil {
			return nil, err
		}
		switch act {
		case actLaunch:
			queue = append(queue, j)
		case actWatch:
			watch = append(watch, j)
		case actElsewhere:
			sum.Running++
			x.say(j, "elsewhere", "driven by another loractl process; not touched")
		}
	}
	if err := x.Sweep.Save(); err != nil {
		return nil, err
	}
	if len(queue) > 0 && x.BeforeLaunch != nil {
		queued := make([]*Planned, len(queue))
		for i, j := range queue {
			queued[i] = j.p
		}
		if err := x.BeforeLaunch(ctx, queued); err != nil {
			return nil, err
		}
	}
	var err error
	if _, isArray := x.Driver.(driver.ArraySubmitter); isArray {
		err = x.runArray(ctx, queue, watch, sum)
	} else {
		err = x.runLocal(ctx, queue, watch, sum)
	}
	x.count(sum)
	sum.Stopped = x.stopping.Load()
	return sum, errors.Join(err, x.Sweep.Save())
}

func (x *Executor) init() {
	x.stopCh = make(chan struct{})
	x.active = map[string]*runner.Active{}
	if x.Poll <= 0 {
		x.Poll = DefaultPoll
	}
	if x.Out == nil {
		x.Out = io.Discard
	}
	if x.Log == nil {
		l := zerolog.Nop()
		x.Log = &l
	}
}

// Stop stops launching points and asks every running trainer to save a checkpoint
// and stop. Points under a scheduler keep running there; Run stops following them.
func (x *Executor) Stop() {
	x.stopping.Store(true)
	x.stopOnce.Do(func() { close(x.stopCh) })
	x.signalAll("INT")
}

// Kill ends every running trainer now, checkpoint or not.
func (x *Executor) Kill() { x.signalAll("KILL") }

func (x *Executor) signalAll(sig string) {
	x.mu.Lock()
	active := make([]*runner.Active, 0, len(x.active))
	for _, a := range x.active {
		active = append(active, a)
	}
	x.mu.Unlock()
	for _, a := range active {
		if err := a.Signal(context.Background(), sig); err != nil && !errors.Is(err, driver.ErrTaskNotFound) {
			x.Log.Warn().Err(err).Str("run", a.Manifest.RunID).Msg("could not signal the trainer")
		}
	}
}

// classify reads a point's run (bringing an undriven one up to date first) and
// decides what it needs.
func (x *Executor) classify(ctx context.Context, j *job) (action, error) {
	ps := j.ps
	m, err := x.Store.Manifest(j.id())
	if errors.Is(err, run.ErrNoRun) {
		ps.State = Queued
		return actLaunch, nil
	}
	if err != nil {
		return actDone, err
	}
	if !m.State.Terminal() {
		if lock, err := run.LockDir(x.Store.Dir(j.id())); errors.Is(err, run.ErrLocked) {
			ps.State = m.State
			return actElsewhere, nil
		} else if err == nil {
			lock.Unlock()
		}
		if m.Handle != nil && m.Handle.Driver == x.Driver.Name() {
			if fresh, err := runner.Refresh(ctx, x.Store, m, x.Driver); err == nil {
				m = fresh
			} else {
				x.Log.Warn().Err(err).Str("run", j.id()).Msg("cannot refresh the run")
			}
		}
	}
	prev := ps.State
	ps.State, ps.Error = m.State, m.Error
	switch m.State {
	case run.StateCompleted:
		return actDone, nil
	case run.StateInterrupted:
		return actLaunch, nil
	case run.StateFailed:
		if ps.Launches > 0 && prev != run.StateFailed && prev != Queued {
			ps.Failures++ // it failed while no controller watched: count it now
		}
		if x.RetryFailed {
			ps.Failures = 0
		}
		if ps.Failures <= x.Sweep.State.Retries {
			return actLaunch, nil
		}
		return actDone, nil
	}
	if m.Handle == nil || m.Handle.Driver != x.Driver.Name() {
		return actElsewhere, nil
	}
	return actWatch, nil
}

// options builds a point's launch: the template, the point's own environment, its
// slot, and resume (from the newest complete checkpoint) or restart for a run that
// exists but did not complete. A restart keeps the old run dir aside.
func (x *Executor) options(j *job, d driver.Driver, slot Slot) runner.LaunchOptions {
	lo := x.Launch
	lo.Driver, lo.Sweep = d, x.Sweep.State.ID
	if dc, ok := x.DataChecks[j.p.Index]; ok {
		lo.DataCheck = dc
	}
	if py, ok := x.Pythons[j.p.Index]; ok {
		lo.Python = py
	}
	spec := j.p.Prepared.Config.Spec
	lo.Env = maps.Clone(x.Launch.Env)
	if lo.Env == nil {
		lo.Env = map[string]string{}
	}
	maps.Copy(lo.Env, spec.Env.Set)
	maps.Copy(lo.Env, slot.Env())
	lo.PassEnv = append(append([]string(nil), x.Launch.PassEnv...), spec.Env.Pass...)
	lo.GPUs = slot.GPUs()
	// A point with a checkpoint resumes; one without starts again in place (Launch
	// keeps its history), and a completed one is never retrained: no Force here.
	if _, err := x.Store.Manifest(j.id()); err == nil {
		if _, ok, _ := run.LatestComplete(x.Store.Dir(j.id())); ok {
			lo.Resume = runner.ResumeAuto
		}
	}
	return lo
}

// launch starts one point and records the launch; announce saves points.json first
// and prints the point (one at a time, locally), array launches do both once.
func (x *Executor) launch(ctx context.Context, j *job, d driver.Driver, slot Slot, announce bool) (*runner.Active, error) {
	lo := x.options(j, d, slot)
	mark := func(ps *PointState) { ps.Launches++; ps.State, ps.Error = run.StateRunning, "" }
	if !announce {
		x.Sweep.set(j.ps, mark)
	} else if err := x.Sweep.update(j.ps, mark); err != nil {
		return nil, err
	}
	how := "started"
	if lo.Resume != "" {
		how = "resumed"
	} else if _, err := x.Store.Manifest(j.id()); err == nil {
		how = "restarted"
	}
	a, err := runner.Launch(ctx, x.Store, j.p.Prepared, lo)
	if err == nil {
		for _, w := range a.Warnings {
			x.Log.Warn().Str("run", j.id()).Msg(w)
		}
	}
	if err == nil && announce {
		msg := fmt.Sprintf("%s  run %s", j.p.Label(), j.id())
		if slot.GPU != nil {
			msg += " on " + slot.String()
		}
		x.say(j, how, msg)
	}
	return a, err
}

// finish records how a point's run ended and reports whether to run it again.
func (x *Executor) finish(j *job, state run.State, msg string) (retry bool) {
	retries := x.Sweep.State.Retries
	_ = x.Sweep.update(j.ps, func(ps *PointState) {
		ps.State, ps.Error = state, msg
		if state == run.StateFailed {
			ps.Failures++
			retry = ps.Failures <= retries && !x.stopping.Load()
		}
	})
	switch state {
	case run.StateCompleted:
		x.say(j, "completed", x.resultLine(j.id()))
	case run.StateFailed:
		note := fmt.Sprintf(" (try %d of %d", j.ps.Failures, retries+1)
		if retry {
			note += "; retrying)"
		} else {
			note += ")"
		}
		x.say(j, "failed", msg+note)
	default:
		x.say(j, string(state), "continue with: loractl sweep "+x.Sweep.State.SweepPath)
	}
	return retry
}

// resultLine summarises a completed run for the progress output.
func (x *Executor) resultLine(id string) string {
	m, err := x.Store.Manifest(id)
	if err != nil || m.Result == nil {
		return ""
	}
	r := m.Result
	s := ""
	if r.EvalLossBefore != nil && r.EvalLossAfter != nil {
		s = fmt.Sprintf("eval loss %.4f -> %.4f, ", *r.EvalLossBefore, *r.EvalLossAfter)
	}
	return s + fmt.Sprintf("%d steps in %s", r.Step, time.Duration(r.WallSeconds*float64(time.Second)).Round(time.Second))
}

// say prints one progress line: the point, what happened, details.
func (x *Executor) say(j *job, what, detail string) {
	x.outMu.Lock()
	defer x.outMu.Unlock()
	fmt.Fprintf(x.Out, "point %-3d %-11s %s\n", j.p.Index, what, detail)
}

// count fills the summary from the final point states.
func (x *Executor) count(sum *Summary) {
	sum.Completed, sum.Failed, sum.Interrupted = 0, 0, 0
	running := sum.Running
	sum.Running = 0
	for _, ps := range x.Sweep.State.Points {
		switch ps.State {
		case run.StateCompleted:
			sum.Completed++
		case run.StateFailed:
			sum.Failed++
		case run.StateInterrupted:
			sum.Interrupted++
		case run.StateRunning, run.StatePending:
			sum.Running++
		}
	}
	sum.Running = max(sum.Running, running)
}

func (x *Executor) track(a *runner.Active) {
	x.mu.Lock()
	x.active[a.Manifest.RunID] = a
	x.mu.Unlock()
	if x.stopping.Load() {
		_ = a.Signal(context.Background(), "INT") // launched while stopping: stop it too
	}
}

func (x *Executor) untrack(a *runner.Active) {
	x.mu.Lock()
	delete(x.active, a.Manifest.RunID)
	x.mu.Unlock()
}
