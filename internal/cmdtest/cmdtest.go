// Package cmdtest builds what command tests share: a Factory over in-memory streams
// and a temporary run store, and a fake driver that reports a fixed state.
package cmdtest

import (
	"bytes"
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/iostreams"
)

// Factory returns a factory whose run store is a temp dir and whose output is
// captured in out and errOut; every driver name resolves to d.
func Factory(t *testing.T, d driver.Driver) (f *cmdutil.Factory, out, errOut *bytes.Buffer) {
	t.Helper()
	io, _, out, errOut := iostreams.Test()
	l := zerolog.Nop()
	runs := filepath.Join(t.TempDir(), "runs")
	f = &cmdutil.Factory{IO: io, Log: &l, RunsDir: func() string { return runs },
		Driver: func(string) (driver.Driver, error) { return d, nil }}
	return f, out, errOut
}

// Driver is a fake driver whose task is in State until stopped; Stop records the
// call and moves it to exited.
type Driver struct {
	mu      sync.Mutex
	State   driver.TaskState
	Stopped int
	// Caps is what Capabilities reports (nothing, unless a test sets it).
	Caps driver.Capabilities
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return "fake" }

// Start implements driver.Driver.
func (d *Driver) Start(context.Context, *driver.Task) (*driver.Handle, error) {
	return &driver.Handle{Driver: "fake", Version: driver.HandleVersion, ID: "1"}, nil
}

// Wait implements driver.Driver.
func (d *Driver) Wait(context.Context, *driver.Handle) (*driver.ExitResult, error) {
	return &driver.ExitResult{}, nil
}

// Signal implements driver.Driver.
func (d *Driver) Signal(context.Context, *driver.Handle, string) error { return nil }

// Stop implements driver.Driver.
func (d *Driver) Stop(context.Context, *driver.Handle, time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Stopped++
	d.State = driver.StateExited
	return nil
}

// Capabilities implements driver.Driver: Caps, as the test set it.
func (d *Driver) Capabilities() driver.Capabilities { return d.Caps }

// Inspect implements driver.Driver.
func (d *Driver) Inspect(context.Context, *driver.Handle) (*driver.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := &driver.Status{State: d.State}
	if d.State == driver.StateExited {
		st.Exit = &driver.ExitResult{ExitCode: 75}
	}
	return st, nil
}
