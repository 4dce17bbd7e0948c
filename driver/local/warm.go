package local

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	// req is its stdin (helper requests, then the launch request), reply its stdout (a
	// one-line answer to each), read through replies.
	req, reply *os.File
	replies    *bufio.Reader
	once       sync.Once
	gone       chan struct{} // closed with the pipes
	// mu keeps one request at a time in flight.
	mu sync.Mutex
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
func (d *Driver) Prewarm(task *driver.Task) (driver.Warm, error) {
	if len(task.Command) < 2 || filepath.Base(task.Command[1]) != "train_lora.py" {
		return nil, nil
	}
	script := filepath.Join(filepath.Dir(task.Command[1]), warmScript)
	if _, err := os.Stat(script); err != nil {
		return nil, nil
	}
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	replyR, replyW, err := os.Pipe()
	if err != nil {
		reqR.Close()
		reqW.Close()
		return nil, err
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
		return nil, fmt.Errorf("warm start: %w", err)
	}
	w := &warmProcess{cmd: cmd, th: th, env: envMap(cmd.Env), req: reqW, reply: replyR, replies: bufio.NewReader(replyR), gone: make(chan struct{})}
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
	return &warmRef{d: d, w: w, command: task.Command}, nil
}

// warmRef is what Prewarm hands out: the process, until a Start takes it over.
type warmRef struct {
	d       *Driver
	w       *warmProcess
	command []string
}

// Drop implements driver.Warm.
func (r *warmRef) Drop() {
	r.d.warm.remove(r.command, r.w)
	r.w.discard()
}

// RunPython implements driver.Warm (python/warm_start.py, "helper"): the script's
// output comes back through two files in a temp dir, so the reply pipe carries only
// the exit status.
func (r *warmRef) RunPython(ctx context.Context, script string, args []string, env map[string]string, stdout io.Writer) (int, []byte, error) {
	w := r.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed() {
		return 0, nil, errWarmGone
	}
	dir, err := os.MkdirTemp("", "loractl-warm-helper-")
	if err != nil {
		return 0, nil, err
	}
	defer os.RemoveAll(dir)
	outPath, errPath := filepath.Join(dir, "stdout"), filepath.Join(dir, "stderr")
	if args == nil {
		args = []string{}
	}
	if env == nil {
		env = map[string]string{}
	}
	req, err := json.Marshal(map[string]any{"helper": map[string]any{
		"script": script, "argv": args, "env": env, "stdout": outPath, "stderr": errPath}})
	if err != nil {
		return 0, nil, err
	}
	line, err := w.ask(ctx, req)
	if err != nil {
		return 0, nil, err
	}
	var answer struct {
		Exit  *int   `json:"helper_exit"`
		Error string `json:"helper_error"`
	}
	if json.Unmarshal([]byte(line), &answer) != nil || answer.Exit == nil {
		// It died, or could not run the helper: of no further use before the launch.
		w.discard()
		if answer.Error == "" {
			answer.Error = fmt.Sprintf("answered %q", line)
		}
		return 0, nil, fmt.Errorf("%w: %s", errWarmGone, answer.Error)
	}
	f, err := os.Open(outPath)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	if _, err := io.Copy(stdout, f); err != nil {
		return 0, nil, err
	}
	return *answer.Exit, tail(errPath, 4096), nil
}

// errWarmGone is a warm process that can no longer run anything before its launch.
var errWarmGone = errors.New("the warm process is gone")

// closed says whether the process was dropped or taken over.
func (w *warmProcess) closed() bool {
	select {
	case <-w.gone:
		return true
	default:
		return false
	}
}

// close closes the pipes to the process, once.
func (w *warmProcess) close() {
	w.once.Do(func() {
		close(w.gone)
		w.req.Close()
		w.reply.Close()
	})
}

// ask writes one request line and returns the one-line answer ("" when the process
// ended first). Cancelling ctx ends the process.
func (w *warmProcess) ask(ctx context.Context, req []byte) (string, error) {
	type answer struct {
		line string
		err  error
	}
	got := make(chan answer, 1)
	// Written from here too, so that cancelling is seen while a request waits for room
	// in the pipe; discard closes both ends and ends this goroutine.
	go func() {
		if _, err := w.req.Write(append(req, '\n')); err != nil {
			got <- answer{err: err}
			return
		}
		line, _ := w.replies.ReadString('\n')
		got <- answer{line: strings.TrimSpace(line)}
	}()
	select {
	case a := <-got:
		if a.err != nil {
			w.discard()
			return "", fmt.Errorf("%w: %v", errWarmGone, a.err)
		}
		return a.line, nil
	case <-ctx.Done():
		w.discard()
		return "", ctx.Err()
	}
}

// tail reads the last n bytes of the file at path (nil if unreadable).
func tail(path string, n int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return b
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

// remove forgets w as the warm process for command, and not one a later Prewarm put in
// its place.
func (t *warmTable) remove(command []string, w *warmProcess) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if key := commandKey(command); t.procs[key] == w {
		delete(t.procs, key)
	}
}

// discard ends a warm process that was not taken over: it has read no data and
// touched no GPU, so it is killed outright (it may still be importing).
func (w *warmProcess) discard() {
	if !w.closed() && !w.reaped() {
		_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
	}
	w.close()
}

// reaped says whether the process has exited and been waited for: its pid, and so its
// group's id, may then belong to another process.
func (w *warmProcess) reaped() bool {
	select {
	case <-w.th.done:
		return true
	default:
		return false
	}
}

// errDeclined is a warm process that could not become the task: start it afresh.
var errDeclined = errors.New("warm start declined")

// adopt hands task to the warm process and, once it answers that it has become the
// task's trainer, returns the task's handle. It waits for the process's imports to
// finish (the time a fresh start would spend on them anyway).
func (d *Driver) adopt(ctx context.Context, w *warmProcess, task *driver.Task) (*driver.Handle, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.close()
	if w.closed() {
		return nil, fmt.Errorf("%w: %v", errDeclined, errWarmGone)
	}
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
	got, err := w.ask(ctx, req)
	switch {
	case errors.Is(err, errWarmGone):
		return nil, fmt.Errorf("%w: %v", errDeclined, err)
	case err != nil:
		return nil, err
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
