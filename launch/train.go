package launch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/dataset"
	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/runner"
)

// TrainOptions are one training run's choices besides its config: what the train
// command's flags and this machine decide.
type TrainOptions struct {
	// Check says how the pre-flight judges the run (its Force and Resumed follow the
	// fields below).
	Check Options
	// Store is the run store the run is recorded in.
	Store *run.Store
	// Driver launches the trainer; Python is the interpreter it runs.
	Driver driver.Driver
	Python string
	// Resume is the run id to continue from its newest complete checkpoint ("": a new
	// run). The config and data must still give that id.
	Resume string
	// Force trains again a run id that exists, or launches what the pre-flight says will
	// not fit. NoCache evaluates the base model afresh.
	Force, NoCache bool
	Follow
}

// Follow says how a launched run is followed to its end.
type Follow struct {
	// Detach returns once the trainer is launched: it trains on without loractl.
	Detach bool
	// Signals carries the controller's SIGINT/SIGTERM to the trainer (forwardSignals).
	Signals <-chan os.Signal
	// Started is called once the trainer runs, before its first event.
	Started func(*Run)
	// Event sees each event of the run as it is written.
	Event func(*run.Event)
	// Log hears about the run's course: signals, a failed resume check (nil: nowhere).
	Log *zerolog.Logger
}

// Run is a launched run: what was launched, and once it ended, what it did.
type Run struct {
	Prepared *runner.Prepared
	Active   *runner.Active
	// Check is the pre-flight's decision (nil for a run launched without one).
	Check *Result
	// Outcome is the trainer's end (nil while detached, or when the wait failed early).
	Outcome *runner.Outcome
	// NVMLPeak is the most GPU memory the sampler saw in use while the trainer ran.
	NVMLPeak uint64
	// Stops counts the SIGINT/SIGTERMs forwarded to the trainer.
	Stops int32
}

// Train is one training run's life: prepare the run (its id from the config and the
// data), check it before launch (data, estimate, GPU), launch it through the driver
// and follow it to its end. The errors are typed for the CLI edge: *InputError (the
// config, a refused run id, a resume the config no longer matches), *DataCheckError,
// the pre-flight's; an interrupted or failed trainer is not an error but the Outcome.
func Train(ctx context.Context, cfg *config.Config, o TrainOptions) (*Run, error) {
	p, err := runner.Prepare(cfg)
	if err != nil {
		return nil, &InputError{Err: err}
	}
	if o.Resume != "" && p.RunID != o.Resume {
		return nil, inputErrorf("cannot resume %s: %w (the config or data now give run id %s)", o.Resume, runner.ErrConfigDiff, p.RunID)
	}
	lo := runner.LaunchOptions{Driver: o.Driver, Python: o.Python, Force: o.Force, Detach: o.Detach,
		Env: cfg.Spec.Env.Set, PassEnv: cfg.Spec.Env.Pass, NoCache: o.NoCache}
	if o.Resume != "" {
		lo.Resume = runner.ResumeAuto
	}
	co := o.Check
	co.Force, co.Resumed = o.Force, o.Resume != ""
	// Once the data's structure has passed, the trainer's interpreter starts, counts the
	// tokens (it imports the tokenizer's library anyway) and imports torch and the rest;
	// it is dropped, having touched no GPU, if the check refuses the run.
	var warm driver.Warm
	defer func() {
		if warm != nil {
			warm.Drop()
		}
	}()
	co.Counting = func() dataset.PythonRunner {
		if warm = runner.Prewarm(o.Store, p, lo); warm == nil {
			return nil
		}
		return warm
	}
	res, err := Check(ctx, cfg, &lo, co)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = co.Log
	}
	return start(ctx, o.Store, p, lo, o.Follow, &sampling{gpu: res.GPUIndex, manager: co.GPUManager}, res)
}

// Start launches a prepared run without Train's pre-flight (reproduce: the original's
// GPU and data check stand) and, unless it detaches, follows it to its end.
func Start(ctx context.Context, store *run.Store, p *runner.Prepared, lo runner.LaunchOptions, f Follow) (*Run, error) {
	return start(ctx, store, p, lo, f, nil, nil)
}

// start launches and follows: signals forwarded, a resumed trainer held to its
// checkpoint's step, the GPU sampled into events.jsonl (when smp names one).
func start(ctx context.Context, store *run.Store, p *runner.Prepared, lo runner.LaunchOptions, f Follow, smp *sampling, res *Result) (*Run, error) {
	a, err := runner.Launch(ctx, store, p, lo)
	if err != nil {
		return nil, refusal(err)
	}
	r := &Run{Prepared: p, Active: a, Check: res}
	if f.Started != nil {
		f.Started(r)
	}
	if f.Detach {
		_ = a.Release()
		return r, nil
	}
	return r, r.follow(ctx, f, smp)
}

func (r *Run) follow(ctx context.Context, f Follow, smp *sampling) error {
	a := r.Active
	log := zerolog.Nop()
	if f.Log != nil {
		log = f.Log.With().Str("run", r.Prepared.RunID).Logger()
	}
	a.Notify = func(msg string) { log.Info().Msg(msg) }
	var stops atomic.Int32
	forwardSignals(ctx, a, f.Signals, &log, &stops)
	stopSampling := smp.start(ctx, a, &log, &r.NVMLPeak)
	watch := &resumeWatch{want: a.ResumeStep}
	out, err := a.Wait(ctx, func(e *run.Event) {
		if f.Event != nil {
			f.Event(e)
		}
		if msg := watch.check(e); msg != "" {
			log.Error().Msg(msg)
			_ = a.Signal(ctx, "KILL")
		}
	})
	stopSampling()
	r.Outcome, r.Stops = out, stops.Load()
	if err != nil {
		return waitError(out, err)
	}
	if watch.failed != "" {
		return errors.New(watch.failed)
	}
	return nil
}

// refusal maps the run store's refusals (a completed or active run id, a damaged run,
// nothing to resume) to invalid input; anything else is a failure to launch.
func refusal(err error) error {
	for _, target := range []error{runner.ErrCompleted, runner.ErrExists, runner.ErrNoCheckpt, runner.ErrConfigDiff, runner.ErrActive, runner.ErrDamaged, run.ErrLocked, run.ErrNoRun} {
		if errors.Is(err, target) {
			return &InputError{Err: err}
		}
	}
	return err
}

// waitError is the error of a wait whose outcome could not be recorded (a full disk,
// say): when the trainer said what went wrong, that comes first, since it is what the
// user must act on, with the recording failure after it.
func waitError(out *runner.Outcome, err error) error {
	if out == nil || out.Err == nil {
		return err
	}
	return fmt.Errorf("%s: %s; the outcome could not be recorded in the manifest: %w", out.Err.ErrorType, out.Err.Message, err)
}
