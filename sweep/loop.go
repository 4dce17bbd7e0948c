package sweep

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/runner"
)

// outcome is how one launched point ended.
type outcome struct {
	j     *job
	slot  int
	state run.State
	msg   string
	// elsewhere: another loractl process drives the run; it is not ours to finish.
	elsewhere bool
}

// runLocal runs the queue on the slots: each point holds its slot (a GPU, or a
// share of the CPU) until its trainer exits. A failed point goes to the back of the
// queue while it has retries left, so it never holds up the others.
func (x *Executor) runLocal(ctx context.Context, queue, watch []*job, sum *Summary) error {
	slots := x.Slots
	if len(slots) == 0 {
		slots = []Slot{{}}
	}
	free := make([]int, 0, len(slots))
	for i := len(slots) - 1; i >= 0; i-- {
		free = append(free, i)
	}
	results := make(chan outcome, len(slots))
	tick := time.NewTicker(x.Poll)
	defer tick.Stop()
	stopCh := x.stopCh
	running := 0
	for {
		for !x.stopping.Load() && len(queue) > 0 && len(free) > 0 {
			j := queue[0]
			queue = queue[1:]
			s := free[len(free)-1]
			free = free[:len(free)-1]
			running++
			sum.Launched++
			go func() { results <- x.runOne(ctx, j, slots[s], s) }()
		}
		if running == 0 && (len(watch) == 0 || x.stopping.Load()) {
			return nil
		}
		select {
		case r := <-results:
			running--
			free = append(free, r.slot)
			if r.elsewhere {
				x.say(r.j, "elsewhere", r.msg)
				continue
			}
			if x.finish(r.j, r.state, r.msg) {
				queue = append(queue, r.j)
			}
		case <-tick.C:
			watch = x.pollWatched(ctx, watch, &queue)
		case <-stopCh:
			stopCh = nil // closed: wait for the trainers to checkpoint
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// runOne launches a point on a slot and waits for its trainer.
func (x *Executor) runOne(ctx context.Context, j *job, slot Slot, idx int) outcome {
	o := outcome{j: j, slot: idx}
	a, err := x.launch(ctx, j, x.Driver, slot, true)
	if err != nil {
		return x.launchFailed(o, err)
	}
	x.track(a)
	res, err := a.Wait(ctx, func(e *run.Event) {
		if e.Type == run.EventCheckpoint {
			x.Log.Debug().Str("run", j.id()).Int("step", e.Step).Msg("checkpoint saved")
		}
	})
	x.untrack(a)
	if err != nil {
		o.state, o.msg = run.StateFailed, err.Error()
		return o
	}
	o.state, o.msg = res.State, a.Manifest.Error
	return o
}

// launchFailed maps a launch refusal: a run completed meanwhile counts as done, one
// driven by another process is left alone, anything else is a failure of the point.
func (x *Executor) launchFailed(o outcome, err error) outcome {
	switch {
	case errors.Is(err, runner.ErrCompleted):
		o.state = run.StateCompleted
	case errors.Is(err, runner.ErrActive), errors.Is(err, run.ErrLocked):
		o.elsewhere, o.msg = true, err.Error()
	default:
		o.state, o.msg = run.StateFailed, "launch: "+err.Error()
	}
	return o
}

// runArray submits the queue as one job array (the driver's concurrency cap is
// max_parallel) and follows the points until they end, resubmitting failed points
// while they have retries left. With Detach it returns after the submission.
func (x *Executor) runArray(ctx context.Context, queue, watch []*job, sum *Summary) error {
	tick := time.NewTicker(x.Poll)
	defer tick.Stop()
	// At most one submission per tick: when sbatch fails, the points return to the
	// queue, and resubmitting at once would burn every retry in a tight loop.
	canSubmit := true
	for {
		if canSubmit && len(queue) > 0 && !x.stopping.Load() {
			canSubmit = false
			sum.Launched += len(queue)
			var submitted []*job
			submitted, queue = x.submit(ctx, queue)
			watch = append(watch, submitted...)
		}
		if x.Detach {
			// Detached: return once whatever was left has been submitted (or when
			// there was nothing new to submit), never follow the array.
			return nil
		}
		if len(watch) == 0 && len(queue) == 0 || x.stopping.Load() {
			return nil
		}
		select {
		case <-tick.C:
			canSubmit = true
			watch = x.pollWatched(ctx, watch, &queue)
		case <-x.stopCh:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// submit launches jobs together through a batch driver: one StartArray call. It
// returns the points now under the scheduler and those to retry (their launch
// failed and they have retries left). points.json is written once, at the end.
func (x *Executor) submit(ctx context.Context, jobs []*job) (submitted, retry []*job) {
	start := time.Now()
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.id()
	}
	b := newBatch(x.Driver, ids, x.Sweep.State.MaxParallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []outcome
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.acquire()
			a, err := x.launch(ctx, j, b, Slot{}, false)
			b.release()
			if err != nil {
				b.withdraw(ctx, j.id())
				mu.Lock()
				failed = append(failed, x.launchFailed(outcome{j: j}, err))
				mu.Unlock()
				return
			}
			_ = a.Release()
			x.Sweep.set(j.ps, func(ps *PointState) { ps.State = a.Manifest.State })
			mu.Lock()
			submitted = append(submitted, j)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(submitted, func(i, k int) bool { return submitted[i].p.Index < submitted[k].p.Index })
	sort.Slice(failed, func(i, k int) bool { return failed[i].j.p.Index < failed[k].j.p.Index })
	if len(submitted) > 0 {
		x.outMu.Lock()
		fmt.Fprintf(x.Out, "submitted %d points as one %s job array (at most %d at a time) in %s\n",
			len(submitted), x.Driver.Name(), x.Sweep.State.MaxParallel, time.Since(start).Round(time.Millisecond))
		x.outMu.Unlock()
	}
	for _, o := range failed {
		if o.elsewhere {
			x.say(o.j, "elsewhere", o.msg)
		} else if x.finish(o.j, o.state, o.msg) {
			retry = append(retry, o.j)
		}
	}
	if err := x.Sweep.Save(); err != nil {
		x.Log.Warn().Err(err).Msg("cannot save the sweep state")
	}
	return submitted, retry
}

// pollWatched brings the points under a scheduler up to date; those that ended are
// finished (and queued again when they failed with retries left).
func (x *Executor) pollWatched(ctx context.Context, watch []*job, queue *[]*job) []*job {
	still := watch[:0]
	for _, j := range watch {
		m, err := x.Store.Manifest(j.id())
		if err == nil && !m.State.Terminal() {
			m, err = runner.Refresh(ctx, x.Store, m, x.Driver)
		}
		if err != nil {
			x.Log.Debug().Err(err).Str("run", j.id()).Msg("cannot refresh")
			still = append(still, j)
			continue
		}
		if !m.State.Terminal() {
			if m.State != j.ps.State {
				x.Sweep.set(j.ps, func(ps *PointState) { ps.State = m.State })
			}
			still = append(still, j)
			continue
		}
		if x.finish(j, m.State, m.Error) {
			*queue = append(*queue, j)
		}
	}
	return still
}
