package plugin

import (
	"context"
	"sync"
	"testing"
	"time"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/loractl/loractl/driver"
)

// fakeDriver is a driver.Driver whose behaviour each test sets through function
// fields; it tests the transport, not a driver.
type fakeDriver struct {
	name    string
	start   func(context.Context, *driver.Task) (*driver.Handle, error)
	wait    func(context.Context, *driver.Handle) (*driver.ExitResult, error)
	signal  func(context.Context, *driver.Handle, string) error
	stop    func(context.Context, *driver.Handle, time.Duration) error
	inspect func(context.Context, *driver.Handle) (*driver.Status, error)
}

func (f *fakeDriver) Name() string { return f.name }

func (f *fakeDriver) Start(ctx context.Context, t *driver.Task) (*driver.Handle, error) {
	return f.start(ctx, t)
}

func (f *fakeDriver) Wait(ctx context.Context, h *driver.Handle) (*driver.ExitResult, error) {
	return f.wait(ctx, h)
}

func (f *fakeDriver) Signal(ctx context.Context, h *driver.Handle, s string) error {
	return f.signal(ctx, h, s)
}

func (f *fakeDriver) Stop(ctx context.Context, h *driver.Handle, g time.Duration) error {
	return f.stop(ctx, h, g)
}

func (f *fakeDriver) Capabilities() driver.Capabilities { return driver.Capabilities{} }

func (f *fakeDriver) Inspect(ctx context.Context, h *driver.Handle) (*driver.Status, error) {
	return f.inspect(ctx, h)
}

// fakeRenderer adds driver.Renderer.
type fakeRenderer struct {
	*fakeDriver
	render func(*driver.Task) ([]byte, error)
}

func (f *fakeRenderer) Render(t *driver.Task) ([]byte, error) { return f.render(t) }

// fakeArray adds driver.ArraySubmitter.
type fakeArray struct {
	*fakeDriver
	startArray func(context.Context, []*driver.Task, int) ([]*driver.Handle, error)
}

func (f *fakeArray) StartArray(ctx context.Context, ts []*driver.Task, n int) ([]*driver.Handle, error) {
	return f.startArray(ctx, ts, n)
}

// fakeBoth has both optional interfaces.
type fakeBoth struct {
	*fakeRenderer
	startArray func(context.Context, []*driver.Task, int) ([]*driver.Handle, error)
}

func (f *fakeBoth) StartArray(ctx context.Context, ts []*driver.Task, n int) ([]*driver.Handle, error) {
	return f.startArray(ctx, ts, n)
}

// overGRPC serves impl over go-plugin's in-process gRPC pair and returns the client
// side, plus a function that stops the server (to simulate a plugin that died).
func overGRPC(t *testing.T, impl driver.Driver) (driver.Driver, func()) {
	t.Helper()
	client, server := goplugin.TestPluginGRPCConn(t, false, PluginSet(impl))
	var once sync.Once
	stop := func() { once.Do(server.Stop) }
	t.Cleanup(func() {
		// Server first: client.Close asks the server to stop itself, and two
		// concurrent Stops race inside go-plugin.
		stop()
		_ = client.Close()
	})
	raw, err := client.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(driver.Driver), stop
}
