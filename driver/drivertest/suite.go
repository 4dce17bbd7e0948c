package drivertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loractl/loractl/driver"
)

// stopGrace is the grace period the suite gives a trainer that checkpoints on
// SIGTERM; the fake one needs milliseconds, so Stop returning anywhere near it is a
// driver that waits out the grace instead of watching the task.
const stopGrace = 20 * time.Second

// Run runs the contract suite against the drivers factory makes. It sets
// LORACTL_FAKE_SECRET in the environment (to check Task.PassEnv), so it must not be
// called from a parallel test; its own tests run in parallel.
func Run(t *testing.T, factory Factory, opts ...Option) {
	h := &harness{factory: factory, cfg: config{shell: "/bin/sh", timeout: 60 * time.Second}}
	for _, o := range opts {
		o(&h.cfg)
	}
	if h.cfg.unknown == nil {
		h.cfg.unknown = func(valid *driver.Handle) *driver.Handle {
			u := *valid
			u.ID = "999999999"
			return &u
		}
	}
	t.Setenv(envSecret, secretValue)

	tests := []struct {
		name string
		run  func(*testing.T, *harness)
	}{
		{"Name", testName},
		{"Capabilities", testCapabilities},
		{"ExitCodes", testExitCodes},
		{"EnvironmentAndLog", testEnvironmentAndLog},
		{"InspectRunning", testInspectRunning},
		{"StopLeavesCheckpoint", testStopLeavesCheckpoint},
		{"StopKillsAfterGrace", testStopKillsAfterGrace},
		{"Signal", testSignal},
		{"WaitHonoursContext", testWaitHonoursContext},
		{"Reattach", testReattach},
		{"ReattachAfterExit", testReattachAfterExit},
		{"UnknownHandle", testUnknownHandle},
		{"HandleVersion", testHandleVersion},
		{"StartRejectsEmptyCommand", testStartRejectsEmptyCommand},
		{"Render", testRender},
		{"StartArray", testStartArray},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, h)
		})
	}
}

// ctx is a per-test deadline, so a hung driver fails the test instead of the run.
func (h *harness) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.timeout)
	t.Cleanup(cancel)
	return ctx
}

// start launches the fake trainer with env on d and makes sure the task is gone when
// the test ends, whatever happened.
func (h *harness) start(t *testing.T, ctx context.Context, d driver.Driver, env map[string]string) (*driver.Task, *driver.Handle) {
	t.Helper()
	task := h.newTask(t, env)
	hd, err := d.Start(ctx, task)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if hd == nil || hd.ID == "" {
		t.Fatalf("Start returned handle %+v, want one with an ID", hd)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = d.Stop(ctx, hd, 0)
	})
	return task, hd
}

// waitEvent polls the run's events until one of type typ appears.
func waitEvent(t *testing.T, ctx context.Context, runDir, typ string) map[string]any {
	t.Helper()
	for {
		if ev := lastEvent(events(t, runDir), typ); ev != nil {
			return ev
		}
		select {
		case <-ctx.Done():
			log, _ := os.ReadFile(filepath.Join(runDir, "train.log"))
			t.Fatalf("no %q event in %s/events.jsonl before the deadline; train.log:\n%s", typ, runDir, log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// roundTrip encodes a handle as the manifest stores it and decodes it again.
func roundTrip(t *testing.T, hd *driver.Handle) *driver.Handle {
	t.Helper()
	b, err := json.Marshal(hd)
	if err != nil {
		t.Fatal(err)
	}
	var out driver.Handle
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func testName(t *testing.T, h *harness) {
	d := h.factory(t)
	if d.Name() == "" {
		t.Fatal("Name() is empty")
	}
	_, hd := h.start(t, h.ctx(t), d, map[string]string{envSteps: "0"})
	if hd.Driver != d.Name() || hd.Version != driver.HandleVersion {
		t.Errorf("handle is for driver %q version %d, want %q version %d", hd.Driver, hd.Version, d.Name(), driver.HandleVersion)
	}
}

func testExitCodes(t *testing.T, h *harness) {
	tests := []struct {
		name string
		code int
	}{
		{"completed", 0},
		{"failed", 1},
		{"invalid config", 2},
		{"other", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := h.ctx(t)
			d := h.factory(t)
			task, hd := h.start(t, ctx, d, map[string]string{envExit: fmt.Sprint(tc.code)})
			res, err := d.Wait(ctx, hd)
			if err != nil {
				t.Fatalf("Wait: %v", err)
			}
			if res.ExitCode != tc.code || res.Signal != 0 || res.Successful() != (tc.code == 0) {
				t.Errorf("Wait = %+v, want exit code %d, no signal", res, tc.code)
			}
			st, err := d.Inspect(ctx, hd)
			if err != nil {
				t.Fatalf("Inspect after Wait: %v", err)
			}
			if st.State != driver.StateExited || st.Exit == nil || st.Exit.ExitCode != tc.code {
				t.Errorf("Inspect after Wait = %+v (exit %+v), want exited with code %d", st, st.Exit, tc.code)
			}
			end := lastEvent(events(t, task.RunDir), "end")
			if end == nil {
				t.Fatal("no end event: the trainer did not run to its end")
			}
			// A second Wait on an ended task reports the same result.
			again, err := d.Wait(ctx, hd)
			if err != nil || again.ExitCode != tc.code {
				t.Errorf("second Wait = %+v, %v; want exit code %d", again, err, tc.code)
			}
		})
	}
}

func testEnvironmentAndLog(t *testing.T, h *harness) {
	ctx := h.ctx(t)
	d := h.factory(t)
	task, hd := h.start(t, ctx, d, map[string]string{envValue: "value with spaces; $HOME 'quoted'"})
	if _, err := d.Wait(ctx, hd); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(task.RunDir, "fake-env"))
	if err != nil {
		t.Fatalf("the trainer did not record its environment: %v", err)
	}
	want := "value with spaces; $HOME 'quoted'\n" + secretValue + "\n"
	if string(got) != want {
		t.Errorf("trainer saw Env/PassEnv values %q, want %q", got, want)
	}
	if b, _ := json.Marshal(hd); bytes.Contains(b, []byte(secretValue)) {
		t.Errorf("handle %s holds the value of a PassEnv variable; pass secrets by name only", b)
	}
	log, err := os.ReadFile(task.LogPath)
	if err != nil {
		t.Fatalf("no trainer log at Task.LogPath: %v", err)
	}
	for _, line := range []string{"fake trainer: stdout", "fake trainer: stderr"} {
		if !strings.Contains(string(log), line) {
			t.Errorf("%s lacks %q; stdout and stderr both go to Task.LogPath:\n%s", task.LogPath, line, log)
		}
	}
}

func testInspectRunning(t *testing.T, h *harness) {
	ctx := h.ctx(t)
	d := h.factory(t)
	task, hd := h.start(t, ctx, d, map[string]string{envSteps: "forever"})
	waitEvent(t, ctx, task.RunDir, "start")
	st, err := d.Inspect(ctx, hd)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if st.State != driver.StateRunning || st.Exit != nil {
		t.Errorf("Inspect of a running trainer = %+v, want running without an exit", st)
	}
}

func testStopLeavesCheckpoint(t *testing.T, h *harness) {
	ctx := h.ctx(t)
	d := h.factory(t)
	task, hd := h.start(t, ctx, d, map[string]string{envSteps: "forever"})
	waitEvent(t, ctx, task.RunDir, "start")
	began := time.Now()
	if err := d.Stop(ctx, hd, stopGrace); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if took := time.Since(began); took > stopGrace/2 {
		t.Errorf("Stop took %v for a trainer that exits at once on SIGTERM", took)
	}
	res, err := d.Wait(ctx, hd)
	if err != nil {
		t.Fatalf("Wait after Stop: %v", err)
	}
	if res.ExitCode != driver.TrainerExitInterrupted || res.Signal != 0 {
		t.Errorf("Wait after Stop = %+v, want the trainer's own exit code 75", res)
	}
	if !checkpointComplete(task.RunDir) {
		t.Error("Stop left no complete checkpoint: SIGTERM did not reach the trainer")
	}
	if end := lastEvent(events(t, task.RunDir), "end"); end == nil || end["signal"] != "SIGTERM" {
		t.Errorf("end event %v, want status interrupted by SIGTERM", end)
	}
	// Stopping a task that already ended is not an error.
	if err := d.Stop(ctx, hd, time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func testStopKillsAfterGrace(t *testing.T, h *harness) {
	ctx := h.ctx(t)
	d := h.factory(t)
	task, hd := h.start(t, ctx, d, map[string]string{envSteps: "forever", envIgnoreTerm: "1"})
	waitEvent(t, ctx, task.RunDir, "start")
	const grace = time.Second
	began := time.Now()
	if err := d.Stop(ctx, hd, grace); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if took := time.Since(began); took < grace {
		t.Errorf("Stop killed after %v, before the %v grace period ended", took, grace)
	}
	res, err := d.Wait(ctx, hd)
	if err != nil {
		t.Fatalf("Wait after Stop: %v", err)
	}
	if res.Successful() || res.ExitCode == driver.TrainerExitInterrupted {
		t.Errorf("Wait after a kill = %+v, want a failed, non-resumable end", res)
	}
	if res.Signal != 0 && res.Signal != 9 {
		t.Errorf("Wait after a kill reports signal %d, want 9 (SIGKILL)", res.Signal)
	}
	st, err := d.Inspect(ctx, hd)
	if err != nil || st.State != driver.StateExited {
		t.Errorf("Inspect after a kill = %+v, %v; want exited", st, err)
	}
}

func testSignal(t *testing.T, h *harness) {
	for _, sig := range []string{"INT", "USR1"} {
		t.Run(sig, func(t *testing.T) {
			t.Parallel()
			ctx := h.ctx(t)
			d := h.factory(t)
			task, hd := h.start(t, ctx, d, map[string]string{envSteps: "forever"})
			waitEvent(t, ctx, task.RunDir, "start")
			if err := d.Signal(ctx, hd, "NO-SUCH-SIGNAL"); err == nil {
				t.Error("Signal accepted an unknown signal name")
			}
			if err := d.Signal(ctx, hd, sig); err != nil {
				t.Fatalf("Signal(%s): %v", sig, err)
			}
			res, err := d.Wait(ctx, hd)
			if err != nil {
				t.Fatalf("Wait: %v", err)
			}
			if res.ExitCode != driver.TrainerExitInterrupted {
				t.Errorf("Wait after SIG%s = %+v, want exit code 75", sig, res)
			}
			if end := lastEvent(events(t, task.RunDir), "end"); end == nil || end["signal"] != "SIG"+sig {
				t.Errorf("end event %v, want interrupted by SIG%s", end, sig)
			}
		})
	}
}

func testWaitHonoursContext(t *testing.T, h *harness) {
	ctx := h.ctx(t)
	d := h.factory(t)
	task, hd := h.start(t, ctx, d, map[string]string{envSteps: "forever"})
	waitEvent(t, ctx, task.RunDir, "start")
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	res, err := d.Wait(short, hd)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with an expiring context = %+v, %v; want context.DeadlineExceeded", res, err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("Wait returned %v after its context expired", took)
	}
	// Giving up waiting must not touch the task.
	st, err := d.Inspect(ctx, hd)
	if err != nil || st.State != driver.StateRunning {
		t.Errorf("Inspect after an abandoned Wait = %+v, %v; want still running", st, err)
	}
}

// reattachedWait checks Wait on an ended task by a controller that did not start it.
// A driver declared WithReattachExitUnknown may answer "gone, status unknown":
// ExitCode -1 with a Reason, or driver.ErrTaskNotFound.
func (h *harness) reattachedWait(t *testing.T, ctx context.Context, d driver.Driver, hd *driver.Handle, want int) {
	t.Helper()
	res, err := d.Wait(ctx, hd)
	if h.cfg.exitUnknown && (errors.Is(err, driver.ErrTaskNotFound) || err == nil && res.ExitCode == -1 && res.Reason != "") {
		return
	}
	if err != nil {
		t.Fatalf("Wait after reattaching: %v", err)
	}
	if res.ExitCode != want {
		t.Errorf("Wait after reattaching = %+v, want exit code %d", res, want)
	}
}

func testReattach(t *testing.T, h *harness) {
	ctx := h.ctx(t)
	first := h.factory(t)
	task, hd := h.start(t, ctx, first, map[string]string{envSteps: "forever"})
	waitEvent(t, ctx, task.RunDir, "start")

	// A new controller process: a fresh driver and the handle as the manifest kept it.
	second := h.factory(t)
	stored := roundTrip(t, hd)
	st, err := second.Inspect(ctx, stored)
	if err != nil {
		t.Fatalf("Inspect after reattaching: %v", err)
	}
	if st.State != driver.StateRunning {
		t.Errorf("Inspect after reattaching = %+v, want running", st)
	}
	if err := second.Stop(ctx, stored, stopGrace); err != nil {
		t.Fatalf("Stop after reattaching: %v", err)
	}
	h.reattachedWait(t, ctx, second, stored, 75)
	if !checkpointComplete(task.RunDir) {
		t.Error("Stop through a reattached handle left no complete checkpoint")
	}
}

func testReattachAfterExit(t *testing.T, h *harness) {
	ctx := h.ctx(t)
	first := h.factory(t)
	_, hd := h.start(t, ctx, first, map[string]string{envExit: "3"})
	if res, err := first.Wait(ctx, hd); err != nil || res.ExitCode != 3 {
		t.Fatalf("Wait = %+v, %v; want exit code 3", res, err)
	}
	second := h.factory(t)
	stored := roundTrip(t, hd)
	h.reattachedWait(t, ctx, second, stored, 3)
	st, err := second.Inspect(ctx, stored)
	if h.cfg.exitUnknown && errors.Is(err, driver.ErrTaskNotFound) {
		return
	}
	if err != nil || st.State != driver.StateExited {
		t.Errorf("Inspect of an ended task after reattaching = %+v, %v; want exited", st, err)
	}
}

func testUnknownHandle(t *testing.T, h *harness) {
	ctx := h.ctx(t)
	d := h.factory(t)
	_, hd := h.start(t, ctx, d, map[string]string{envSteps: "0"})
	if _, err := d.Wait(ctx, hd); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	unknown := h.cfg.unknown(roundTrip(t, hd))
	if _, err := d.Wait(ctx, unknown); !errors.Is(err, driver.ErrTaskNotFound) {
		t.Errorf("Wait(unknown) = %v, want driver.ErrTaskNotFound", err)
	}
	st, err := d.Inspect(ctx, unknown)
	// A driver that cannot see other controllers' tasks end cannot tell "ended" from
	// "never was"; "exited, status unknown" is then as true as "not found".
	endedUnknown := h.cfg.exitUnknown && err == nil && st.State == driver.StateExited && st.Exit == nil
	if !errors.Is(err, driver.ErrTaskNotFound) && !endedUnknown {
		t.Errorf("Inspect(unknown) = %+v, %v; want driver.ErrTaskNotFound", st, err)
	}
	if err := d.Signal(ctx, unknown, "TERM"); !errors.Is(err, driver.ErrTaskNotFound) {
		t.Errorf("Signal(unknown) = %v, want driver.ErrTaskNotFound", err)
	}
	// Stop is idempotent: a task that is gone is stopped.
	if err := d.Stop(ctx, unknown, time.Second); err != nil && !errors.Is(err, driver.ErrTaskNotFound) {
		t.Errorf("Stop(unknown) = %v, want nil or driver.ErrTaskNotFound", err)
	}
}

func testHandleVersion(t *testing.T, h *harness) {
	ctx := h.ctx(t)
	d := h.factory(t)
	_, hd := h.start(t, ctx, d, map[string]string{envSteps: "0"})
	if _, err := d.Wait(ctx, hd); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	newer := roundTrip(t, hd)
	newer.Version = driver.HandleVersion + 1
	other := roundTrip(t, hd)
	other.Driver = "not-" + d.Name()
	ops := map[string]func(*driver.Handle) error{
		"Wait":    func(x *driver.Handle) error { _, err := d.Wait(ctx, x); return err },
		"Inspect": func(x *driver.Handle) error { _, err := d.Inspect(ctx, x); return err },
		"Signal":  func(x *driver.Handle) error { return d.Signal(ctx, x, "TERM") },
		"Stop":    func(x *driver.Handle) error { return d.Stop(ctx, x, time.Second) },
	}
	for name, op := range ops {
		if err := op(newer); !errors.Is(err, driver.ErrHandleVersion) {
			t.Errorf("%s(handle version %d) = %v, want driver.ErrHandleVersion", name, newer.Version, err)
		}
		if err := op(other); err == nil {
			t.Errorf("%s accepted a handle of driver %q", name, other.Driver)
		}
		if err := op(nil); err == nil {
			t.Errorf("%s accepted a nil handle", name)
		}
	}
}

func testStartRejectsEmptyCommand(t *testing.T, h *harness) {
	d := h.factory(t)
	task := h.newTask(t, nil)
	task.Command = nil
	if hd, err := d.Start(h.ctx(t), task); err == nil {
		t.Cleanup(func() { _ = d.Stop(context.Background(), hd, 0) })
		t.Fatalf("Start with no command = %+v, want an error", hd)
	}
}

func testRender(t *testing.T, h *harness) {
	d := h.factory(t)
	r, ok := d.(driver.Renderer)
	if !ok {
		t.Logf("driver %s is no driver.Renderer: nothing to check", d.Name())
		return
	}
	task := h.newTask(t, map[string]string{envValue: "rendered"})
	out, err := r.Render(task)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if len(out) == 0 {
		t.Error("Render returned nothing")
	}
	if bytes.Contains(out, []byte(secretValue)) {
		t.Errorf("Render shows the value of a PassEnv variable:\n%s", out)
	}
	if evs := events(t, task.RunDir); len(evs) != 0 {
		t.Errorf("Render launched the trainer: %d events written", len(evs))
	}
}

// testCapabilities checks that what a driver says it can do matches the optional
// interfaces it implements: the controller trusts the flags.
func testCapabilities(t *testing.T, h *harness) {
	d := h.factory(t)
	c := d.Capabilities()
	_, isArray := d.(driver.ArraySubmitter)
	if c.Arrays != isArray {
		t.Errorf("Capabilities().Arrays = %v but the driver is an ArraySubmitter: %v", c.Arrays, isArray)
	}
	_, reportsImage := d.(driver.ImageReporter)
	if c.Image != reportsImage {
		t.Errorf("Capabilities().Image = %v but the driver is an ImageReporter: %v", c.Image, reportsImage)
	}
}

func testStartArray(t *testing.T, h *harness) {
	ctx := h.ctx(t)
	d := h.factory(t)
	a, ok := d.(driver.ArraySubmitter)
	if !ok {
		t.Logf("driver %s is no driver.ArraySubmitter: nothing to check", d.Name())
		return
	}
	codes := []int{0, 1, 0}
	tasks := make([]*driver.Task, len(codes))
	for i, c := range codes {
		tasks[i] = h.newTask(t, map[string]string{envExit: fmt.Sprint(c)})
	}
	hs, err := a.StartArray(ctx, tasks, 2)
	if err != nil {
		t.Fatalf("StartArray: %v", err)
	}
	if len(hs) != len(tasks) {
		t.Fatalf("StartArray returned %d handles for %d tasks", len(hs), len(tasks))
	}
	for i, hd := range hs {
		t.Cleanup(func() { _ = d.Stop(context.Background(), hd, 0) })
		res, err := d.Wait(ctx, hd)
		if err != nil {
			t.Fatalf("Wait(task %d): %v", i, err)
		}
		if res.ExitCode != codes[i] {
			t.Errorf("task %d exited %d, want %d", i, res.ExitCode, codes[i])
		}
	}
}
