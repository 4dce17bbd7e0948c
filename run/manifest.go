package run

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/loractl/loractl/driver"
)

// State is a run's lifecycle state as the store records it.
type State string

// Run states.
const (
	StateCreated     State = "created"
	StatePending     State = "pending" // queued by a scheduler
	StateRunning     State = "running"
	StateCompleted   State = "completed"
	StateFailed      State = "failed"
	StateInterrupted State = "interrupted" // stopped with a checkpoint; resumable
)

// Terminal reports whether the run will not change state again by itself.
func (s State) Terminal() bool {
	return s == StateCompleted || s == StateFailed || s == StateInterrupted
}

// PluginSHA256 is the DriverInfo key holding the checksum pinned for an external
// driver's executable; later controllers verify the plugin against it.
const PluginSHA256 = "plugin_sha256"

// ManifestVersion is the manifest.json schema version.
const ManifestVersion = 1

// Manifest is everything known about a run: enough to reproduce it (config, data and
// code hashes, versions, seed, driver) and to reattach to it (the driver handle).
type Manifest struct {
	Version    int       `json:"version"`
	RunID      string    `json:"run_id"`
	Name       string    `json:"name"`
	State      State     `json:"state"`
	CreatedAt  time.Time `json:"created_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	EndedAt    time.Time `json:"ended_at,omitzero"`
	ExitCode   *int      `json:"exit_code,omitempty"`
	Error      string    `json:"error,omitempty"`
	ConfigPath string    `json:"config_path"`
	Overrides  []string  `json:"overrides,omitempty"`
	// ConfigHash is the SHA-256 of resolved.json; resume refuses when it changes.
	ConfigHash string     `json:"config_hash"`
	Data       []FileHash `json:"data"`
	Trainer    FileHash   `json:"trainer"`
	Seed       int        `json:"seed"`
	Git        *GitInfo   `json:"git,omitempty"`
	Host       HostInfo   `json:"host"`
	// Versions are the trainer's package versions (from its start event).
	Versions map[string]string `json:"versions,omitempty"`
	Device   string            `json:"device,omitempty"`
	GPU      *GPUInfo          `json:"gpu,omitempty"`
	Driver   string            `json:"driver"`
	// DriverInfo records what the driver knows about where it ran (image and digest,
	// Slurm partition), for reproduction.
	DriverInfo map[string]string `json:"driver_info,omitempty"`
	Handle     *driver.Handle    `json:"handle,omitempty"`
	Attempts   []Attempt         `json:"attempts,omitempty"`
	// DataCheck holds the data check's warnings (errors stop a run before it exists).
	DataCheck json.RawMessage `json:"data_check,omitempty"`
	// Estimate is the GPU pre-flight's memory estimate.
	Estimate json.RawMessage `json:"estimate,omitempty"`
	Result   *Result         `json:"result,omitempty"`
	// Sweep names the sweep this run is a point of, if any.
	Sweep string `json:"sweep,omitempty"`

	// Distributed is the run's process layout, from the trainer's start event; absent
	// for a single-process run.
	Distributed *Distributed `json:"distributed,omitempty"`
}

// FileHash identifies a file by content.
type FileHash struct {
	Role   string `json:"role,omitempty"`
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"bytes"`
}

// GitInfo is the commit of the repository holding the config, when there is one.
type GitInfo struct {
	Commit string `json:"commit"`
	Dirty  bool   `json:"dirty"`
}

// HostInfo is the machine the controller ran on.
type HostInfo struct {
	Hostname string `json:"hostname"`
	OS       string `json:"os"`
	User     string `json:"user"`
	Loractl  string `json:"loractl"`
}

// GPUInfo is the device a run was placed on.
type GPUInfo struct {
	Index         int    `json:"index"`
	Name          string `json:"name"`
	UUID          string `json:"uuid,omitempty"`
	MemoryBytes   uint64 `json:"memory_bytes,omitempty"`
	DriverVersion string `json:"driver_version,omitempty"`
}

// Attempt is one launch of the trainer: the first start, a resume, a Slurm requeue.
type Attempt struct {
	N          int                `json:"n"`
	StartedAt  time.Time          `json:"started_at"`
	EndedAt    time.Time          `json:"ended_at,omitzero"`
	HandleID   string             `json:"handle_id,omitempty"`
	ResumeFrom string             `json:"resume_from,omitempty"`
	State      State              `json:"state"`
	Exit       *driver.ExitResult `json:"exit,omitempty"`
	Note       string             `json:"note,omitempty"`
	// EventsOffset is where this attempt's events begin in events.jsonl.
	EventsOffset int64 `json:"events_offset,omitempty"`
	// Launches are the driver's own relaunches within this attempt (Slurm requeues).
	Launches []driver.Launch `json:"launches,omitempty"`
}

// Result is the outcome of a completed run.
type Result struct {
	Step           int      `json:"step"`
	EvalLossBefore *float64 `json:"eval_loss_before,omitempty"`
	EvalLossAfter  *float64 `json:"eval_loss_after,omitempty"`
	// Improved is the adoption verdict: with a task evaluation, Verdict == adopt;
	// without one, the adapter lowered the eval loss. An adapter that does not beat the
	// base model is not adopted.
	Improved    *bool   `json:"improved,omitempty"`
	AdapterPath string  `json:"adapter_path,omitempty"`
	WallSeconds float64 `json:"wall_seconds,omitempty"`
	// PeakAllocatedBytes/PeakReservedBytes are torch's CUDA peaks, from the end event.
	PeakAllocatedBytes uint64              `json:"peak_allocated_bytes,omitempty"`
	PeakReservedBytes  uint64              `json:"peak_reserved_bytes,omitempty"`
	Metrics            map[string]*float64 `json:"metrics,omitempty"`
	// Verdict is the task evaluation's adoption verdict (adopt, do_not_adopt,
	// inconclusive; docs/evaluation.md) and VerdictReason its explanation. When set,
	// Improved means Verdict == adopt.
	Verdict       string `json:"verdict,omitempty"`
	VerdictReason string `json:"verdict_reason,omitempty"`
	// EvalMetrics holds the adapter's mean of each task metric (and the judge's win
	// rate), by metric name: what a sweep's metric: eval.<name> ranks by.
	EvalMetrics map[string]float64 `json:"eval_metrics,omitempty"`
}

// LastAttempt returns the newest attempt, or nil.
func (m *Manifest) LastAttempt() *Attempt {
	if len(m.Attempts) == 0 {
		return nil
	}
	return &m.Attempts[len(m.Attempts)-1]
}

// ReadManifest loads dir/manifest.json.
// maxManifestBytes bounds what ReadManifest reads: a real manifest is a few KiB (a
// long-lived Slurm run with many requeues, tens of KiB).
const maxManifestBytes = 16 << 20

func ReadManifest(dir string) (*Manifest, error) {
	b, err := readRegular(filepath.Join(dir, ManifestFile), maxManifestBytes)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestFile), err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestFile), err)
	}
	return &m, nil
}

// WriteManifest stores m in dir atomically (temp file + rename), so a reader or a
// crash never sees half a manifest.
func WriteManifest(dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, ManifestFile), append(b, '\n'), 0o644)
}

// WriteFileAtomic writes data to path through a temp file and a rename.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), perm); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
