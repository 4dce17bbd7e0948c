// Package stop implements `loractl stop`: ask a run's trainer to checkpoint and stop,
// from any controller process.
package stop

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/run"
)

// Options are stop's flags and dependencies.
type Options struct {
	Factory *cmdutil.Factory
	RunID   string
	Grace   time.Duration
	// Confirm is how long to wait for the run to be recorded as ended (tests shorten it).
	Confirm time.Duration
}

// NewCmdStop builds the stop command.
func NewCmdStop(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f, Confirm: 30 * time.Second}
	cmd := &cobra.Command{
		Use:   "stop RUN",
		Short: "Stop a run: the trainer saves a checkpoint, then exits (continue with train --resume)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.RunID = args[0]
			if opts.Grace < 0 {
				return cmdutil.Invalidf("--grace must not be negative, got %s", opts.Grace)
			}
			if runF != nil {
				return runF(opts)
			}
			return stopRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().DurationVar(&opts.Grace, "grace", 2*time.Minute, "how long the trainer may take to checkpoint before it is killed")
	return cmd
}

func stopRun(ctx context.Context, o *Options) error {
	f := o.Factory
	store, err := f.Store()
	if err != nil {
		return err
	}
	m, err := cmdutil.RunManifest(store, o.RunID)
	if err != nil {
		return err
	}
	o.RunID = m.RunID
	m = cmdutil.RefreshRun(ctx, f, store, m)
	if m.State.Terminal() {
		fmt.Fprintf(f.IO.Out, "%s is already %s\n", m.RunID, m.State)
		return nil
	}
	if m.Handle == nil {
		return cmdutil.Invalidf("%s has no launched trainer to stop", m.RunID)
	}
	d, err := cmdutil.DriverFor(f, m)
	if err != nil {
		return cmdutil.Failed(err)
	}
	fmt.Fprintf(f.IO.ErrOut, "stopping %s (%s %s): the trainer saves a checkpoint first, up to %s\n", m.RunID, m.Handle.Driver, m.Handle.ID, o.Grace)
	if err := d.Stop(ctx, m.Handle, o.Grace); err != nil {
		return cmdutil.Failed(fmt.Errorf("stop %s: %w", m.RunID, err))
	}
	// Give the driving controller (or the driver) a moment to record the outcome.
	if o.Confirm <= 0 {
		o.Confirm = 30 * time.Second
	}
	deadline := time.Now().Add(o.Confirm)
	for time.Now().Before(deadline) {
		if fresh, err := store.Manifest(m.RunID); err == nil {
			m = cmdutil.RefreshRun(ctx, f, store, fresh)
		}
		if m.State.Terminal() {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	fmt.Fprintf(f.IO.Out, "%s %s\n", m.RunID, m.State)
	if cp, ok, _ := run.LatestComplete(store.Dir(m.RunID)); ok {
		fmt.Fprintf(f.IO.Out, "checkpoint %s (step %d); continue with: loractl train --resume %s\n", cp.Path, cp.Step, m.RunID)
	}
	if !m.State.Terminal() {
		// The stop was sent but nothing confirms the trainer ended: saying so and
		// failing beats a success that leaves a trainer running.
		return cmdutil.Failed(fmt.Errorf("%s: the stop was sent, but the run still shows %s after %s; check it with `loractl runs` (its driver %s may be unreachable)", m.RunID, m.State, o.Confirm, m.Handle.Driver))
	}
	return nil
}
