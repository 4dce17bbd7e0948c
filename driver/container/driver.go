// Package container runs the trainer in a Docker or podman container: one driver type
// serves both engines (their CLIs agree on everything loractl uses), selected by name.
//
// The container sees only the task's GPUs, the run dir (read-write, at its host path)
// and the task's read-only paths (data, local model, HF cache, at their host paths), as
// the invoking user, with no capabilities and no network by default. The trainer writes
// events.jsonl, train.log and checkpoints into the bind-mounted run dir, so the
// controller follows a container run exactly like a local one. Every engine command is
// executed with an argv, never through a shell; the only shell is the fixed launch
// script inside the container, which receives every value as a positional parameter.
package container

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/loractl/loractl/driver"
)

// Engine is a container engine whose CLI the driver drives.
type Engine string

// The engines the driver supports; each is also the driver's config name.
const (
	Docker Engine = "docker"
	Podman Engine = "podman"
)

// Driver runs trainers in containers of one engine. It keeps no state in memory: the
// handle holds everything needed to reach the container, so any controller process
// can wait for, signal, stop or inspect it.
type Driver struct {
	engine Engine
	// binary is the default engine executable; a task's Options.Binary overrides it.
	binary string
	who    invoker
}

// New returns the driver for engine ("docker" or "podman").
func New(engine Engine) (*Driver, error) {
	if engine != Docker && engine != Podman {
		return nil, fmt.Errorf("unknown container engine %q (docker or podman)", engine)
	}
	return &Driver{engine: engine, binary: string(engine), who: invoker{os.Getuid(), os.Getgid()}}, nil
}

// NewDocker returns the docker driver.
func NewDocker() *Driver { d, _ := New(Docker); return d }

// NewPodman returns the podman driver.
func NewPodman() *Driver { d, _ := New(Podman); return d }

// Name implements driver.Driver: the engine's name.
func (d *Driver) Name() string { return string(d.engine) }

// ValidateOptions implements driver.OptionsValidator: the options as this engine reads them.
func (d *Driver) ValidateOptions(raw json.RawMessage) error {
	_, err := DecodeOptionsFor(d.engine, raw)
	return err
}

// Capabilities: a container on this machine (its GPUs are passed in), from an image
// whose digest the manifest records; torchrun inside for several processes.
func (d *Driver) Capabilities() driver.Capabilities {
	return driver.Capabilities{Local: true, Image: true, MultiProcess: true}
}

// Render implements driver.Renderer: the exact engine command Start runs, shell-quoted.
// Secrets appear by name only, as they do in the real argv.
func (d *Driver) Render(task *driver.Task) ([]byte, error) {
	if task == nil {
		return nil, errors.New("nil task")
	}
	o, err := DecodeOptions(task.Options)
	if err != nil {
		return nil, err
	}
	args, err := runArgs(d.engine, o, task, d.who)
	if err != nil {
		return nil, err
	}
	return renderArgv(append([]string{d.binaryFor(o)}, args...)), nil
}

// binaryFor is the engine executable a task uses.
func (d *Driver) binaryFor(o *Options) string {
	if o.Binary != "" {
		return o.Binary
	}
	return d.binary
}

// Start implements driver.Driver: it removes a finished container left by an earlier
// attempt of the same run, then runs the trainer detached.
func (d *Driver) Start(ctx context.Context, task *driver.Task) (*driver.Handle, error) {
	if task == nil {
		return nil, errors.New("failed to start task: nil task")
	}
	o, err := DecodeOptions(task.Options)
	if err != nil {
		return nil, fmt.Errorf("failed to start task: %s options: %w", d.engine, err)
	}
	args, err := runArgs(d.engine, o, task, d.who)
	if err != nil {
		return nil, fmt.Errorf("failed to start task: %w", err)
	}
	// The cache is the controller's to create (shared by runs, it may not exist yet); as
	// this user, so the trainer (run as this user too) can write it.
	if task.CacheDir != "" {
		if err := os.MkdirAll(task.CacheDir, 0o755); err != nil {
			return nil, fmt.Errorf("failed to start task: cache dir: %w", err)
		}
	}
	// The engines would create a missing bind source as a root-owned directory (docker -v)
	// or fail with a terse message (--mount): say which path is missing instead.
	for _, p := range append(append([]string{task.RunDir}, task.ReadOnly...), o.ReadOnly...) {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("failed to start task: mount source: %w", err)
		}
	}
	bin, err := exec.LookPath(d.binaryFor(o))
	if err != nil {
		return nil, fmt.Errorf("failed to start task: %s engine: %w (set the %s option \"binary\")", d.engine, err, d.engine)
	}
	st := &handleState{
		Engine:      d.engine,
		Binary:      bin,
		Name:        ContainerName(task.RunID),
		Image:       o.Image,
		Endpoint:    endpointEnv(d.engine),
		StopGraceMS: time.Duration(o.StopGrace).Milliseconds(),
	}
	if err := st.clearStale(ctx); err != nil {
		return nil, fmt.Errorf("failed to start task: %w", err)
	}
	out, err := st.run(ctx, args...)
	if err != nil {
		// `run` fails after creating the container when the runtime cannot start it (a
		// missing GPU, a bad mount): remove it so a retry is not blocked by the name.
		_, _ = st.run(context.WithoutCancel(ctx), "rm", "--force", st.Name)
		return nil, fmt.Errorf("failed to start task: %w", err)
	}
	id := lastLine(out)
	if id == "" {
		return nil, fmt.Errorf("failed to start task: %s run printed no container id", d.engine)
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	return &driver.Handle{Driver: d.Name(), Version: driver.HandleVersion, ID: id, State: raw}, nil
}

// Wait implements driver.Driver: the engine's `wait` blocks until the container exits,
// then inspect supplies the exit code and the OOM-killed flag.
func (d *Driver) Wait(ctx context.Context, h *driver.Handle) (*driver.ExitResult, error) {
	st, err := d.decode(h)
	if err != nil {
		return nil, err
	}
	if _, err := st.run(ctx, "wait", h.ID); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	s, err := d.Inspect(ctx, h)
	if err != nil {
		return nil, err
	}
	if s.Exit == nil {
		return nil, fmt.Errorf("container %s: wait returned but the container is %s", short(h.ID), s.State)
	}
	return s.Exit, nil
}

// signals are the names Signal accepts; the init forwards them to the trainer.
var signals = map[string]string{
	"TERM": "SIGTERM", "INT": "SIGINT", "USR1": "SIGUSR1", "USR2": "SIGUSR2",
	"HUP": "SIGHUP", "QUIT": "SIGQUIT", "KILL": "SIGKILL",
}

// Signal implements driver.Driver. A container that is not running reports
// driver.ErrTaskNotFound, as a gone local process does.
func (d *Driver) Signal(ctx context.Context, h *driver.Handle, signal string) error {
	st, err := d.decode(h)
	if err != nil {
		return err
	}
	sig, ok := signals[strings.TrimPrefix(strings.ToUpper(signal), "SIG")]
	if !ok {
		return fmt.Errorf("unsupported signal %q", signal)
	}
	if _, err := st.run(ctx, "kill", "--signal", sig, h.ID); err != nil {
		if isNotRunning(err) {
			return fmt.Errorf("container %s: %w", short(h.ID), driver.ErrTaskNotFound)
		}
		return err
	}
	return nil
}

// Stop implements driver.Driver: the engine's `stop` sends SIGTERM (the trainer saves a
// checkpoint), waits up to grace, then kills. grace <= 0 uses the stop_grace option
// recorded at Start. Stopping a finished or removed container is not an error.
func (d *Driver) Stop(ctx context.Context, h *driver.Handle, grace time.Duration) error {
	st, err := d.decode(h)
	if err != nil {
		return err
	}
	if grace <= 0 {
		grace = time.Duration(st.StopGraceMS) * time.Millisecond
	}
	if _, err := st.run(ctx, "stop", "-t", seconds(grace), h.ID); err != nil {
		if errors.Is(err, driver.ErrTaskNotFound) {
			return nil
		}
		return err
	}
	return nil
}

// Inspect implements driver.Driver.
func (d *Driver) Inspect(ctx context.Context, h *driver.Handle) (*driver.Status, error) {
	st, err := d.decode(h)
	if err != nil {
		return nil, err
	}
	out, err := st.run(ctx, "inspect", "--type", "container", "--format", "{{json .State}}", h.ID)
	if err != nil {
		return nil, err
	}
	var cs containerState
	if err := json.Unmarshal(bytes.TrimSpace(out), &cs); err != nil {
		return nil, fmt.Errorf("container %s: reading %s inspect output: %w", short(h.ID), d.engine, err)
	}
	return cs.status(), nil
}

// ImageDigest returns the content-addressed id ("sha256:...") of a local image, for the
// run manifest. It identifies the exact image bytes even for images built locally and
// never pushed (which have no registry digest).
func (d *Driver) ImageDigest(ctx context.Context, image string) (string, error) {
	return d.imageID(ctx, d.binary, image)
}

// TaskImage returns the image a task would run (its image option, or DefaultImage) and
// that image's ImageDigest, using the task's engine binary: what the run manifest
// records about the container.
func (d *Driver) TaskImage(ctx context.Context, task *driver.Task) (image, digest string, err error) {
	o, err := DecodeOptions(task.Options)
	if err != nil {
		return "", "", err
	}
	digest, err = d.imageID(ctx, d.binaryFor(o), o.Image)
	return o.Image, digest, err
}

func (d *Driver) imageID(ctx context.Context, binary, image string) (string, error) {
	if image == "" {
		image = DefaultImage
	}
	if !imageRe.MatchString(image) {
		return "", fmt.Errorf("%q is not an image reference", image)
	}
	st := &handleState{Engine: d.engine, Binary: binary}
	out, err := st.run(ctx, "image", "inspect", "--format", "{{.Id}}", image)
	if err != nil {
		return "", err
	}
	id := lastLine(out)
	if !strings.HasPrefix(id, "sha256:") {
		id = "sha256:" + id // podman prints the bare hex
	}
	return id, nil
}

// decode checks that h is this driver's and reads its state.
func (d *Driver) decode(h *driver.Handle) (*handleState, error) {
	if err := driver.CheckHandle(h, d.Name()); err != nil {
		return nil, err
	}
	var st handleState
	if err := json.Unmarshal(h.State, &st); err != nil || st.Binary == "" || st.Engine != d.engine {
		return nil, fmt.Errorf("invalid %s handle state: %s", d.engine, h.State)
	}
	if h.ID == "" || strings.HasPrefix(h.ID, "-") {
		return nil, fmt.Errorf("invalid %s handle: container id %q", d.engine, h.ID)
	}
	return &st, nil
}

// run executes one engine command (argv, no shell) in the environment the container
// was started from, and returns its stdout. A failure carries the engine's stderr, and
// wraps driver.ErrTaskNotFound when the engine does not know the container.
func (st *handleState) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, st.Binary, args...)
	cmd.Env = os.Environ()
	for k, v := range st.Endpoint {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = msg[len(msg)-2000:]
		}
		e := &engineError{engine: st.Engine, op: args[0], err: err, stderr: msg}
		if isNoSuchContainer(msg) {
			return nil, fmt.Errorf("%w: %w", e, driver.ErrTaskNotFound)
		}
		return nil, e
	}
	return stdout.Bytes(), nil
}

// engineError is a failed engine command with what it printed on stderr.
type engineError struct {
	engine Engine
	op     string
	err    error
	stderr string
}

func (e *engineError) Error() string {
	if e.stderr == "" {
		return fmt.Sprintf("%s %s: %v", e.engine, e.op, e.err)
	}
	return fmt.Sprintf("%s %s: %v: %s", e.engine, e.op, e.err, e.stderr)
}

func (e *engineError) Unwrap() error { return e.err }

// isNoSuchContainer recognises both engines' "unknown container" messages.
func isNoSuchContainer(stderr string) bool {
	s := strings.ToLower(stderr)
	return strings.Contains(s, "no such container") || strings.Contains(s, "no such object") ||
		strings.Contains(s, "no container with name or id")
}

// isNotRunning recognises "kill" refused because the container already exited.
func isNotRunning(err error) bool {
	if errors.Is(err, driver.ErrTaskNotFound) {
		return true
	}
	var e *engineError
	if !errors.As(err, &e) {
		return false
	}
	s := strings.ToLower(e.stderr)
	return strings.Contains(s, "is not running") || strings.Contains(s, "not running") ||
		strings.Contains(s, "can only kill running containers")
}

// clearStale removes a container left with this run's name by an earlier attempt (a
// resumed run reuses its id), and refuses if that container still runs: two trainers
// must never write one run dir.
func (st *handleState) clearStale(ctx context.Context) error {
	out, err := st.run(ctx, "inspect", "--type", "container", "--format", "{{json .State}}", st.Name)
	if errors.Is(err, driver.ErrTaskNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var cs containerState
	if err := json.Unmarshal(bytes.TrimSpace(out), &cs); err != nil {
		return fmt.Errorf("container %s: reading inspect output: %w", st.Name, err)
	}
	if s := cs.status(); s.State != driver.StateExited {
		return fmt.Errorf("container %s already exists and is %s: a trainer for this run is live (loractl stop it first)", st.Name, s.State)
	}
	if _, err := st.run(ctx, "rm", st.Name); err != nil && !errors.Is(err, driver.ErrTaskNotFound) {
		return err
	}
	return nil
}

// lastLine is the last non-empty line of an engine's stdout (warnings may precede it).
func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// short abbreviates a container id for messages, as the engines do.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// exitFromCode maps a container's exit code to the contract's ExitResult. With the init
// as PID 1, a trainer killed by signal N exits the container with 128+N, the same
// convention the local driver reports.
func exitFromCode(code int, oom bool, errMsg string) *driver.ExitResult {
	r := &driver.ExitResult{ExitCode: code, OOMKilled: oom}
	if code > 128 && code < 128+65 {
		r.Signal = code - 128
		r.Reason = "killed by signal " + strconv.Itoa(r.Signal)
	}
	switch {
	case oom:
		r.Reason = "out of memory: the kernel killed the trainer (raise the memory option or lower batch_size)"
	case errMsg != "":
		r.Reason = errMsg
	}
	return r
}

// The driver contracts this driver meets, checked at compile time.
var (
	_ driver.Driver           = (*Driver)(nil)
	_ driver.ImageReporter    = (*Driver)(nil)
	_ driver.OptionsValidator = (*Driver)(nil)
	_ driver.Renderer         = (*Driver)(nil)
)
