package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/loractl/loractl/driver"
)

// handleState is what a stored handle needs to find the process again. StartTicks
// (the process start time from /proc) guards against a recycled pid.
type handleState struct {
	PID        int    `json:"pid"`
	StartTicks string `json:"start_ticks,omitempty"`
}

func decode(h *driver.Handle) (*handleState, error) {
	if err := driver.CheckHandle(h, Name); err != nil {
		return nil, err
	}
	var st handleState
	if err := json.Unmarshal(h.State, &st); err != nil || st.PID <= 0 {
		return nil, fmt.Errorf("invalid local handle state: %s", h.State)
	}
	return &st, nil
}

// alive reports whether the handle's process still runs (and is the same process).
func (st *handleState) alive() bool {
	if err := syscall.Kill(st.PID, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	if st.StartTicks != "" {
		if now := startTicks(st.PID); now != st.StartTicks {
			return false
		}
	}
	// A zombie (exited, not yet reaped) is not running.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", st.PID))
	if err == nil {
		if f := statFields(string(b)); len(f) > 0 && f[0] == "Z" {
			return false
		}
	}
	return true
}

// startTicks returns field 22 of /proc/PID/stat (start time in clock ticks), or "".
func startTicks(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	f := statFields(string(b))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// statFields splits /proc/PID/stat after the command name (which may hold spaces),
// so index 0 is the state (field 3).
func statFields(s string) []string {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// startLocked starts cmd from a goroutine pinned to its OS thread and returns once it
// started. Linux delivers the parent-death signal when the *thread* that forked exits,
// and the Go runtime may retire threads; a locked thread stays until the goroutine
// that locked it returns, which is after the child has been reaped. th.done is closed
// then, with th.result set.
func startLocked(cmd *exec.Cmd, th *taskHandle) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			errc <- err
			return
		}
		th.started = time.Now()
		errc <- nil
		err := cmd.Wait()
		th.finished = time.Now()
		th.result = exitResult(cmd.ProcessState, err)
		close(th.done)
	}()
	return <-errc
}

// exitResult turns a reaped process's status into the contract's ExitResult.
func exitResult(ps *os.ProcessState, waitErr error) *driver.ExitResult {
	if ps == nil {
		return &driver.ExitResult{ExitCode: -1, Reason: fmt.Sprint(waitErr)}
	}
	r := &driver.ExitResult{ExitCode: ps.ExitCode()}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		r.Signal = int(ws.Signal())
		r.ExitCode = 128 + r.Signal
		r.Reason = fmt.Sprintf("killed by signal %d (%s)", r.Signal, ws.Signal()) // "killed by signal 9 (killed)", not "killed by killed"
	}
	return r
}

// taskHandle is one trainer this process started.
type taskHandle struct {
	cmd      *exec.Cmd
	started  time.Time
	finished time.Time
	result   *driver.ExitResult
	done     chan struct{}
}

// taskTable holds the trainers this process started, behind a lock.
type taskTable struct {
	mu    sync.Mutex
	tasks map[int]*taskHandle
}

func (t *taskTable) add(pid int, th *taskHandle) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tasks == nil {
		t.tasks = map[int]*taskHandle{}
	}
	t.tasks[pid] = th
}

func (t *taskTable) get(pid int) *taskHandle {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tasks[pid]
}
