package execdriver

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// SuperviseArg is the first argument that turns the driver executable into a
// supervisor: `loractl-driver-exec supervise --status FILE --log FILE --dir DIR -- CMD...`.
const SuperviseArg = "supervise"

// taskStatus is the supervisor's record of one trainer, written atomically to the
// status file. It is what lets any later driver process (a new controller) learn the
// trainer's pid and, once it ended, its exact exit status.
type taskStatus struct {
	TrainerPID int       `json:"trainer_pid,omitempty"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	// StartError is set when the trainer could not be started at all.
	StartError string    `json:"start_error,omitempty"`
	Exited     bool      `json:"exited,omitempty"`
	ExitCode   int       `json:"exit_code"`
	Signal     int       `json:"signal,omitempty"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// Supervise runs one trainer and records its pid and exit status; it returns the
// supervisor's own exit code. The supervisor sits between the driver and the trainer
// so that the exit status survives the driver process: only a process's parent can
// reap it, and the driver's plugin process ends with each controller.
func Supervise(args []string) int {
	fs := flag.NewFlagSet(SuperviseArg, flag.ContinueOnError)
	statusPath := fs.String("status", "", "status file to write")
	logPath := fs.String("log", "", "file for the trainer's stdout and stderr")
	dir := fs.String("dir", "", "the trainer's working directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	command := fs.Args()
	if *statusPath == "" || *logPath == "" || len(command) == 0 {
		fmt.Fprintln(os.Stderr, "supervise: need --status, --log and a command after --")
		return 2
	}
	fail := func(err error) int {
		_ = writeStatus(*statusPath, &taskStatus{StartError: err.Error(), Exited: true, ExitCode: -1, FinishedAt: time.Now().UTC()})
		return 1
	}
	logf, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fail(err)
	}
	defer logf.Close()

	// Catch (not ignore) the signals a controller sends: ignored dispositions would
	// be inherited by the trainer, caught ones are reset at exec. A stray signal to
	// the supervisor is passed on to the trainer's group.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGHUP)

	cmd := exec.Command(command[0], command[1:]...)
	cmd.Dir = *dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so a signal reaches the trainer and whatever it spawned
	// (data loader workers) as a terminal's Ctrl-C would, and not the supervisor.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	st := &taskStatus{TrainerPID: cmd.Process.Pid, StartedAt: time.Now().UTC()}
	if err := writeStatus(*statusPath, st); err != nil {
		_ = syscall.Kill(-st.TrainerPID, syscall.SIGKILL)
		_ = cmd.Wait()
		return fail(err)
	}
	go func() {
		for s := range sigs {
			_ = syscall.Kill(-st.TrainerPID, s.(syscall.Signal))
		}
	}()
	err = cmd.Wait()
	st.Exited, st.FinishedAt = true, time.Now().UTC()
	st.ExitCode = cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		st.Signal = int(ws.Signal())
		st.ExitCode = 128 + st.Signal
	} else if err != nil && !errors.As(err, new(*exec.ExitError)) {
		st.StartError = err.Error()
	}
	if err := writeStatus(*statusPath, st); err != nil {
		fmt.Fprintln(os.Stderr, "supervise:", err)
		return 1
	}
	return 0
}

// writeStatus replaces the status file atomically, so a reader never sees half of it.
func writeStatus(path string, st *taskStatus) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".status-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// readStatus reads a status file; os.ErrNotExist means the supervisor has not
// written it (yet, or ever).
func readStatus(path string) (*taskStatus, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st taskStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &st, nil
}
