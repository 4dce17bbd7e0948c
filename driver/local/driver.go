// Package local runs the trainer as a child process on this machine, in its own
// process group so signals reach the trainer (and anything it spawned) as one, and
// with a parent-death signal so a trainer never runs on orphaned when the controller
// dies.
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"syscall"
	"time"

	"github.com/loractl/loractl/driver"
)

// Name is the local driver's config name.
const Name = "local"

// Driver is the local driver. The zero value is ready to use.
type Driver struct {
	tasks taskTable
	warm  warmTable
}

// New returns a local driver.
func New() *Driver { return &Driver{} }

// Name implements driver.Driver.
func (d *Driver) Name() string { return Name }

// ValidateOptions implements driver.OptionsValidator.
func (d *Driver) ValidateOptions(raw json.RawMessage) error { _, err := DecodeOptions(raw); return err }

// Capabilities: a child process on this machine, torchrun for several processes.
func (d *Driver) Capabilities() driver.Capabilities {
	return driver.Capabilities{Local: true, MultiProcess: true}
}

// Options are the local driver's options; it has none yet, and refuses unknown ones
// so a typo does not pass silently.
type Options struct{}

// DecodeOptions validates the local driver's config section.
func DecodeOptions(raw json.RawMessage) (*Options, error) {
	var o Options
	if len(raw) == 0 || string(raw) == "null" {
		return &o, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		errs = append(errs, &driver.OptionError{Key: k, Message: "unknown option (the local driver has none)"})
	}
	return &o, errors.Join(errs...)
}

var (
	_ driver.Driver           = (*Driver)(nil)
	_ driver.OptionsValidator = (*Driver)(nil)
	_ driver.Detacher         = (*Driver)(nil)
)

// Start implements driver.Driver. A process warmed for the same command (Prewarm)
// becomes the trainer when it can; one that declines is replaced by a fresh start.
func (d *Driver) Start(ctx context.Context, task *driver.Task) (*driver.Handle, error) {
	if w := d.takeWarm(task.Command); w != nil {
		h, err := d.adopt(ctx, w, task)
		if err == nil || !errors.Is(err, errDeclined) {
			return h, err
		}
	}
	return d.start(task, false)
}

// StartDetached implements driver.Detacher: the trainer runs in a session of its own,
// without the parent-death signal, so it trains on after loractl exits (and a Ctrl-C
// in the terminal does not reach it). Its handle (pid and start time) lets `logs -f`,
// `stop` and `runs` find it again; its outcome is read from its events.
//
// A warm process cannot be detached (a process group leader cannot start a session):
// it is dropped and the trainer starts afresh.
func (d *Driver) StartDetached(ctx context.Context, task *driver.Task) (*driver.Handle, error) {
	if w := d.takeWarm(task.Command); w != nil {
		w.discard()
	}
	return d.start(task, true)
}

func (d *Driver) start(task *driver.Task, detached bool) (*driver.Handle, error) {
	if len(task.Command) == 0 {
		return nil, errors.New("failed to start task: empty command")
	}
	// O_NOFOLLOW: a train.log planted as a link must not redirect the trainer's output
	// (appended on every resume) into another file.
	logf, err := os.OpenFile(task.LogPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("failed to start task: %s is a symbolic link: refused (run files are never followed through links)", task.LogPath)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to start task: %w", err)
	}
	defer logf.Close()

	cmd := exec.Command(task.Command[0], task.Command[1:]...)
	cmd.Dir = task.RunDir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = environ(task)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// SIGTERM, not SIGKILL: a trainer whose controller died still saves a
		// checkpoint before it exits.
		Pdeathsig: syscall.SIGTERM,
	}
	if detached {
		// Its own session (and process group, whose id is its pid, as Signal expects).
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	th := &taskHandle{cmd: cmd, done: make(chan struct{})}
	if err := startLocked(cmd, th); err != nil {
		return nil, fmt.Errorf("failed to start task: %w", err)
	}
	pid := cmd.Process.Pid
	st := handleState{PID: pid, StartTicks: startTicks(pid)}
	raw, _ := json.Marshal(st)
	h := &driver.Handle{Driver: Name, Version: driver.HandleVersion, ID: fmt.Sprint(pid), State: raw}
	d.tasks.add(pid, th)
	return h, nil
}

// environ is the controller's environment plus the task's values. The local trainer
// runs as the user, with the user's environment (CUDA, HF_HOME, proxies); PassEnv
// names are already part of it.
func environ(task *driver.Task) []string {
	env := os.Environ()
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

// Wait implements driver.Driver. For a trainer this process started it reaps the
// child; for one started by another controller it polls until the process is gone.
func (d *Driver) Wait(ctx context.Context, h *driver.Handle) (*driver.ExitResult, error) {
	st, err := decode(h)
	if err != nil {
		return nil, err
	}
	if th := d.tasks.get(st.PID); th != nil {
		select {
		case <-th.done:
			return th.result, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !st.alive() {
		return nil, fmt.Errorf("pid %d: %w", st.PID, driver.ErrTaskNotFound)
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for st.alive() {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	// Not our child: its exit status went to its parent. The caller reads the
	// outcome from the run's events.
	return &driver.ExitResult{ExitCode: -1, Reason: "exited (status known only to the controller that started it)"}, nil
}

// Signal implements driver.Driver. The signal goes to the trainer's whole process
// group, as a terminal's Ctrl-C would.
func (d *Driver) Signal(ctx context.Context, h *driver.Handle, signal string) error {
	st, err := decode(h)
	if err != nil {
		return err
	}
	sig, err := parseSignal(signal)
	if err != nil {
		return err
	}
	if !st.alive() {
		return fmt.Errorf("pid %d: %w", st.PID, driver.ErrTaskNotFound)
	}
	if err := syscall.Kill(-st.PID, sig); err != nil {
		return fmt.Errorf("signal %s to pid %d: %w", signal, st.PID, err)
	}
	return nil
}

// Stop implements driver.Driver: SIGTERM (the trainer checkpoints), then SIGKILL after
// grace.
func (d *Driver) Stop(ctx context.Context, h *driver.Handle, grace time.Duration) error {
	if err := d.Signal(ctx, h, "TERM"); err != nil {
		if errors.Is(err, driver.ErrTaskNotFound) {
			return nil
		}
		return err
	}
	st, _ := decode(h)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if th := d.tasks.get(st.PID); th != nil {
			select {
			case <-th.done:
				return nil
			case <-time.After(100 * time.Millisecond):
			}
		} else if !st.alive() {
			return nil
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if st.alive() {
		_ = syscall.Kill(-st.PID, syscall.SIGKILL)
	}
	return nil
}

// Inspect implements driver.Driver.
func (d *Driver) Inspect(ctx context.Context, h *driver.Handle) (*driver.Status, error) {
	st, err := decode(h)
	if err != nil {
		return nil, err
	}
	if th := d.tasks.get(st.PID); th != nil {
		select {
		case <-th.done:
			return &driver.Status{State: driver.StateExited, StartedAt: th.started, FinishedAt: th.finished, Exit: th.result}, nil
		default:
			return &driver.Status{State: driver.StateRunning, StartedAt: th.started}, nil
		}
	}
	if st.alive() {
		return &driver.Status{State: driver.StateRunning}, nil
	}
	return &driver.Status{State: driver.StateExited}, nil
}

func parseSignal(name string) (syscall.Signal, error) {
	switch name {
	case "TERM", "SIGTERM":
		return syscall.SIGTERM, nil
	case "INT", "SIGINT":
		return syscall.SIGINT, nil
	case "USR1", "SIGUSR1":
		return syscall.SIGUSR1, nil
	case "KILL", "SIGKILL":
		return syscall.SIGKILL, nil
	case "HUP", "SIGHUP":
		return syscall.SIGHUP, nil
	}
	return 0, fmt.Errorf("unsupported signal %q", name)
}
