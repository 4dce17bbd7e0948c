// Package reproduce implements `loractl reproduce RUN`: run a completed run's
// manifest again into a new run dir, and compare the final metrics and adapter weights.
package reproduce

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/progress"
	"github.com/loractl/loractl/internal/pyenv"
	"github.com/loractl/loractl/launch"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/runner"
)

// Options are reproduce's flags and dependencies.
type Options struct {
	Factory *cmdutil.Factory
	RunID   string
	// Tolerance is the relative difference allowed in metrics and weights; negative
	// means the default: 0 (bit for bit) for a CPU run, DefaultGPUTolerance otherwise.
	Tolerance float64
	JSON      bool
	// Signals delivers the controller's own SIGINT/SIGTERM; tests inject it.
	Signals chan os.Signal
}

// DefaultGPUTolerance is the relative difference allowed by default when the run was
// on a GPU, whose kernels are not bitwise deterministic from run to run.
const DefaultGPUTolerance = 1e-2

// NewCmdReproduce builds the reproduce command.
func NewCmdReproduce(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f}
	cmd := &cobra.Command{
		Use:   "reproduce RUN",
		Short: "Run a completed run again from its manifest and compare the results",
		Long: `Re-run a completed run into a new run dir (RUN-repro-N) from what its manifest
recorded: the config as given with its overrides, which must resolve to the same
trainer config, and data files whose hashes must still match. Then compare the
final metrics and the adapter weights with the original.

On the CPU with a fixed seed the two runs must agree bit for bit; on a GPU the
default tolerance allows a small relative difference (--tolerance). Exit 0 when
the run reproduced, 1 when it did not, 2 when it cannot be reproduced here.`,
		Example: `  loractl reproduce quickstart-1a2b3c4d5e
  loractl reproduce my-adapter-9f8e7d6c5b --tolerance 0.05 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.RunID = args[0]
			if runF != nil {
				return runF(opts)
			}
			return reproduceRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().Float64Var(&opts.Tolerance, "tolerance", -1, "relative difference allowed (default: 0 for a CPU run, 0.01 on a GPU)")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the comparison as JSON")
	return cmd
}

func reproduceRun(ctx context.Context, o *Options) error {
	f := o.Factory
	store, err := f.Store()
	if err != nil {
		return err
	}
	orig, err := cmdutil.RunManifest(store, o.RunID)
	if err != nil {
		return err
	}
	o.RunID = orig.RunID
	if orig.State != run.StateCompleted || orig.Result == nil {
		return cmdutil.Invalidf("%s is %s: only a completed run has results to reproduce", orig.RunID, orig.State)
	}
	p, warnings, err := prepareAgain(f, store, orig)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		f.Log.Warn().Msg(w)
	}
	p.RunID = nextID(store, orig.RunID)

	py, _, err := pyenv.Find(p.Config.Spec.Python)
	if err != nil {
		return cmdutil.Invalid(fmt.Errorf("%w (see `loractl doctor`)", err))
	}
	d, err := f.Driver(p.Config.DriverName)
	if err != nil {
		return cmdutil.Invalid(err)
	}
	// NoCache: a reproduction computes everything again, the base model's evaluation too.
	lo := runner.LaunchOptions{Driver: d, Python: py, Env: p.Config.Spec.Env.Set, PassEnv: p.Config.Spec.Env.Pass,
		DataCheck: orig.DataCheck, GPU: orig.GPU, NoCache: true}
	if orig.GPU != nil {
		lo.GPUs = []int{orig.GPU.Index}
	}
	if d := orig.Distributed; d != nil {
		// The same world size: as many processes per node as the original had, on
		// the GPUs CUDA shows (the manifest names the first GPU only).
		lo.GPUs, lo.NprocPerNode = nil, d.NprocPerNode
	}
	sigs := o.Signals
	if sigs == nil {
		sigs = make(chan os.Signal, 2)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sigs)
	}
	prog := &progress.Progress{Out: f.IO.ErrOut, TTY: f.IO.IsStderrTTY() && !o.JSON}
	if o.JSON {
		prog.Out = discard{}
	}
	r, err := launch.Start(ctx, store, p, lo, launch.Follow{Signals: sigs, Event: prog.Event, Log: f.Log,
		Started: func(r *launch.Run) {
			f.Log.Info().Str("run", p.RunID).Str("of", orig.RunID).Str("dir", r.Active.Dir).Msg("reproducing")
		}})
	if r == nil {
		return err
	}
	prog.Done()
	if err != nil {
		return err
	}
	a, out := r.Active, r.Outcome
	if out.State != run.StateCompleted {
		if out.State == run.StateInterrupted {
			return cmdutil.SilentExit(cmdutil.ExitInterrupted)
		}
		return cmdutil.Failed(fmt.Errorf("the reproduction %s %s: %s (log %s)", p.RunID, out.State, a.Manifest.Error, filepath.Join(a.Dir, run.LogFile)))
	}
	// Unreadable events only lose the per-step comparison; the rest still stands.
	origEvents, _ := run.ReadEvents(filepath.Join(store.Dir(orig.RunID), run.EventsFile))
	reproEvents, _ := run.ReadEvents(filepath.Join(a.Dir, run.EventsFile))
	rep, err := compare(orig, a.Manifest, origEvents, reproEvents, o.Tolerance)
	if err != nil {
		return cmdutil.Failed(err)
	}
	rep.Warnings = warnings
	if err := rep.print(f.IO.Out, o.JSON); err != nil {
		return err
	}
	if !rep.Reproduced {
		return cmdutil.SilentExit(cmdutil.ExitFailed)
	}
	return nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// prepareAgain rebuilds the run's config from the copy in its run dir and the
// recorded overrides (anchored where the original config was, so relative paths
// resolve the same), and checks that it resolves to the same trainer config and that
// the data has not changed. A different trainer is a warning: the run can still be
// repeated, but a difference may come from the code.
func prepareAgain(f *cmdutil.Factory, store *run.Store, orig *run.Manifest) (*runner.Prepared, []string, error) {
	dir := store.Dir(orig.RunID)
	src, err := config.ReadFile(filepath.Join(dir, run.ConfigFile))
	if err != nil {
		return nil, nil, cmdutil.Invalid(fmt.Errorf("the run's config copy: %w", err))
	}
	cfg, err := cmdutil.LoadConfigSource(f, orig.ConfigPath, src, orig.Overrides, "")
	if err != nil {
		return nil, nil, cmdutil.Invalid(fmt.Errorf("the run's config no longer loads: %w", err))
	}
	p, err := runner.Prepare(cfg)
	if err != nil {
		return nil, nil, cmdutil.Invalid(err)
	}
	if p.ConfigHash != orig.ConfigHash {
		old, _ := os.ReadFile(filepath.Join(dir, run.ResolvedFile))
		return nil, nil, cmdutil.Invalidf("%s: the config now resolves to a different trainer config (%s); it cannot be reproduced as it ran",
			orig.RunID, resolvedDiff(old, p.ResolvedJSON))
	}
	var errs []error
	for _, want := range orig.Data {
		got, ok := findData(p.Data, want.Role)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s data %s is no longer part of the config", want.Role, want.Path))
		case got.SHA256 != want.SHA256:
			errs = append(errs, fmt.Errorf("%s data %s changed since the run (sha256 %.12s, was %.12s)", want.Role, got.Path, got.SHA256, want.SHA256))
		}
	}
	if len(errs) > 0 {
		return nil, nil, cmdutil.Invalid(errors.Join(errs...))
	}
	var warnings []string
	if p.Trainer.SHA256 != orig.Trainer.SHA256 {
		warnings = append(warnings, fmt.Sprintf("this loractl carries a different trainer (sha256 %.12s) than the run used (%.12s): differences may come from the code",
			p.Trainer.SHA256, orig.Trainer.SHA256))
	}
	return p, warnings, nil
}

func findData(list []run.FileHash, role string) (run.FileHash, bool) {
	for _, d := range list {
		if d.Role == role {
			return d, true
		}
	}
	return run.FileHash{}, false
}

// nextID is the first free RUN-repro-N.
func nextID(store *run.Store, id string) string {
	for n := 1; ; n++ {
		cand := fmt.Sprintf("%s-repro-%d", id, n)
		if _, err := os.Stat(store.Dir(cand)); errors.Is(err, os.ErrNotExist) {
			return cand
		}
	}
}
