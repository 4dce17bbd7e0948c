// Package logs implements `loractl logs`: replay or follow a run's events (or its raw
// trainer log), for runs driven by this or any other controller.
package logs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/progress"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/termsafe"
)

// Options are logs' flags and dependencies.
type Options struct {
	Factory  *cmdutil.Factory
	RunID    string
	Follow   bool
	JSON     bool
	TrainLog bool
	// Poll is how often -f checks the run's state; tests shorten it.
	Poll time.Duration
}

// NewCmdLogs builds the logs command.
func NewCmdLogs(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f, Poll: time.Second}
	cmd := &cobra.Command{
		Use:   "logs RUN",
		Short: "Replay a run's events; -f follows until the run ends",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.RunID = args[0]
			if runF != nil {
				return runF(opts)
			}
			return logsRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVarP(&opts.Follow, "follow", "f", false, "keep following until the run ends")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the events as JSON lines")
	cmd.Flags().BoolVar(&opts.TrainLog, "train-log", false, "print the trainer's stdout/stderr (train.log) instead of events")
	return cmd
}

func logsRun(ctx context.Context, o *Options) error {
	store, err := o.Factory.Store()
	if err != nil {
		return err
	}
	m, err := cmdutil.RunManifest(store, o.RunID)
	if err != nil {
		return err
	}
	o.RunID = m.RunID
	dir := store.Dir(o.RunID)
	if o.TrainLog {
		return o.tailLog(ctx, store, m, filepath.Join(dir, run.LogFile))
	}
	p := &progress.Progress{Out: o.Factory.IO.Out, JSON: o.JSON}
	f := run.NewFollower(filepath.Join(dir, run.EventsFile))
	if !o.Follow {
		evs, err := f.Poll()
		if e := f.Rest(); e != nil {
			evs = append(evs, e)
		}
		for _, e := range evs {
			p.Event(e)
		}
		return err
	}
	if err := f.Follow(ctx, o.ended(ctx, store, &m), p.Event); err != nil {
		return err
	}
	if m.State == run.StateFailed {
		// A trainer that died without its end event (killed, out of memory) leaves the
		// stream stopping after its last step as if all were well: say how it ended.
		msg := m.Error
		if msg == "" {
			msg = "see " + filepath.Join(dir, run.LogFile)
		}
		fmt.Fprintf(o.Factory.IO.ErrOut, "%s failed: %s\n", m.RunID, msg)
	}
	return nil
}

// ended returns a check that refreshes the run (*mp, updated) through its driver at
// most every Poll and reports when it reached a final state.
func (o *Options) ended(ctx context.Context, store *run.Store, mp **run.Manifest) func() bool {
	last := time.Time{}
	return func() bool {
		if time.Since(last) < o.Poll {
			return false
		}
		last = time.Now()
		m := *mp
		if fresh, err := store.Manifest(m.RunID); err == nil {
			m = fresh
		}
		*mp = cmdutil.RefreshRun(ctx, o.Factory, store, m)
		return (*mp).State.Terminal()
	}
}

// tailLog copies train.log, following it while the run lasts with -f.
func (o *Options) tailLog(ctx context.Context, store *run.Store, m *run.Manifest, path string) error {
	fh, err := run.OpenNoFollow(path)
	if errors.Is(err, os.ErrNotExist) {
		return cmdutil.Invalid(fmt.Errorf("no trainer log yet: %w", err))
	}
	if err != nil {
		return cmdutil.Failed(err)
	}
	defer fh.Close()
	out := termsafe.Writer(o.Factory.IO.Out) // the trainer's output may hold escape sequences
	done := o.ended(ctx, store, &m)
	for {
		if _, err := io.Copy(out, fh); err != nil {
			return err
		}
		if !o.Follow || done() {
			if _, err := io.Copy(out, fh); err != nil {
				return err
			}
			return out.Flush()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
