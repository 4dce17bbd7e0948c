package local

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/loractl/loractl/driver"
)

// warmScript is the trainer's half of a warm start (python/warm_start.py), installed
// beside train_lora.py: it imports what the trainer imports, then waits for the launch.
const warmScript = "warm_start.py"

var _ driver.Prewarmer = (*Driver)(nil)

// warmProcess is a trainer interpreter started ahead of its launch.
type warmProcess struct {
	cmd *exec.Cmd
	th  *taskHandle
	env map[string]string // the environment it started with
	// req is its stdin (the launch request), reply its stdout (its one-line answer).
	req, reply *os.File
	once       sync.Once
}

// warmTable holds the warm processes by the command they were started for.
type warmTable struct {
	mu    sync.Mutex
	procs map[string]*warmProcess
}

func commandKey(cmd []string) string { return strings.Join(cmd, "\x00") }

// Prewarm implements driver.Prewarmer for a task that runs train_lora.py with
// warm_start.py beside it (a distributed launch, through torchrun, is not warmed). The
// process starts as the trainer would, in its own process group and ended with
// loractl, with the task's environment as it is before the pre-flight adds to it.
func (d *Driver) Prewarm(task *driver.Task) (func(), error) {
	noop := func() {}
	if len(task.Command) < 2 || filepath.Base(task.Command[1]) != "train_lora.py" {
		return noop, nil
	}
	script := filepath.Join(filepath.Dir(task.Command[1]), warmScript)
	if _, err := os.Stat(script); err != nil {
		return noop, nil
	}
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return noop, err
	}
	replyR, replyW, err := os.Pipe()
	if err != nil {
		reqR.Close()
		reqW.Close()
		return noop, err
	}
	cmd := exec.Command(task.Command[0], script)
	cmd.Dir = filepath.Dir(script) // the run dir may not exist yet; the launch moves there
	cmd.Stdin, cmd.Stdout = reqR, replyW
	cmd.Env = environ(task)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	th := &taskHandle{cmd: cmd, done: make(chan struct{})}
	err = startLocked(cmd, th)
	reqR.Close()
	replyW.Close()
	if err != nil {
		reqW.Close()
		replyR.Close()
		return noop, fmt.Errorf("warm start: %w", err)
	}
	w := &warmProcess{cmd: cmd, th: th, env: envMap(cmd.Env), req: reqW, reply: replyR}
	key := commandKey(task.Command)
	d.warm.mu.Lock()
	if d.warm.procs == nil {
		d.warm.procs = map[string]*warmProcess{}
	}
	if old := d.warm.procs[key]; old != nil {
		old.discard()
	}
	d.warm.procs[key] = w
	d.warm.mu.Unlock()
	return func() {
		if d.takeWarm(task.Command) == w {
			w.discard()
		}
	}, nil
}

// takeWarm removes and returns the warm process started for command, if any.
func (d *Driver) takeWarm(command []string) *warmProcess {
	d.warm.mu.Lock()
	defer d.warm.mu.Unlock()
	key := commandKey(command)
	w := d.warm.procs[key]
	delete(d.warm.procs, key)
	return w
}

// discard ends a warm process that was not taken over: it has read no data and
// touched no GPU, so it is killed outright (it may still be importing).
func (w *warmProcess) discard() {
	w.once.Do(func() {
		_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
		w.req.Close()
		w.reply.Close()
	})
}

// errDeclined is a warm process that could not become the task: start it afresh.
var errDeclined = errors.New("warm start declined")

// adopt hands task to the warm process and, once it answers that it has become the
// task's trainer, returns the task's handle. It waits for the process's imports to
// finish (the time a fresh start would spend on them anyway).
func (d *Driver) adopt(ctx context.Context, w *warmProcess, task *driver.Task) (*driver.Handle, error) {
	defer w.once.Do(func() { w.req.Close(); w.reply.Close() })
	env := environ(task)
	changed, early := envChanges(w.env, envMap(env))
	if len(early) > 0 {
		w.discard()
		return nil, fmt.Errorf("%w: the environment differs in %s, which the trainer reads as it imports", errDeclined, strings.Join(early, ", "))
	}
	req, err := json.Marshal(map[string]any{"argv": task.Command, "env": env, "cwd": task.RunDir, "log": task.LogPath,
		"cuda_changed": slices.Contains(changed, cudaVisible)})
	if err != nil {
		w.discard()
		return nil, err
	}
	answer := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(w.reply).ReadString('\n')
		answer <- strings.TrimSpace(line)
	}()
	if _, err := w.req.Write(append(req, '\n')); err != nil {
		w.discard()
		return nil, fmt.Errorf("%w: %v", errDeclined, err)
	}
	var got string
	select {
	case got = <-answer:
	case <-ctx.Done():
		w.discard()
		return nil, ctx.Err()
	}
	if got != "ok" {
		// It exits by itself after declining; one that died answers "" here.
		w.discard()
		if got == "" {
			got = "the warm process ended"
		}
		return nil, fmt.Errorf("%w: %s", errDeclined, got)
	}
	pid := w.cmd.Process.Pid
	w.th.started = time.Now()
	st := handleState{PID: pid, StartTicks: startTicks(pid)}
	raw, _ := json.Marshal(st)
	d.tasks.add(pid, w.th)
	return &driver.Handle{Driver: Name, Version: driver.HandleVersion, ID: fmt.Sprint(pid), State: raw}, nil
}

// cudaVisible is read by CUDA when it starts, which the trainer's imports do not do.
const cudaVisible = "CUDA_VISIBLE_DEVICES"

// lateEnv says whether a variable may change between the warm start and the launch:
// what the pre-flight decides (the GPU, the micro-batch), read by the trainer after its
// imports. Any other change (HF_HOME, say, read as transformers imports) needs a fresh
// process.
func lateEnv(key string) bool {
	return key == cudaVisible || strings.HasPrefix(key, "LORACTL_")
}

// envChanges lists the variables that differ between two environments, and those of
// them a warm process cannot take on.
func envChanges(before, after map[string]string) (changed, early []string) {
	keys := map[string]bool{}
	for k := range before {
		keys[k] = true
	}
	for k := range after {
		keys[k] = true
	}
	for k := range keys {
		b, inB := before[k]
		a, inA := after[k]
		if inA == inB && a == b {
			continue
		}
		changed = append(changed, k)
		if !lateEnv(k) {
			early = append(early, k)
		}
	}
	slices.Sort(changed)
	slices.Sort(early)
	return changed, early
}

// envMap reads a KEY=value list as exec does: a later KEY wins.
func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}
