package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/loractl/loractl/driver"
)

func fullTask() *driver.Task {
	return &driver.Task{
		RunID:    "quickstart-1a2b3c",
		RunDir:   "/runs/quickstart-1a2b3c",
		Command:  []string{"/venv/bin/python", "train_lora.py", "--config", "resolved.json"},
		Env:      map[string]string{"HF_HUB_OFFLINE": "1", "EMPTY": ""},
		PassEnv:  []string{"HF_TOKEN"},
		ReadOnly: []string{"/data/train.jsonl", "/models/tiny"},
		GPUs:     []int{0, 3},
		LogPath:  "/runs/quickstart-1a2b3c/train.log",
		Options:  json.RawMessage(`{"image":"loractl:gpu"}`),
	}
}

func TestConvertRoundTrip(t *testing.T) {
	started := time.Date(2026, 11, 28, 4, 0, 0, 123456789, time.UTC)
	t.Run("task", func(t *testing.T) {
		for _, task := range []*driver.Task{fullTask(), {RunID: "bare", Command: []string{"python"}}} {
			if got := taskFromPB(taskToPB(task)); !reflect.DeepEqual(got, task) {
				t.Errorf("task round trip:\n got %#v\nwant %#v", got, task)
			}
		}
	})
	t.Run("handle", func(t *testing.T) {
		for _, h := range []*driver.Handle{
			{Driver: "slurm", Version: 1, ID: "4242", State: json.RawMessage(`{"job":4242,"cluster":"c"}`)},
			{Driver: "local", Version: 7, ID: "1"},
			nil,
		} {
			if got := handleFromPB(handleToPB(h)); !reflect.DeepEqual(got, h) {
				t.Errorf("handle round trip: got %#v, want %#v", got, h)
			}
		}
	})
	t.Run("status", func(t *testing.T) {
		for _, s := range []*driver.Status{
			{State: driver.StatePending, Reason: "Resources"},
			{State: driver.StateRunning, StartedAt: started},
			{State: driver.StateExited, StartedAt: started, FinishedAt: started.Add(time.Minute),
				Exit: &driver.ExitResult{ExitCode: 137, Signal: 9, OOMKilled: true, Reason: "OOMKilled"}},
		} {
			if got := statusFromPB(statusToPB(s)); !reflect.DeepEqual(got, s) {
				t.Errorf("status round trip:\n got %#v\nwant %#v", got, s)
			}
		}
	})
}

func TestSentinelErrorsCrossTheWire(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		sentinel error
	}{
		{"task not found", fmt.Errorf("pid 42: %w", driver.ErrTaskNotFound), driver.ErrTaskNotFound},
		{"handle version", driver.ErrHandleVersion, driver.ErrHandleVersion},
		{"not supported", fmt.Errorf("no arrays here: %w", driver.ErrNotSupported), driver.ErrNotSupported},
		{"deadline", fmt.Errorf("sbatch: %w", context.DeadlineExceeded), context.DeadlineExceeded},
		{"plain", errors.New("failed to start task: exec: \"python\": not found"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fail := func(context.Context, *driver.Handle) (*driver.Status, error) { return nil, tc.err }
			d, _ := overGRPC(t, &fakeDriver{name: "fake", inspect: fail})
			_, err := d.Inspect(context.Background(), &driver.Handle{Driver: "fake"})
			if err == nil || err.Error() != tc.err.Error() {
				t.Fatalf("Inspect error = %v, want the driver's message %q", err, tc.err)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("errors.Is(%v, %v) = false across gRPC", err, tc.sentinel)
			}
			for _, other := range []error{driver.ErrTaskNotFound, driver.ErrHandleVersion, driver.ErrNotSupported} {
				if other != tc.sentinel && errors.Is(err, other) {
					t.Errorf("%v also reads as %v", err, other)
				}
			}
		})
	}
}

func TestCallsReachTheDriver(t *testing.T) {
	want := fullTask()
	h := &driver.Handle{Driver: "fake", Version: driver.HandleVersion, ID: "7", State: json.RawMessage(`{"pid":7}`)}
	var got struct {
		task   *driver.Task
		signal string
		grace  time.Duration
	}
	fake := &fakeDriver{
		name: "fake",
		start: func(_ context.Context, task *driver.Task) (*driver.Handle, error) {
			got.task = task
			return h, nil
		},
		wait: func(_ context.Context, in *driver.Handle) (*driver.ExitResult, error) {
			if !reflect.DeepEqual(in, h) {
				return nil, fmt.Errorf("wait got handle %#v", in)
			}
			return &driver.ExitResult{ExitCode: 75}, nil
		},
		signal: func(_ context.Context, _ *driver.Handle, s string) error { got.signal = s; return nil },
		stop:   func(_ context.Context, _ *driver.Handle, g time.Duration) error { got.grace = g; return nil },
	}
	d, _ := overGRPC(t, fake)
	ctx := context.Background()
	if d.Name() != "fake" {
		t.Errorf("Name() = %q over gRPC", d.Name())
	}
	gotH, err := d.Start(ctx, want)
	if err != nil || !reflect.DeepEqual(gotH, h) {
		t.Fatalf("Start = %#v, %v; want %#v", gotH, err, h)
	}
	if !reflect.DeepEqual(got.task, want) {
		t.Errorf("driver got task\n %#v\nwant %#v", got.task, want)
	}
	if res, err := d.Wait(ctx, gotH); err != nil || res.ExitCode != 75 {
		t.Errorf("Wait = %+v, %v", res, err)
	}
	if err := d.Signal(ctx, gotH, "USR1"); err != nil || got.signal != "USR1" {
		t.Errorf("Signal: %v; driver got %q", err, got.signal)
	}
	if err := d.Stop(ctx, gotH, 90*time.Second); err != nil || got.grace != 90*time.Second {
		t.Errorf("Stop: %v; driver got grace %v", err, got.grace)
	}
}

// TestWaitCancellationPropagates is why Wait can be a unary call: cancelling the
// controller's context must end the driver's Wait too, not leave it blocked.
func TestWaitCancellationPropagates(t *testing.T) {
	serverDone := make(chan error, 1)
	fake := &fakeDriver{name: "fake", wait: func(ctx context.Context, _ *driver.Handle) (*driver.ExitResult, error) {
		select {
		case <-ctx.Done():
			serverDone <- ctx.Err()
			return nil, ctx.Err()
		case <-time.After(30 * time.Second):
			serverDone <- nil
			return &driver.ExitResult{}, nil
		}
	}}
	d, _ := overGRPC(t, fake)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	_, err := d.Wait(ctx, &driver.Handle{Driver: "fake"})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("client Wait = %v, want context.Canceled", err)
	}
	select {
	case err := <-serverDone:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("driver's Wait ended with %v, want its context cancelled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the driver's Wait was still blocked 5s after the caller gave up")
	}
}

func TestPluginGoneIsUnavailable(t *testing.T) {
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	fake := &fakeDriver{name: "fake", wait: func(ctx context.Context, _ *driver.Handle) (*driver.ExitResult, error) {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil, ctx.Err()
	}}
	d, stop := overGRPC(t, fake)
	time.AfterFunc(200*time.Millisecond, stop)
	_, err := d.Wait(context.Background(), &driver.Handle{Driver: "fake"})
	if !errors.Is(err, ErrPluginUnavailable) {
		t.Fatalf("Wait on a plugin that went away = %v, want ErrPluginUnavailable", err)
	}
}

func TestOptionalInterfacesFollowTheRemote(t *testing.T) {
	base := &fakeDriver{name: "fake"}
	render := func(task *driver.Task) ([]byte, error) { return []byte("docker run " + task.RunID), nil }
	array := func(_ context.Context, ts []*driver.Task, n int) ([]*driver.Handle, error) {
		hs := make([]*driver.Handle, len(ts))
		for i, task := range ts {
			hs[i] = &driver.Handle{Driver: "fake", ID: fmt.Sprintf("%s/%d", task.RunID, n)}
		}
		return hs, nil
	}
	tests := []struct {
		name          string
		impl          driver.Driver
		render, array bool
	}{
		{"neither", base, false, false},
		{"renderer", &fakeRenderer{fakeDriver: base, render: render}, true, false},
		{"array", &fakeArray{fakeDriver: base, startArray: array}, false, true},
		{"both", &fakeBoth{fakeRenderer: &fakeRenderer{fakeDriver: base, render: render}, startArray: array}, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := overGRPC(t, tc.impl)
			r, isRenderer := d.(driver.Renderer)
			a, isArray := d.(driver.ArraySubmitter)
			if isRenderer != tc.render || isArray != tc.array {
				t.Fatalf("client is Renderer=%v ArraySubmitter=%v, want %v %v", isRenderer, isArray, tc.render, tc.array)
			}
			// What the controller asks: arrays as Info reported, and an external
			// driver never counts as running the trainer on this machine.
			if c := d.Capabilities(); c != (driver.Capabilities{Arrays: tc.array}) {
				t.Errorf("Capabilities = %+v", c)
			}
			if isRenderer {
				out, err := r.Render(&driver.Task{RunID: "r1"})
				if err != nil || string(out) != "docker run r1" {
					t.Errorf("Render = %q, %v", out, err)
				}
			}
			if isArray {
				hs, err := a.StartArray(context.Background(), []*driver.Task{{RunID: "a"}, {RunID: "b"}}, 2)
				if err != nil || len(hs) != 2 || hs[1].ID != "b/2" {
					t.Errorf("StartArray = %+v, %v", hs, err)
				}
			}
		})
	}
}

// TestUnsupportedIsErrNotSupported covers a controller calling an optional RPC the
// plugin's driver lacks (e.g. through a client built by hand): the answer must be
// driver.ErrNotSupported, not a transport error.
func TestUnsupportedIsErrNotSupported(t *testing.T) {
	d, _ := overGRPC(t, &fakeDriver{name: "fake"})
	c := d.(*client)
	if _, err := c.render(&driver.Task{}); !errors.Is(err, driver.ErrNotSupported) || !strings.Contains(err.Error(), "fake") {
		t.Errorf("render on a driver without Render = %v, want ErrNotSupported naming the driver", err)
	}
	if _, err := c.startArray(context.Background(), nil, 1); !errors.Is(err, driver.ErrNotSupported) {
		t.Errorf("startArray on a driver without it = %v, want ErrNotSupported", err)
	}
}
