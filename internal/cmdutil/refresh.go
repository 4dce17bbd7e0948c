package cmdutil

import (
	"context"

	"github.com/loractl/loractl/internal/runner"
	"github.com/loractl/loractl/run"
)

// RefreshRun brings an unfinished run's manifest up to date through its driver; on
// any problem it returns the manifest as stored (listing must not fail on one run).
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
	if err != nil {
		f.Log.Debug().Err(err).Str("run", m.RunID).Msg("cannot refresh")
		return m
	}
	return fresh
}
