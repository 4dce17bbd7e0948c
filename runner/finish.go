package runner

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/taskeval"
)

// TrainerInterrupted is the trainer's exit code after it checkpointed on a signal.
const TrainerInterrupted = driver.TrainerExitInterrupted

// Outcome is how an attempt ended, as the commands report it.
type Outcome struct {
	State run.State
	Exit  *driver.ExitResult
	// End is the trainer's end event, nil when it died without one.
	End *run.Event
	// Err is the trainer's error event, if any.
	Err *run.Event
	// Eval is the task evaluation's summary (eval/summary.json), nil without one.
	Eval *taskeval.Summary
	// EvalErr is why the summary could not be computed; JudgeErr why the judge could
	// not judge (every example, or some); ReportErr why the report was not written.
	// None of them changes the run's state.
	EvalErr, JudgeErr, ReportErr error
}

// Wait follows the run's events into fn until the trainer exits, then records the
// outcome in the manifest and releases the run lock.
func (a *Active) Wait(ctx context.Context, fn func(*run.Event)) (*Outcome, error) {
	defer a.lock.Unlock()
	type waitResult struct {
		res *driver.ExitResult
		err error
	}
	done := make(chan waitResult, 1)
	exited := make(chan struct{})
	go func() {
		res, err := a.Driver.Wait(ctx, a.Handle)
		done <- waitResult{res, err}
		close(exited)
	}()
	var wr *waitResult
	var events []*run.Event
	f := run.NewFollower(filepath.Join(a.Dir, run.EventsFile))
	f.StartAt(a.eventsOffset)
	f.Wake = exited
	ferr := f.Follow(ctx, func() bool {
		if wr != nil {
			return true
		}
		select {
		case r := <-done:
			wr = &r
			return true
		default:
			return false
		}
	}, func(e *run.Event) {
		events = append(events, e)
		a.observe(e)
		if fn != nil {
			fn(e)
		}
	})
	if ferr != nil && !errors.Is(ferr, context.Canceled) {
		return nil, ferr
	}
	if wr == nil {
		return nil, ctx.Err()
	}
	if wr.err != nil {
		return nil, fmt.Errorf("wait for trainer: %w", wr.err)
	}
	out := outcome(wr.res, events)
	evalCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.stopEval.Store(&cancel)
	err := a.record(evalCtx, out)
	report(a.Dir, out)
	return out, err
}

// report writes the run's report when a report writer is linked in.
func report(dir string, o *Outcome) {
	if WriteReport != nil && o.State.Terminal() {
		o.ReportErr = WriteReport(dir)
	}
}

// observe folds live events into the manifest (versions and device arrive with start;
// the manifest then shows them while the run is still going).
func (a *Active) observe(e *run.Event) {
	m := a.Manifest
	if e.Type == run.EventStart {
		m.Versions, m.Device = e.Versions, e.Device
		if e.Distributed != nil {
			m.Distributed = e.Distributed
		}
		_ = run.WriteManifest(a.Dir, m)
	}
}

// outcome decides the attempt's state from the exit status and the trainer's own
// account in its events. The events win where the exit status is unknown (a trainer
// started by another controller).
func outcome(res *driver.ExitResult, events []*run.Event) *Outcome {
	o := &Outcome{Exit: res}
	distributed := false
	for _, e := range events {
		switch e.Type {
		case run.EventStart:
			distributed = e.Distributed != nil
		case run.EventEnd:
			o.End = e
		case run.EventError:
			o.Err = e
		}
	}
	switch {
	case distributed && o.End != nil:
		// torchrun's own exit code says only whether every worker exited 0 (a rank's
		// 75 comes back as torchrun's failure): rank 0's end event is the outcome.
		o.State = stateFromEnd(o.End.Status)
	case res != nil && res.ExitCode == 0 && res.Signal == 0:
		o.State = run.StateCompleted
	case res != nil && res.ExitCode == TrainerInterrupted:
		o.State = run.StateInterrupted
	case (res == nil || res.ExitCode < 0) && o.End != nil:
		o.State = stateFromEnd(o.End.Status)
	default:
		o.State = run.StateFailed
	}
	if o.State == run.StateCompleted && (o.End == nil || o.End.Status != "completed") {
		// Exit 0 without the trainer saying it completed is not a success.
		o.State = run.StateFailed
	}
	return o
}

func stateFromEnd(status string) run.State {
	switch status {
	case "completed":
		return run.StateCompleted
	case "interrupted":
		return run.StateInterrupted
	}
	return run.StateFailed
}

// record writes the outcome into the manifest.
func (a *Active) record(ctx context.Context, o *Outcome) error {
	foldHistory(a.Driver, a.Dir, a.Manifest)
	return recordOutcome(ctx, a.Dir, a.Manifest, o, a.notifier())
}

// foldHistory copies a relaunching driver's launches (Slurm requeues) into the
// current attempt, so the run's history shows each of them.
func foldHistory(d driver.Driver, dir string, m *run.Manifest) {
	hr, ok := d.(driver.HistoryReader)
	last := m.LastAttempt()
	if !ok || last == nil {
		return
	}
	launches, err := hr.History(dir)
	if err != nil {
		return
	}
	// attempts.jsonl spans the run; keep the launches of this attempt only.
	var mine []driver.Launch
	for _, l := range launches {
		if !l.StartedAt.Before(last.StartedAt.Add(-time.Minute)) {
			mine = append(mine, l)
		}
	}
	last.Launches = mine
}

func (a *Active) notifier() func(string) {
	if a.Notify != nil {
		return a.Notify
	}
	return func(string) {}
}

// recordOutcome writes the outcome into the manifest. judge, when not nil, lets the
// task evaluation call its LLM judge and hears what it does (a controller driving
// the run); a refresh passes nil and never calls it.
func recordOutcome(ctx context.Context, dir string, m *run.Manifest, o *Outcome, judge func(string)) error {
	now := time.Now().UTC()
	m.State, m.EndedAt = o.State, now
	if o.Exit != nil && o.Exit.ExitCode >= 0 {
		code := o.Exit.ExitCode
		m.ExitCode = &code
	}
	if o.Err != nil {
		m.Error = o.Err.ErrorType + ": " + o.Err.Message
	} else if o.State == run.StateFailed && o.Exit != nil {
		m.Error = fmt.Sprintf("trainer exited with code %d %s", o.Exit.ExitCode, o.Exit.Reason)
	} else if o.State == run.StateFailed && o.End == nil {
		// Gone with no exit status this controller could see (a detached trainer is not
		// its child) and no end event: without a word, the run would read as a bare "failed".
		m.Error = "the trainer ended without an end event and without an exit status: it was killed " +
			"(SIGKILL, the OOM killer) or crashed; its output is in " + run.LogFile + ", and --resume continues from its last checkpoint"
	}
	if last := m.LastAttempt(); last != nil {
		last.EndedAt, last.State, last.Exit = now, o.State, o.Exit
	}
	if o.End != nil {
		r := &run.Result{
			Step:           o.End.Step,
			EvalLossBefore: o.End.EvalLossBefore,
			EvalLossAfter:  o.End.EvalLossAfter,
			Metrics:        o.End.Metrics,
			WallSeconds:    trainingTime(m, now).Seconds(),
		}
		if o.State == run.StateCompleted {
			r.AdapterPath = o.End.AdapterPath
		}
		if r.EvalLossBefore != nil && r.EvalLossAfter != nil {
			improved := *r.EvalLossAfter < *r.EvalLossBefore
			r.Improved = &improved
		}
		if o.State == run.StateCompleted {
			evaluate(ctx, dir, r, o, judge)
		}
		if o.End.PeakMemory != nil {
			r.PeakAllocatedBytes = o.End.PeakMemory.AllocatedBytes
			r.PeakReservedBytes = o.End.PeakMemory.ReservedBytes
		}
		m.Result = r
	}
	return run.WriteManifest(dir, m)
}

// trainingTime adds up the attempts' durations: a run resumed days after it was
// interrupted has not trained for days.
func trainingTime(m *run.Manifest, now time.Time) time.Duration {
	var d time.Duration
	for _, at := range m.Attempts {
		end := at.EndedAt
		if end.IsZero() {
			end = now
		}
		d += end.Sub(at.StartedAt)
	}
	return d
}

// Signal forwards a signal to the trainer.
func (a *Active) Signal(ctx context.Context, sig string) error {
	return a.Driver.Signal(ctx, a.Handle, sig)
}

// Release gives up the run lock without waiting (a detached launch).
func (a *Active) Release() error { return a.lock.Unlock() }
