// Package sweep implements `loractl sweep`: expand a sweep file, run every point as
// an ordinary run (locally, in parallel where the GPUs allow, or as a Slurm job
// array), and show the sweep's progress and ranked results.
package sweep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/pyenv"
	"github.com/loractl/loractl/launch"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/runner"
	"github.com/loractl/loractl/sweep"
)

// Options are sweep's flags and dependencies.
type Options struct {
	Factory       *cmdutil.Factory
	File          string
	DryRun        bool
	JSON          bool
	Detach        bool
	RetryFailed   bool
	SkipDataCheck bool
	NoCache       bool
	// SweepsDir is where sweeps/<id>/ live (--sweeps-dir; default beside the runs dir).
	SweepsDir string
	// Manager builds the GPU manager (NVML in the binary, fakes in tests).
	Manager func() gpu.Manager
	// Poll is how often points under a scheduler are checked (tests shorten it).
	Poll time.Duration
	// Signals delivers the controller's own SIGINT/SIGTERM; tests inject it.
	Signals chan os.Signal
}

// NewCmdSweep builds the sweep command and its status and results subcommands.
func NewCmdSweep(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f, Manager: func() gpu.Manager { return gpu.NewNVML() }}
	cmd := &cobra.Command{
		Use:   "sweep SWEEP.yaml",
		Short: "Run a reproducible sweep over LoRA and training settings",
		Long: `Expand a sweep file (a base config and the keys to vary) into points, validate every
point's config, check the data once, and run each point as an ordinary run: locally
one after another, in parallel when the GPUs have room (max_parallel caps it), or
as one Slurm job array. Failed points are retried up to retries times.

The same file and seed always give the same points and run ids: running a finished
sweep again does nothing, and a stopped one continues where it left off. The
sweep's state lives in sweeps/<sweep-id>/ (sweep file, points.json, results.csv).`,
		Example: `  loractl sweep configs/sweep.yaml --dry-run
  loractl sweep configs/sweep.yaml
  loractl sweep status quickstart-lora
  loractl sweep results quickstart-lora --csv`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.File = args[0]
			if runF != nil {
				return runF(opts)
			}
			return sweepRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&opts.DryRun, "dry-run", false, "list the points and their run ids; run and write nothing")
	fl.BoolVar(&opts.JSON, "json", false, "with --dry-run: print the points as JSON")
	fl.BoolVar(&opts.Detach, "detach", false, "return once a job array is submitted (follow it with: loractl sweep status ID)")
	fl.BoolVar(&opts.RetryFailed, "retry-failed", false, "give points that used up their retries in an earlier run a new set")
	fl.BoolVar(&opts.SkipDataCheck, "skip-data-check", false, "launch without checking the data first (emergencies only)")
	fl.BoolVar(&opts.NoCache, "no-cache", false, "evaluate the base model in every point instead of once for the points that share it")
	cmd.PersistentFlags().StringVar(&opts.SweepsDir, "sweeps-dir", "", "where sweeps are kept (default $LORACTL_SWEEPS_DIR, else sweeps/ beside the runs dir)")
	cmd.AddCommand(NewCmdStatus(f, opts, nil), NewCmdResults(f, opts, nil))
	return cmd
}

// sweepsBase is the directory holding sweeps/<id>/.
func sweepsBase(dir string, store *run.Store) string {
	if dir != "" {
		return dir
	}
	return sweep.DefaultBase(store.Base)
}

func sweepRun(ctx context.Context, o *Options) error {
	f := o.Factory
	store, err := f.Store()
	if err != nil {
		return err
	}
	file, err := sweep.Load(o.File)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return cmdutil.Invalidf("sweep file %s does not exist", o.File)
		}
		return cmdutil.Invalid(err)
	}
	pl, err := sweep.Build(file, validateDriver(f))
	if err != nil {
		return cmdutil.Invalid(err)
	}
	driverName, err := oneDriver(pl)
	if err != nil {
		return err
	}
	if o.DryRun {
		return dryRun(o, store, pl, driverName)
	}
	d, err := f.Driver(driverName)
	if err != nil {
		return cmdutil.Invalid(err)
	}
	if _, isArray := d.(driver.ArraySubmitter); o.Detach && !isArray {
		return cmdutil.Invalidf("--detach needs a driver that submits job arrays (slurm); the %s driver runs points here", driverName)
	}
	sw, err := sweep.Open(sweepsBase(o.SweepsDir, store), pl, driverName)
	if errors.Is(err, sweep.ErrRunning) {
		return cmdutil.Invalid(err)
	}
	if err != nil {
		return err
	}
	defer sw.Close()
	printHeader(o, pl, driverName, sw.Dir)

	x := &sweep.Executor{
		Store: store, Sweep: sw, Plan: pl, Driver: d,
		RetryFailed: o.RetryFailed, Detach: o.Detach, Poll: o.Poll,
		Out: f.IO.Out, Log: f.Log,
	}
	x.BeforeLaunch = func(ctx context.Context, queued []*sweep.Planned) error {
		return o.beforeLaunch(ctx, pl, queued, x)
	}

	sigs := o.Signals
	if sigs == nil {
		sigs = make(chan os.Signal, 3)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sigs)
	}
	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go forwardSignals(watchCtx, x, sigs, f)

	sum, err := x.Run(ctx)
	if err != nil {
		return err
	}
	return summarise(o, store, sw, sum)
}

// validateDriver checks each point's driver section the way `loractl train` does.
func validateDriver(f *cmdutil.Factory) func(*config.Config) error {
	// Every point goes through the same driver checks as a train config, the
	// plugin checksum pin included.
	return func(cfg *config.Config) error { return cmdutil.CheckDriver(f, cfg) }
}

// oneDriver returns the driver every point uses; a sweep runs on one driver.
func oneDriver(pl *sweep.Plan) (string, error) {
	name := ""
	for _, p := range pl.Points {
		n := p.Prepared.Config.DriverName
		if name != "" && n != name {
			return "", cmdutil.Invalidf("point %d runs on driver %q but point %d on %q: a sweep runs on one driver", p.Index, n, pl.Points[0].Index, name)
		}
		name = n
	}
	return name, nil
}

// beforeLaunch runs once, before the first point starts: the trainer's interpreter,
// the data check of the points about to run, and where points may run at once on
// this machine.
func (o *Options) beforeLaunch(ctx context.Context, pl *sweep.Plan, queued []*sweep.Planned, x *sweep.Executor) error {
	cfg := pl.Points[0].Prepared.Config
	py, _, err := pyenv.Find(cfg.Spec.Python)
	if err != nil {
		return cmdutil.Invalid(fmt.Errorf("%w (see `loractl doctor`)", err))
	}
	// Each point's own interpreter, when its config names one (python: swept).
	x.Pythons = map[int]string{}
	for _, p := range queued {
		if p.Prepared.Config.Spec.Python == cfg.Spec.Python {
			continue
		}
		if x.Pythons[p.Index], _, err = pyenv.Find(p.Prepared.Config.Spec.Python); err != nil {
			return cmdutil.Invalid(fmt.Errorf("point %d: %w (see `loractl doctor`)", p.Index, err))
		}
	}
	lo := runner.LaunchOptions{Python: py, NoCache: o.NoCache}
	// lo keeps the last group's report: the fallback for a point launched later
	// that was not queued now (a watched Slurm point that failed and is retried).
	if x.DataChecks, err = o.checkData(ctx, queued, &lo, x.Pythons); err != nil {
		return err
	}
	x.Launch = lo
	if _, isArray := x.Driver.(driver.ArraySubmitter); isArray {
		return nil
	}
	slots, err := o.localSlots(pl)
	if err != nil {
		return err
	}
	x.Slots = slots
	where := "the CPU"
	if slots[0].GPU != nil {
		where = "the GPUs"
	}
	fmt.Fprintf(o.Factory.IO.Out, "running %d point(s) at a time on %s\n", len(slots), where)
	return nil
}

// checkData checks the data once per distinct data check (launch.DataCheckKey) of
// the queued points: points that share data, max_length and tokenizer share one
// check, and a point that sweeps any of them is checked with its own values. It
// returns each point's report for its manifest; any error stops the whole sweep
// before a point runs.
func (o *Options) checkData(ctx context.Context, queued []*sweep.Planned, lo *runner.LaunchOptions, pythons map[int]string) (map[int]json.RawMessage, error) {
	type group struct {
		cfg     *config.Config
		indices []int
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, p := range queued {
		cfg := p.Prepared.Config
		key := launch.DataCheckKey(cfg)
		g := byKey[key]
		if g == nil {
			g = &group{cfg: cfg}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.indices = append(g.indices, p.Index)
	}
	out := map[int]json.RawMessage{}
	for _, g := range groups {
		if len(groups) > 1 && !o.SkipDataCheck {
			fmt.Fprintf(o.Factory.IO.ErrOut, "checking the data of point(s) %s\n", joinInts(g.indices))
		}
		// Tokens are counted by the interpreter that will train the group.
		glo := *lo
		if py, ok := pythons[g.indices[0]]; ok {
			glo.Python = py
		}
		err := launch.CheckData(ctx, o.Factory.Log, g.cfg, &glo, o.SkipDataCheck, pyenv.TokenCacheDir())
		var dce *launch.DataCheckError
		if errors.As(err, &dce) {
			dce.Write(o.Factory.IO.ErrOut)
			return nil, cmdutil.SilentExit(cmdutil.ExitInvalid)
		}
		if err != nil {
			return nil, err
		}
		for _, i := range g.indices {
			out[i] = glo.DataCheck
		}
		lo.DataCheck = glo.DataCheck
	}
	return out, nil
}

// joinInts writes 0, 1, 2.
func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}

// forwardSignals stops the sweep on the first SIGINT/SIGTERM (running trainers save
// a checkpoint), acknowledges the second, and kills the trainers on the third.
func forwardSignals(ctx context.Context, x *sweep.Executor, sigs <-chan os.Signal, f *cmdutil.Factory) {
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-sigs:
			if !ok {
				return
			}
			n++
			switch n {
			case 1:
				f.Log.Warn().Msg("stopping the sweep: no new point starts, running trainers save a checkpoint (jobs already with a scheduler keep running); run the sweep again to continue (Ctrl-C twice more kills local trainers)")
				x.Stop()
			case 2:
				f.Log.Warn().Msg("still saving checkpoints; press Ctrl-C once more to kill the trainers")
			default:
				f.Log.Error().Msg("killing the trainers")
				x.Kill()
			}
		}
	}
}

// summarise writes results.csv, prints the counts and the best point, and maps the
// outcome to the exit code: 130 when stopped, 1 when a point failed, else 0.
func summarise(o *Options, store *run.Store, sw *sweep.Sweep, sum *sweep.Summary) error {
	w := o.Factory.IO.Out
	t, err := sweep.Results(store, sw.State)
	if err != nil {
		return err
	}
	if err := t.Save(sw.Dir); err != nil {
		o.Factory.Log.Warn().Err(err).Msg("cannot write the results table")
	}
	fmt.Fprintf(w, "\nsweep %s: %d completed, %d failed, %d interrupted, %d running\n",
		sw.State.ID, sum.Completed, sum.Failed, sum.Interrupted, sum.Running)
	if sum.Launched == 0 && !sum.Stopped && sum.Running == 0 {
		fmt.Fprintf(w, "  nothing left to run\n")
	}
	if t.Best != nil {
		printBest(w, t)
	}
	fmt.Fprintf(w, "  results    loractl sweep results %s\n", sw.State.ID)
	if sum.Running > 0 {
		fmt.Fprintf(w, "  follow     loractl sweep status %s\n", sw.State.ID)
	}
	if sum.Failed > 0 && !sum.Stopped {
		fmt.Fprintf(w, "  retry      loractl sweep %s --retry-failed (failed points have used their retries)\n", o.File)
	}
	switch {
	case sum.Stopped:
		fmt.Fprintf(w, "  continue   loractl sweep %s\n", o.File)
		return cmdutil.SilentExit(cmdutil.ExitInterrupted)
	case sum.Failed > 0:
		return cmdutil.SilentExit(cmdutil.ExitFailed)
	case sum.Interrupted > 0:
		// A point stopped on its own (loractl stop RUN): the sweep is not done, and
		// exit 0 means every point completed.
		fmt.Fprintf(w, "  continue   loractl sweep %s\n", o.File)
		return cmdutil.SilentExit(cmdutil.ExitInterrupted)
	}
	return nil
}
