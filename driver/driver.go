// Package driver defines the launch contract between the loractl controller and the
// places a trainer can run: a local process, a container, a Slurm job, or an external
// go-plugin executable.
//
// The contract is deliberately small and file-based. A driver starts the trainer with
// a Task and hands back an opaque Handle; the controller stores the handle in the run
// manifest so that a later controller process can reattach to the same trainer (a
// Slurm job that outlives the login session, a detached container). Progress never
// flows through the driver: the trainer writes events.jsonl, train.log and checkpoints
// into the run directory, which is local, bind-mounted into a container, or on the
// cluster's shared filesystem. That keeps every driver the same few methods.
package driver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"
)

// HandleVersion is bumped whenever the meaning of Handle.State changes, so a newer
// controller can refuse (rather than misread) a handle written by an older one.
const HandleVersion = 1

// The trainer's exit codes (docs/trainer-contract.md), defined once for Go here;
// python/train_lora_support.py defines the same for the trainer, and
// run/contract_test.go checks that the two agree. The controller maps them to its own
// exit codes at the CLI edge (75 becomes 130).
const (
	TrainerExitOK          = 0
	TrainerExitFailed      = 1
	TrainerExitInvalid     = 2
	TrainerExitInterrupted = 75 // a checkpoint was saved on a signal; resume continues
)

// Task is everything a driver needs to launch one trainer. Nothing in it is specific to
// a driver: each driver's own settings arrive as Options, the raw JSON of its section of
// the run config.
type Task struct {
	// RunID names the run; drivers use it for container and job names.
	RunID string `json:"run_id"`
	// RunDir is the absolute run directory. The trainer reads its config from it and
	// writes events, logs and checkpoints into it, and nowhere else.
	RunDir string `json:"run_dir"`
	// Command is the trainer's argv. Command[0] is the Python interpreter.
	Command []string `json:"command"`
	// Env holds environment values the trainer needs (not secrets).
	Env map[string]string `json:"env,omitempty"`
	// PassEnv names variables copied from the controller's environment at launch
	// (HF_TOKEN and the like). Drivers pass them by name and never write their values
	// into a script, a manifest or a log.
	PassEnv []string `json:"pass_env,omitempty"`
	// ReadOnly lists host paths the trainer reads (data files, a local model dir, the
	// HF cache). Container drivers mount them read-only at the same path.
	ReadOnly []string `json:"read_only,omitempty"`
	// GPUs are the host device indices the trainer may use; empty means CPU only.
	GPUs []int `json:"gpus,omitempty"`
	// LogPath is where the trainer's stdout and stderr go (RunDir/train.log).
	LogPath string `json:"log_path"`
	// Options is the driver's own config section, as JSON.
	Options json.RawMessage `json:"options,omitempty"`
	// CacheDir is a directory shared by runs, where the trainer keeps what does not
	// depend on a run's own settings (the base model's evaluation). Container drivers
	// mount it read-write; empty: no cache.
	CacheDir string `json:"cache_dir,omitempty"`
	// Distributed is set for a run of several processes (docs/distributed.md). Local
	// and container drivers get Command already wrapped in torchrun and need not read
	// it; a driver that spans nodes (Slurm) wraps the plain trainer Command itself.
	Distributed *Distributed `json:"distributed,omitempty"`
}

// Distributed is a run's process layout: nodes × processes per node, torchrun's
// rendezvous port (multi-node) and the strategy (ddp or fsdp).
type Distributed struct {
	Nodes int `json:"nodes"`
	// NprocPerNode is 0 for auto: one process per GPU the node's allocation has.
	NprocPerNode int    `json:"nproc_per_node"`
	Port         int    `json:"port"`
	Strategy     string `json:"strategy"`
}

// Handle identifies one launched trainer. It is opaque to the controller: it stores
// the handle in the manifest and gives it back to the same driver to wait, signal,
// inspect or reattach.
type Handle struct {
	Driver  string `json:"driver"`
	Version int    `json:"version"`
	// ID is the driver's own name for the task: a pid, a container id, a job id.
	ID string `json:"id"`
	// State is driver-private data needed to reattach.
	State json.RawMessage `json:"state,omitempty"`
}

// TaskState is the coarse lifecycle state of a launched trainer.
type TaskState string

// Task states shared by every driver; drivers map their own (Slurm's PENDING,
// Docker's "created") onto these.
const (
	StatePending TaskState = "pending"
	StateRunning TaskState = "running"
	StateExited  TaskState = "exited"
	StateUnknown TaskState = "unknown"
)

// ExitResult is how a trainer ended.
type ExitResult struct {
	ExitCode int `json:"exit_code"`
	// Signal is the signal that ended the trainer, 0 when it exited by itself.
	Signal int `json:"signal,omitempty"`
	// OOMKilled is set when the kernel or the scheduler killed it for memory.
	OOMKilled bool `json:"oom_killed,omitempty"`
	// Reason is the driver's own word for the end (Slurm's TIMEOUT, PREEMPTED, ...).
	Reason string `json:"reason,omitempty"`
}

// Successful reports whether the trainer finished its work.
func (r *ExitResult) Successful() bool { return r.ExitCode == 0 && r.Signal == 0 && !r.OOMKilled }

// Status is a point-in-time view of a launched trainer.
type Status struct {
	State TaskState `json:"state"`
	// Reason explains the state where the driver knows more, e.g. Slurm's pending
	// reason ("Resources", "Priority") or "requeued".
	Reason     string      `json:"reason,omitempty"`
	StartedAt  time.Time   `json:"started_at,omitzero"`
	FinishedAt time.Time   `json:"finished_at,omitzero"`
	Exit       *ExitResult `json:"exit,omitempty"`
}

// Driver launches and controls trainers. Every method but Start takes the Handle that
// Start returned, possibly decoded from a manifest by another controller process.
type Driver interface {
	// Name is the driver's config name ("local", "docker", "slurm", ...).
	Name() string
	// Start launches the task and returns as soon as it is launched (or queued).
	Start(ctx context.Context, task *Task) (*Handle, error)
	// Wait blocks until the task ends or ctx is done.
	Wait(ctx context.Context, h *Handle) (*ExitResult, error)
	// Signal delivers a signal by name ("TERM", "INT", "USR1", "KILL") to the trainer.
	Signal(ctx context.Context, h *Handle, signal string) error
	// Stop asks the trainer to stop (SIGTERM: it checkpoints), waits up to grace, then
	// kills it.
	Stop(ctx context.Context, h *Handle, grace time.Duration) error
	// Inspect reports the task's current state without blocking.
	Inspect(ctx context.Context, h *Handle) (*Status, error)
	// Capabilities says what the driver can do, so the controller asks rather than
	// knowing drivers by name (as Nomad's task drivers report theirs).
	Capabilities() Capabilities
}

// Capabilities are what a driver can do beyond the contract's methods.
type Capabilities struct {
	// Local: the trainer runs on this machine, so this machine's GPUs are the ones it
	// uses and the pre-flight picks and checks them here. Otherwise (a scheduler, a
	// remote host) the fit is judged where the job runs and only the estimate is kept.
	Local bool `json:"local"`
	// Image: the trainer runs in a container image, and the driver implements
	// ImageReporter so the manifest records the image and its digest.
	Image bool `json:"image"`
	// Arrays: the driver implements ArraySubmitter (sweeps submit one array).
	Arrays bool `json:"arrays"`
	// MultiProcess: the driver runs a Task with Distributed set (several processes,
	// torchrun), on one node or, for a scheduler, on several.
	MultiProcess bool `json:"multi_process"`
}

// OptionsValidator is implemented by drivers that check their own config section
// (driver.<name> in the run config: raw JSON, nil when absent) before anything runs,
// so a bad option is a config error (exit 2) naming the key, not a failed launch.
type OptionsValidator interface {
	ValidateOptions(raw json.RawMessage) error
}

// ImageReporter is implemented by drivers that run the trainer in a container image:
// the image a task runs in and its digest, recorded in the manifest so that a run can
// be repeated in the same image.
type ImageReporter interface {
	TaskImage(ctx context.Context, task *Task) (image, digest string, err error)
}

// Renderer is implemented by drivers whose launch can be shown before it happens: the
// Slurm batch script, the docker argv. `loractl render --driver NAME` prints it.
type Renderer interface {
	Render(task *Task) ([]byte, error)
}

// Detacher is implemented by drivers whose trainer ordinarily ends with the
// controller (the local driver stops its child when loractl exits) but can also be
// started to run on alone, for `train --detach`; `logs -f` and `stop` reattach through
// the handle. Drivers whose tasks outlive the controller anyway (Slurm, containers)
// need not implement it.
type Detacher interface {
	StartDetached(ctx context.Context, task *Task) (*Handle, error)
}

// Prewarmer is implemented by drivers that can start a task's process before the task
// is final, so that its interpreter's imports overlap the pre-flight (the local
// driver: the trainer imports torch while the data check counts tokens). Prewarm
// starts what task would run, held before it reads data or touches a GPU; the next
// Start of a task with the same command takes it over when it can, else starts
// afresh. A failure to warm is never a failure of the launch.
type Prewarmer interface {
	Prewarm(task *Task) (Warm, error)
}

// Warm is a task's process started ahead of its launch (Prewarmer).
type Warm interface {
	// RunPython runs a Python script to its end inside the warm interpreter, as
	// `python script args...` with env added would, its stdout copied to stdout; it
	// returns the script's exit status and the tail of its stderr. The pre-flight's own
	// helpers use it (the token count needs the tokenizer the trainer imports anyway).
	// An error means the warm process could not run it; run it afresh instead.
	RunPython(ctx context.Context, script string, args []string, env map[string]string, stdout io.Writer) (exitCode int, stderr []byte, err error)
	// Drop ends the process unless a Start took it over.
	Drop()
}

// ArraySubmitter is implemented by drivers that can launch many tasks as one unit
// with a concurrency cap (Slurm job arrays). Sweeps use it when present.
type ArraySubmitter interface {
	StartArray(ctx context.Context, tasks []*Task, maxParallel int) ([]*Handle, error)
}

// Errors shared by drivers, for errors.Is.
var (
	// ErrTaskNotFound means the handle names a task the driver no longer knows
	// (the process is gone, the container was removed, the job aged out).
	ErrTaskNotFound = errors.New("task not found")
	// ErrHandleVersion means the handle was written by an incompatible controller.
	ErrHandleVersion = errors.New("unsupported handle version")
	// ErrNotSupported is returned by optional operations a driver lacks.
	ErrNotSupported = errors.New("not supported by this driver")
)

// CheckHandle verifies that h belongs to driver name and has a version this build reads.
func CheckHandle(h *Handle, name string) error {
	if h == nil {
		return errors.New("nil handle")
	}
	if h.Driver != name {
		return errors.New("handle belongs to driver " + h.Driver + ", not " + name)
	}
	if h.Version != HandleVersion {
		return ErrHandleVersion
	}
	return nil
}

// OptionError is a driver option that failed validation. Key is relative to the
// driver's own config section ("partition", "extra_directives[2]"); the config layer
// prefixes it with "driver.<name>." and adds the file:line it came from.
type OptionError struct {
	Key     string
	Message string
}

func (e *OptionError) Error() string { return e.Key + ": " + e.Message }

// Launch is one start of a task by its driver. A driver that relaunches a task under
// one handle (a Slurm job requeued after preemption or a time-limit checkpoint)
// reports each, so the run's history shows every attempt.
type Launch struct {
	ID        string    `json:"id"`
	Node      string    `json:"node,omitempty"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	ExitCode  *int      `json:"exit_code,omitempty"`
	Signal    string    `json:"signal,omitempty"`
	Requeued  bool      `json:"requeued,omitempty"`
}

// HistoryReader is implemented by drivers that relaunch tasks themselves; History
// reads the launches recorded in the run directory.
type HistoryReader interface {
	History(runDir string) ([]Launch, error)
}
