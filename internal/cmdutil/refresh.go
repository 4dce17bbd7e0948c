package cmdutil

import (
	"context"
	"errors"

	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/runner"
)

// RefreshRun brings an unfinished run's manifest up to date through its driver; on
// any problem it returns the manifest as stored (listing must not fail on one run),
// except that a state learned but not recordable (read-only or full store) is
// returned, with a warning, rather than the stale one.
func RefreshRun(ctx context.Context, f *Factory, store *run.Store, m *run.Manifest) *run.Manifest {
	if m.State.Terminal() || m.Handle == nil {
		return m
	}
	d, err := DriverFor(f, m)
	if err != nil {
		f.Log.Debug().Err(err).Str("run", m.RunID).Msg("cannot refresh")
		return m
	}
	fresh, err := runner.Refresh(ctx, store, m, d)
	if errors.Is(err, runner.ErrNotRecorded) {
		// The state shown is the driver's truth; say that the store still has the old one.
		f.Log.Warn().Err(err).Str("run", m.RunID).Str("state", string(fresh.State)).Msg("run store not writable: state shown is from the driver, not recorded")
		return fresh
	}
	if err != nil {
		f.Log.Debug().Err(err).Str("run", m.RunID).Msg("cannot refresh")
		return m
	}
	return fresh
}
