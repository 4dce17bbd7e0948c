// Package execdriver is a small example of an external loractl driver: "exec" runs
// the trainer as a plain local process, detached from the controller, under a tiny
// supervisor (the same executable, run as `supervise`) that records the trainer's
// exit status in the run dir. A controller that restarts reattaches through the
// handle and still learns the exact exit code.
//
// It is meant to be read: every driver has the same shape (Start returns a handle
// holding everything needed to find the task again; Wait, Signal, Stop and Inspect
// work from that handle alone, in whichever process they run).
package execdriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/plugin"
)

// Name is the driver's config name; the executable is loractl-driver-exec.
const Name = "exec"

// stateDir is the driver's own folder inside the run dir, for status files.
const stateDir = ".loractl-exec"

// pollEvery is how often Wait and Stop look at a task's status file.
const pollEvery = 50 * time.Millisecond

// startTimeout bounds how long Start waits for the supervisor to report the trainer
// started (or could not start).
const startTimeout = 10 * time.Second

// Driver is the exec driver.
type Driver struct {
	self   string
	logger hclog.Logger
}

// New returns the exec driver. self is the executable to run as the supervisor
// (normally os.Executable()); logger receives the driver's own logs.
func New(self string, logger hclog.Logger) *Driver {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Driver{self: self, logger: logger}
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return Name }

// Capabilities: nothing beyond the contract. (Over go-plugin the controller learns
// only what the Info call reports: Render and StartArray.)
func (d *Driver) Capabilities() driver.Capabilities { return driver.Capabilities{} }

// handleState is what a stored handle needs to find the task again.
type handleState struct {
	// SupervisorPID and SupervisorStart (its start time in clock ticks, from /proc)
	// identify the supervisor even if its pid is later reused.
	SupervisorPID   int    `json:"supervisor_pid"`
	SupervisorStart string `json:"supervisor_start,omitempty"`
	// Status is the supervisor's status file.
	Status string `json:"status"`
}

// Start implements driver.Driver.
func (d *Driver) Start(ctx context.Context, task *driver.Task) (*driver.Handle, error) {
	if err := validate(task); err != nil {
		return nil, fmt.Errorf("failed to start task: %w", err)
	}
	dir := filepath.Join(task.RunDir, stateDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to start task: %w", err)
	}
	status := filepath.Join(dir, strconv.FormatInt(time.Now().UnixNano(), 10)+".json")
	args := append([]string{SuperviseArg, "--status", status, "--log", task.LogPath, "--dir", task.RunDir, "--"}, task.Command...)
	cmd := exec.Command(d.self, args...)
	cmd.Env = environ(task)
	// A session of its own: the supervisor and the trainer outlive this plugin
	// process (which ends with each controller) and get no terminal's signals.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start task: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		// Reap the supervisor whenever it ends, so it never lingers as a zombie.
		_ = cmd.Wait()
		close(exited)
	}()
	st, err := awaitStart(ctx, status, exited)
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("failed to start task: %w", err)
	}
	if st.StartError != "" {
		return nil, fmt.Errorf("failed to start task: %s", st.StartError)
	}
	pid := cmd.Process.Pid
	raw, err := json.Marshal(handleState{SupervisorPID: pid, SupervisorStart: startTicks(pid), Status: status})
	if err != nil {
		return nil, err
	}
	d.logger.Info("task started", "run_id", task.RunID, "trainer_pid", st.TrainerPID, "supervisor_pid", pid)
	return &driver.Handle{Driver: Name, Version: driver.HandleVersion, ID: strconv.Itoa(st.TrainerPID), State: raw}, nil
}

func validate(task *driver.Task) error {
	switch {
	case task == nil:
		return errors.New("nil task")
	case len(task.Command) == 0:
		return errors.New("empty command")
	case !filepath.IsAbs(task.RunDir):
		return fmt.Errorf("run dir %q is not absolute", task.RunDir)
	case task.LogPath == "":
		return errors.New("no log path")
	}
	return nil
}

// awaitStart waits until the supervisor has written its first status.
func awaitStart(ctx context.Context, path string, exited <-chan struct{}) (*taskStatus, error) {
	deadline := time.After(startTimeout)
	for {
		st, err := readStatus(path)
		if err == nil {
			return st, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		select {
		case <-exited:
			// One last look: it may have written the status just before exiting.
			if st, err := readStatus(path); err == nil {
				return st, nil
			}
			return nil, errors.New("supervisor exited without starting the trainer")
		case <-deadline:
			return nil, fmt.Errorf("supervisor did not report within %v", startTimeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// environ is the controller's environment, which this plugin process inherited and
// which holds the PassEnv variables, plus the task's values.
func environ(task *driver.Task) []string {
	env := plugin.Environ()
	keys := make([]string, 0, len(task.Env))
	for k := range task.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+task.Env[k])
	}
	return env
}

// task is what a handle leads to right now.
type task struct {
	state  *handleState
	status *taskStatus
}

// lookup decodes h and reads the task's status. A task whose status file is gone is
// not found: the run dir was removed, or the handle never named a task.
func lookup(h *driver.Handle) (*task, error) {
	if err := driver.CheckHandle(h, Name); err != nil {
		return nil, err
	}
	var hs handleState
	if err := json.Unmarshal(h.State, &hs); err != nil || hs.SupervisorPID <= 0 || hs.Status == "" {
		return nil, fmt.Errorf("invalid exec handle state %s", h.State)
	}
	st, err := readStatus(hs.Status)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no status file %s: %w", hs.Status, driver.ErrTaskNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &task{state: &hs, status: st}, nil
}

// result is the task's exit, or nil while it runs. A supervisor that died without
// recording the end (killed with SIGKILL itself) leaves the status unknown.
func (t *task) result() *driver.ExitResult {
	if r := t.status.result(); r != nil {
		return r
	}
	if !alive(t.state.SupervisorPID, t.state.SupervisorStart) {
		// It may have recorded the end and exited since the status was read: read
		// it again now that it can no longer change.
		if st, err := readStatus(t.state.Status); err == nil {
			if r := st.result(); r != nil {
				t.status = st
				return r
			}
		}
		return &driver.ExitResult{ExitCode: -1, Reason: "supervisor died before recording the exit status"}
	}
	return nil
}

// result is the recorded exit, or nil when none is recorded.
func (st *taskStatus) result() *driver.ExitResult {
	if !st.Exited {
		return nil
	}
	r := &driver.ExitResult{ExitCode: st.ExitCode, Signal: st.Signal}
	if st.Signal != 0 {
		r.Reason = "killed by " + syscall.Signal(st.Signal).String()
	}
	return r
}

// Wait implements driver.Driver.
func (d *Driver) Wait(ctx context.Context, h *driver.Handle) (*driver.ExitResult, error) {
	for {
		t, err := lookup(h)
		if err != nil {
			return nil, err
		}
		if r := t.result(); r != nil {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// Signal implements driver.Driver. The signal goes to the trainer's process group.
func (d *Driver) Signal(ctx context.Context, h *driver.Handle, name string) error {
	t, err := lookup(h)
	if err != nil {
		return err
	}
	sig, err := parseSignal(name)
	if err != nil {
		return err
	}
	if t.result() != nil {
		return fmt.Errorf("trainer %d already ended: %w", t.status.TrainerPID, driver.ErrTaskNotFound)
	}
	if err := syscall.Kill(-t.status.TrainerPID, sig); err != nil {
		return fmt.Errorf("signal %s to trainer %d: %w", name, t.status.TrainerPID, err)
	}
	return nil
}

// Stop implements driver.Driver: SIGTERM (the trainer checkpoints), SIGKILL after
// grace, and it returns once the supervisor has recorded the end.
func (d *Driver) Stop(ctx context.Context, h *driver.Handle, grace time.Duration) error {
	if err := d.Signal(ctx, h, "TERM"); err != nil {
		if errors.Is(err, driver.ErrTaskNotFound) {
			return nil
		}
		return err
	}
	graceCtx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	_, err := d.Wait(graceCtx, h)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case !errors.Is(err, context.DeadlineExceeded):
		return err
	}
	d.logger.Warn("trainer ignored SIGTERM; killing it", "id", h.ID, "grace", grace.String())
	if err := d.Signal(ctx, h, "KILL"); err != nil && !errors.Is(err, driver.ErrTaskNotFound) {
		return err
	}
	_, err = d.Wait(ctx, h)
	return err
}

// Inspect implements driver.Driver.
func (d *Driver) Inspect(ctx context.Context, h *driver.Handle) (*driver.Status, error) {
	t, err := lookup(h)
	if err != nil {
		return nil, err
	}
	st := &driver.Status{State: driver.StateRunning, StartedAt: t.status.StartedAt}
	if r := t.result(); r != nil {
		st.State, st.Exit, st.FinishedAt = driver.StateExited, r, t.status.FinishedAt
	}
	return st, nil
}

func parseSignal(name string) (syscall.Signal, error) {
	switch strings.TrimPrefix(name, "SIG") {
	case "TERM":
		return syscall.SIGTERM, nil
	case "INT":
		return syscall.SIGINT, nil
	case "USR1":
		return syscall.SIGUSR1, nil
	case "HUP":
		return syscall.SIGHUP, nil
	case "KILL":
		return syscall.SIGKILL, nil
	}
	return 0, fmt.Errorf("unsupported signal %q (use TERM, INT, USR1, HUP or KILL)", name)
}

// alive reports whether pid runs and is still the process that started at ticks.
func alive(pid int, ticks string) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	now := startTicks(pid)
	if ticks != "" && now != ticks {
		return false
	}
	// A zombie has ended; it waits only for its parent to reap it.
	return procState(pid) != "Z"
}

// startTicks is field 22 of /proc/PID/stat, the process's start time in clock ticks.
func startTicks(pid int) string { return statField(pid, 19) }

// procState is field 3 of /proc/PID/stat.
func procState(pid int) string { return statField(pid, 0) }

// statField returns the i-th field after the command name in /proc/PID/stat (the
// name may hold spaces, so counting starts after its closing parenthesis).
func statField(pid, i int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	j := strings.LastIndexByte(s, ')')
	if j < 0 {
		return ""
	}
	f := strings.Fields(s[j+1:])
	if i >= len(f) {
		return ""
	}
	return f[i]
}

// The driver contracts this driver meets, checked at compile time.
var (
	_ driver.Driver = (*Driver)(nil)
)
