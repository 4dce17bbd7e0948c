// Package train implements `loractl train`: validate, launch, follow, summarise.
package train

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/progress"
	"github.com/loractl/loractl/internal/pyenv"
	"github.com/loractl/loractl/launch"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/runner"
)

// Options are train's flags and dependencies.
type Options struct {
	Factory       *cmdutil.Factory
	Config        string
	Sets          []string
	Resume        string
	Force         bool
	Detach        bool
	JSON          bool
	SkipDataCheck bool
	NoCache       bool
	// GPU is --gpu (-1: the config's gpu:, else the GPU with most free memory).
	GPU int
	// WaitGPU is --wait-gpu: how long to wait for enough free GPU memory.
	WaitGPU time.Duration
	// WaitPoll is how often --wait-gpu checks (default 5s); tests shorten it.
	WaitPoll time.Duration
	// GPUManager opens NVML; tests give a fake GPU.
	GPUManager func() gpu.Manager
	// Signals delivers the controller's own SIGINT/SIGTERM; tests inject it.
	Signals chan os.Signal

	waitBare bool    // --wait-gpu was given without =TIMEOUT
	waitArg  *string // the positional argument taken as --wait-gpu's TIMEOUT
}

// NewCmdTrain builds the train command.
func NewCmdTrain(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f, GPUManager: func() gpu.Manager { return gpu.NewNVML() }}
	cmd := &cobra.Command{
		Use:   "train [CONFIG]",
		Short: "Validate a config, launch the trainer, stream progress, summarise the result",
		Long: `Validate the config and data, launch python/train_lora.py through the configured
driver, show live progress and checkpoints, and finish with the eval loss before
and after training: an adapter that does not beat the base model is not adopted.

Before launching, the GPU pre-flight estimates the peak memory of the longest
micro-batch the data forms and refuses (exit 3) when it plus 5% does not fit the
GPU's free memory. With train.batch_size: auto it picks the largest micro-batch
that fits in 90% of it, keeping the effective batch (docs/performance.md).

Ctrl-C asks the trainer to save a checkpoint and stop (exit 130); continue with
--resume RUN. The same config and data always map to the same run id.`,
		Example: `  loractl train my.yaml
  loractl train my.yaml --set train.learning_rate=1e-4
  loractl train --resume my-adapter-1a2b3c4d5e`,
		Args: func(cmd *cobra.Command, args []string) error {
			// --wait-gpu TIMEOUT (space-separated) leaves TIMEOUT among the
			// positional arguments; claim it before counting them.
			args = opts.takeWaitTimeout(args)
			return cobra.MaximumNArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			args = opts.takeWaitTimeout(args)
			if opts.GPU < -1 {
				return cmdutil.Invalidf("--gpu %d: want a GPU index (0, 1, ...), or -1 for the config's gpu: or the one with most free memory", opts.GPU)
			}
			if len(args) == 1 {
				opts.Config = args[0]
			}
			if opts.Config == "" && opts.Resume == "" {
				return cmdutil.Invalidf("give a CONFIG, or --resume RUN")
			}
			if opts.Config != "" && opts.Resume != "" {
				// A resumed run keeps the config it started with (its run dir's copy);
				// silently preferring either one would train something unasked for.
				return cmdutil.Invalidf("--resume %s takes no CONFIG: a run resumes with the config it was started with; drop %s to resume, or drop --resume to train that config", opts.Resume, opts.Config)
			}
			if runF != nil {
				return runF(opts)
			}
			return trainRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	cmdutil.SetFlag(fl, &opts.Sets, "train.learning_rate=1e-4")
	fl.StringVar(&opts.Resume, "resume", "", "continue RUN from its newest complete checkpoint")
	fl.BoolVar(&opts.Force, "force", false, "override a refusal: train again a run id that already exists (the old run dir is kept aside), or launch although the GPU pre-flight says it will not fit")
	fl.IntVar(&opts.GPU, "gpu", -1, "GPU index to train on (default: the config's gpu:, else the one with most free memory)")
	fl.Var(&waitGPUValue{d: &opts.WaitGPU, bare: &opts.waitBare}, "wait-gpu",
		"wait up to TIMEOUT for enough free GPU memory instead of refusing: --wait-gpu=10m or --wait-gpu 10m (--wait-gpu alone: "+waitGPUDefault+")")
	fl.Lookup("wait-gpu").NoOptDefVal = waitGPUDefault
	fl.BoolVar(&opts.Detach, "detach", false, "return once the trainer is launched; it trains on after loractl exits (follow with: loractl logs -f RUN, stop with: loractl stop RUN)")
	fl.BoolVar(&opts.JSON, "json", false, "print events as JSON lines, then a result object")
	fl.BoolVar(&opts.SkipDataCheck, "skip-data-check", false, "launch without checking the data first (emergencies only)")
	fl.BoolVar(&opts.NoCache, "no-cache", false, "evaluate the base model afresh instead of reusing an earlier run's evaluation of the same base model and eval set")
	return cmd
}

// waitGPUDefault is --wait-gpu's timeout when none is given.
const waitGPUDefault = "24h"

// waitGPUValue is --wait-gpu: a duration that remembers whether it was given bare
// (pflag passes NoOptDefVal to Set for `--wait-gpu` without `=`), so that a
// space-separated TIMEOUT left among the arguments can be taken as its value.
type waitGPUValue struct {
	d    *time.Duration
	bare *bool
}

func (v *waitGPUValue) String() string {
	if v.d == nil {
		return "0s"
	}
	return v.d.String()
}

func (v *waitGPUValue) Type() string { return "duration" }

func (v *waitGPUValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 10m or 2h: %w", err)
	}
	if d < 0 {
		return fmt.Errorf("want a positive duration, got %s", s)
	}
	*v.d, *v.bare = d, s == waitGPUDefault
	return nil
}

// takeWaitTimeout takes --wait-gpu's TIMEOUT from the positional arguments when the
// flag was given bare (`--wait-gpu 10m`): the first argument that parses as a
// duration becomes the timeout and is removed. Cobra hands the same arguments to
// Args and RunE, so a second call removes the argument taken by the first.
func (o *Options) takeWaitTimeout(args []string) []string {
	for i, a := range args {
		if o.waitArg == nil {
			if !o.waitBare {
				return args
			}
			d, err := time.ParseDuration(a)
			if err != nil || d < 0 {
				continue
			}
			taken := a
			o.WaitGPU, o.waitArg = d, &taken
		} else if a != *o.waitArg {
			continue
		}
		return append(append([]string(nil), args[:i]...), args[i+1:]...)
	}
	return args
}

func trainRun(ctx context.Context, o *Options) error {
	f := o.Factory
	store, err := f.Store()
	if err != nil {
		return err
	}
	cfg, err := o.loadConfig(store)
	if err != nil {
		return err
	}
	py, _, err := pyenv.Find(cfg.Spec.Python)
	if err != nil {
		return cmdutil.Invalid(fmt.Errorf("%w (see `loractl doctor`)", err))
	}
	d, err := f.Driver(cfg.DriverName)
	if err != nil {
		return cmdutil.Invalid(err)
	}
	sigs := o.Signals
	if sigs == nil {
		sigs = make(chan os.Signal, 3)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sigs)
	}
	prog := &progress.Progress{Out: f.IO.Out, TTY: f.IO.IsStdoutTTY() && !o.JSON, JSON: o.JSON}
	restore := func() {}
	defer func() { restore() }() // set once the trainer runs (started)
	r, err := launch.Train(ctx, cfg, launch.TrainOptions{
		Check: o.checkOptions(), Store: store, Driver: d, Python: py, Resume: o.Resume, Force: o.Force, NoCache: o.NoCache,
		Follow: launch.Follow{Detach: o.Detach, Signals: sigs, Event: prog.Event, Log: f.Log,
			Started: func(r *launch.Run) { restore = o.started(r, d.Name(), prog) }},
	})
	var dce *launch.DataCheckError
	if errors.As(err, &dce) {
		dce.Write(f.IO.ErrOut)
		return cmdutil.SilentExit(cmdutil.ExitInvalid)
	}
	if r == nil || o.Detach && err == nil {
		return err
	}
	if r.Outcome != nil && r.Outcome.State == run.StateInterrupted {
		prog.Clear() // the interrupted step's status and ETA are not news
	}
	prog.Done()
	if err != nil {
		return err
	}
	return o.summarise(r)
}

// started says the trainer runs: for a detached run, its id on stdout; otherwise the
// log moves above the live progress line until the returned restore is called.
func (o *Options) started(r *launch.Run, driverName string, prog *progress.Progress) (restore func()) {
	f, a := o.Factory, r.Active
	log := f.Log.With().Str("run", r.Prepared.RunID).Logger()
	for _, w := range a.Warnings {
		log.Warn().Msg(w)
	}
	log.Info().Str("driver", driverName).Str("handle", a.Handle.ID).Str("dir", a.Dir).Msg(startedMsg(a))
	if o.Detach {
		fmt.Fprintf(f.IO.Out, "%s\n", r.Prepared.RunID)
		log.Info().Msgf("detached: follow with `loractl logs -f %s`, stop with `loractl stop %s`", r.Prepared.RunID, r.Prepared.RunID)
		return func() {}
	}
	if f.LogOut != nil {
		// Warnings during the run go above the live status line, not onto its end.
		return f.LogOut.Swap(prog.Above(f.IO.ErrOut))
	}
	return func() {}
}

// loadConfig loads the config to train: the one given, or for --resume the run's own
// (its original file when it still exists, else the copy in the run dir).
func (o *Options) loadConfig(store *run.Store) (*config.Config, error) {
	f := o.Factory
	if o.Resume == "" {
		return cmdutil.LoadConfig(f, o.Config, o.Sets, "")
	}
	id, err := store.Resolve(o.Resume) // a unique prefix names the whole id from here on
	if err != nil {
		return nil, cmdutil.Invalid(err)
	}
	m, err := store.Manifest(id)
	if err != nil && !errors.Is(err, run.ErrNoRun) {
		return nil, cmdutil.Invalid(fmt.Errorf("%s: %w (%v): start it over with `loractl train CONFIG --force` (the old directory is kept under .superseded/)", id, runner.ErrDamaged, err))
	}
	if err != nil {
		return nil, cmdutil.Invalid(err)
	}
	o.Resume = m.RunID
	if o.Config != "" {
		return cmdutil.LoadConfig(f, o.Config, o.Sets, "")
	}
	sets := append(append([]string(nil), m.Overrides...), o.Sets...)
	if _, err := os.Stat(m.ConfigPath); err == nil {
		return cmdutil.LoadConfig(f, m.ConfigPath, sets, "")
	}
	src, err := config.ReadFile(store.Dir(o.Resume) + "/" + run.ConfigFile)
	if err != nil {
		return nil, cmdutil.Invalid(err)
	}
	return cmdutil.LoadConfigSource(f, m.ConfigPath, src, sets, "")
}

func startedMsg(a *runner.Active) string {
	if a.ResumeFrom != "" {
		return fmt.Sprintf("resuming from %s (step %d)", a.ResumeFrom, a.ResumeStep)
	}
	return "trainer launched"
}
