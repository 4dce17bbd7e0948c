package plugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/loractl/loractl/driver"
	pb "github.com/loractl/loractl/driver/proto"
)

// infoTimeout bounds the one Info call made when a plugin is dispensed; a healthy
// plugin answers in milliseconds.
const infoTimeout = 10 * time.Second

// renderTimeout bounds Render, whose interface method takes no context.
const renderTimeout = 30 * time.Second

// client is the controller's view of a remote driver. Its optional operations are
// unexported; the wrapper types below export them only when the remote has them, so
// `d.(driver.Renderer)` answers truthfully.

// A plugin looks like any built-in driver to the controller.
var _ driver.Driver = (*client)(nil)

type client struct {
	rpc    pb.DriverClient
	name   string
	arrays bool
}

type renderClient struct{ *client }

type arrayClient struct{ *client }

type renderArrayClient struct{ *client }

// Render implements driver.Renderer.
func (c renderClient) Render(task *driver.Task) ([]byte, error) { return c.render(task) }

// StartArray implements driver.ArraySubmitter.
func (c arrayClient) StartArray(ctx context.Context, tasks []*driver.Task, maxParallel int) ([]*driver.Handle, error) {
	return c.startArray(ctx, tasks, maxParallel)
}

// Render implements driver.Renderer.
func (c renderArrayClient) Render(task *driver.Task) ([]byte, error) { return c.render(task) }

// StartArray implements driver.ArraySubmitter.
func (c renderArrayClient) StartArray(ctx context.Context, tasks []*driver.Task, maxParallel int) ([]*driver.Handle, error) {
	return c.startArray(ctx, tasks, maxParallel)
}

// NewClient asks the remote driver for its name and abilities and returns it as a
// driver.Driver (plus driver.Renderer / driver.ArraySubmitter where the remote has
// them).
func NewClient(ctx context.Context, rpc pb.DriverClient) (driver.Driver, error) {
	ctx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	info, err := rpc.Info(ctx, &pb.InfoRequest{})
	if err != nil {
		return nil, fmt.Errorf("failed to query driver plugin: %w", fromStatus(ctx, err))
	}
	if info.GetName() == "" {
		return nil, errors.New("driver plugin reported an empty name")
	}
	c := &client{rpc: rpc, name: info.GetName(), arrays: info.GetStartArray()}
	switch {
	case info.GetRender() && info.GetStartArray():
		return renderArrayClient{c}, nil
	case info.GetRender():
		return renderClient{c}, nil
	case info.GetStartArray():
		return arrayClient{c}, nil
	}
	return c, nil
}

// Name implements driver.Driver; the name was fetched once when the plugin started.
func (c *client) Name() string { return c.name }

// Capabilities implements driver.Driver from what the plugin's Info reported. The
// protocol says nothing of where the trainer runs, so an external driver is taken to
// run it elsewhere (no pre-flight on this machine's GPUs), as it always was.
func (c *client) Capabilities() driver.Capabilities { return driver.Capabilities{Arrays: c.arrays} }

// Start implements driver.Driver.
func (c *client) Start(ctx context.Context, task *driver.Task) (*driver.Handle, error) {
	if task == nil {
		return nil, errors.New("failed to start task: nil task")
	}
	resp, err := c.rpc.Start(ctx, &pb.StartRequest{Task: taskToPB(task)})
	if err != nil {
		return nil, fromStatus(ctx, err)
	}
	return handleFromPB(resp.GetHandle()), nil
}

// Wait implements driver.Driver. The call stays open until the task ends; cancelling
// ctx cancels the plugin's Wait, not the task.
func (c *client) Wait(ctx context.Context, h *driver.Handle) (*driver.ExitResult, error) {
	resp, err := c.rpc.Wait(ctx, &pb.WaitRequest{Handle: handleToPB(h)})
	if err != nil {
		return nil, fromStatus(ctx, err)
	}
	return exitFromPB(resp.GetResult()), nil
}

// Signal implements driver.Driver.
func (c *client) Signal(ctx context.Context, h *driver.Handle, signal string) error {
	_, err := c.rpc.Signal(ctx, &pb.SignalRequest{Handle: handleToPB(h), Signal: signal})
	return fromStatus(ctx, err)
}

// Stop implements driver.Driver.
func (c *client) Stop(ctx context.Context, h *driver.Handle, grace time.Duration) error {
	_, err := c.rpc.Stop(ctx, &pb.StopRequest{Handle: handleToPB(h), GraceNanos: int64(grace)})
	return fromStatus(ctx, err)
}

// Inspect implements driver.Driver.
func (c *client) Inspect(ctx context.Context, h *driver.Handle) (*driver.Status, error) {
	resp, err := c.rpc.Inspect(ctx, &pb.InspectRequest{Handle: handleToPB(h)})
	if err != nil {
		return nil, fromStatus(ctx, err)
	}
	return statusFromPB(resp.GetStatus()), nil
}

func (c *client) render(task *driver.Task) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), renderTimeout)
	defer cancel()
	resp, err := c.rpc.Render(ctx, &pb.RenderRequest{Task: taskToPB(task)})
	if err != nil {
		return nil, fromStatus(ctx, err)
	}
	return resp.GetRendered(), nil
}

func (c *client) startArray(ctx context.Context, tasks []*driver.Task, maxParallel int) ([]*driver.Handle, error) {
	req := &pb.StartArrayRequest{Tasks: make([]*pb.Task, len(tasks)), MaxParallel: int32(maxParallel)}
	for i, t := range tasks {
		req.Tasks[i] = taskToPB(t)
	}
	resp, err := c.rpc.StartArray(ctx, req)
	if err != nil {
		return nil, fromStatus(ctx, err)
	}
	hs := make([]*driver.Handle, len(resp.GetHandles()))
	for i, h := range resp.GetHandles() {
		hs[i] = handleFromPB(h)
	}
	return hs, nil
}
