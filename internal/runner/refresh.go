package runner

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/run"
)

// Refresh brings the manifest of a run that no controller is driving (a detached
// Slurm job, a controller that was killed) up to date from its driver and its events.
// A run whose lock is held is left alone: its controller keeps the manifest current.
func Refresh(ctx context.Context, store *run.Store, m *run.Manifest, d driver.Driver) (*run.Manifest, error) {
	if m.State.Terminal() || m.Handle == nil || d == nil {
		return m, nil
	}
	dir := store.Dir(m.RunID)
	lock, err := run.LockDir(dir)
	if errors.Is(err, run.ErrLocked) {
		return m, nil
	}
	if err != nil {
		return m, err
	}
	defer lock.Unlock()
	// Re-read under the lock: the driving controller may have just finished.
	if fresh, err := run.ReadManifest(dir); err == nil {
		m = fresh
	}
	if m.State.Terminal() {
		return m, nil
	}
	st, err := d.Inspect(ctx, m.Handle)
	var exit *driver.ExitResult
	switch {
	case errors.Is(err, driver.ErrTaskNotFound):
		// Gone without a trace in the driver: the events tell how it ended.
	case err != nil:
		return m, err
	case st.State == driver.StatePending || st.State == driver.StateRunning:
		want := run.StateRunning
		if st.State == driver.StatePending {
			want = run.StatePending
		}
		if m.State != want {
			m.State = want
			err = run.WriteManifest(dir, m)
		}
		return m, err
	default:
		exit = st.Exit
	}
	// Only the last attempt's events count: from the offset where it began (an
	// attempt that died before writing anything must not inherit the previous
	// attempt's end).
	f := run.NewFollower(filepath.Join(dir, run.EventsFile))
	if last := m.LastAttempt(); last != nil {
		f.StartAt(last.EventsOffset)
	}
	events, err := f.Poll()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return m, err
	}
	o := outcome(exit, events)
	if o.Exit == nil && o.End == nil {
		o.State = run.StateFailed
	}
	for _, e := range events {
		if e.Type == run.EventStart {
			m.Versions, m.Device = e.Versions, e.Device
			if e.Distributed != nil {
				m.Distributed = e.Distributed
			}
		}
	}
	foldHistory(d, dir, m)
	return m, recordOutcome(dir, m, o)
}
