package runner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/run"
)

// ErrNotRecorded means Refresh learned a run's state but could not write it to the
// run store (read-only, full): the manifest it returns is the truth, the one on disk
// is stale.
var ErrNotRecorded = errors.New("the run's state could not be recorded in the run store")

// Refresh brings the manifest of a run that no controller is driving (a detached
// Slurm job, a controller that was killed) up to date from its driver and its events.
// A run whose lock is held is left alone: its controller keeps the manifest current.
// A lock that cannot be taken at all (a read-only or full store: no controller can
// hold it either) does not stop the refresh; when the manifest cannot be written, the
// returned manifest still says what the driver and events say and the error wraps
// ErrNotRecorded, so a dead run is never shown as running.
func Refresh(ctx context.Context, store *run.Store, m *run.Manifest, d driver.Driver) (*run.Manifest, error) {
	if m.State.Terminal() || m.Handle == nil || d == nil {
		return m, nil
	}
	dir := store.Dir(m.RunID)
	lock, err := run.LockDir(dir)
	if errors.Is(err, run.ErrLocked) {
		return m, nil
	}
	if err == nil {
		defer lock.Unlock()
	}
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
			err = writeErr(run.WriteManifest(dir, m))
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
	err = writeErr(recordOutcome(ctx, dir, m, o, nil)) // recordOutcome updates m before it writes
	report(dir, o)
	return m, err
}

// writeErr marks a failed manifest write as ErrNotRecorded.
func writeErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %v", ErrNotRecorded, err)
}
