package run

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"time"
)

// Event types written to events.jsonl (docs/trainer-contract.md).
const (
	EventStart      = "start"
	EventWarning    = "warning"
	EventLog        = "log"
	EventEval       = "eval"
	EventCheckpoint = "checkpoint"
	EventEnd        = "end"
	EventError      = "error"
	EventGPU        = "gpu"
	// EventBaseEvalCache says whether the base model's evaluation (phase "before") or
	// replies (phase "generate") were reused from the cache or computed and stored.
	EventBaseEvalCache = "base_eval_cache"
)

// Event is one line of events.jsonl. Fields not used by a type stay zero; Raw keeps the
// line exactly as written, for `--json` output that must not lose fields.
type Event struct {
	Type string    `json:"type"`
	Time time.Time `json:"time"`

	// start
	Versions          map[string]string `json:"versions,omitempty"`
	Device            string            `json:"device,omitempty"`
	Precision         string            `json:"precision,omitempty"`
	TrainableParams   int64             `json:"trainable_params,omitempty"`
	TotalParams       int64             `json:"total_params,omitempty"`
	TrainExamples     int               `json:"train_examples,omitempty"`
	EvalExamples      int               `json:"eval_examples,omitempty"`
	AssistantOnlyLoss *bool             `json:"assistant_only_loss,omitempty"`
	ResumeFrom        string            `json:"resume_from,omitempty"`
	ResumeStep        int               `json:"resume_step,omitempty"`

	// Distributed is the start event's process layout (distributed runs only).
	Distributed *Distributed `json:"distributed,omitempty"`

	// log / eval / checkpoint
	Step            int      `json:"step,omitempty"`
	TotalSteps      int      `json:"total_steps,omitempty"`
	Epoch           float64  `json:"epoch,omitempty"`
	Loss            *float64 `json:"loss,omitempty"`
	LearningRate    *float64 `json:"learning_rate,omitempty"`
	GradNorm        *float64 `json:"grad_norm,omitempty"`
	TokensPerSecond *float64 `json:"tokens_per_second,omitempty"`
	Phase           string   `json:"phase,omitempty"`
	EvalLoss        *float64 `json:"eval_loss,omitempty"`
	Path            string   `json:"path,omitempty"`

	// end
	Status         string   `json:"status,omitempty"`
	EvalLossBefore *float64 `json:"eval_loss_before,omitempty"`
	EvalLossAfter  *float64 `json:"eval_loss_after,omitempty"`
	AdapterPath    string   `json:"adapter_path,omitempty"`
	// Metrics are the trainer's final metrics; a value the trainer could not give
	// as a number (NaN, Inf: it writes null) is nil, never 0.
	Metrics    map[string]*float64 `json:"metrics,omitempty"`
	PeakMemory *PeakMemory         `json:"peak_memory,omitempty"`
	Signal     string              `json:"signal,omitempty"`

	// base_eval_cache (Phase, Status: reused or stored)
	StoredBy string `json:"stored_by,omitempty"`

	// warning / error
	Code      string `json:"code,omitempty"`
	Message   string `json:"message,omitempty"`
	ErrorType string `json:"error_type,omitempty"`
	Traceback string `json:"traceback,omitempty"`
	Hint      string `json:"hint,omitempty"`

	// gpu (sampled by the controller)
	Index              int      `json:"index,omitempty"`
	MemoryUsedBytes    uint64   `json:"memory_used_bytes,omitempty"`
	UtilizationPercent *float64 `json:"utilization_percent,omitempty"`
	PowerWatts         *float64 `json:"power_watts,omitempty"`
	TemperatureC       *float64 `json:"temperature_c,omitempty"`

	Raw json.RawMessage `json:"-"`
}

// PeakMemory is torch's CUDA memory peak, reported by the trainer at the end.
type PeakMemory struct {
	AllocatedBytes uint64 `json:"allocated_bytes"`
	ReservedBytes  uint64 `json:"reserved_bytes"`
}

// ParseEvent decodes one events.jsonl line.
func ParseEvent(line []byte) (*Event, error) {
	var e Event
	if err := json.Unmarshal(line, &e); err != nil {
		return nil, err
	}
	if e.Type == "" {
		return nil, errors.New("event without a type")
	}
	e.Raw = append(json.RawMessage(nil), bytes.TrimSpace(line)...)
	return &e, nil
}

// ReadEvents parses a whole events file; malformed lines are skipped (a line being
// written when the trainer was killed is the usual cause).
func ReadEvents(path string) ([]*Event, error) {
	f, err := OpenNoFollow(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []*Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), MaxEventLine)
	for sc.Scan() {
		if e, err := ParseEvent(sc.Bytes()); err == nil {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}

// Follower reads events from a file that another process is still appending to: a
// local trainer, a container through a bind mount, a Slurm node through a shared
// filesystem. It polls rather than relying on inotify, which does not see writes made
// on another NFS client.
type Follower struct {
	Path     string
	Interval time.Duration
	// Wake, when set, makes Follow poll (and ask done) at once when it is closed, rather
	// than at the next tick: the caller closes it as the trainer exits, so the run ends
	// without waiting out the interval (up to 200 ms per run).
	Wake <-chan struct{}

	off      int64
	partial  []byte
	skipping bool
}

// MaxEventLine is the longest events.jsonl line a reader keeps (the scanner's limit
// too); a longer one is skipped, so a damaged or hostile file cannot exhaust memory.
const MaxEventLine = 16 << 20

// maxPollBytes bounds one Poll's read; the next Poll continues where it stopped.
const maxPollBytes = 64 << 20

// StartAt makes the follower begin at byte offset off: a resumed run's file still
// holds the earlier attempts' events, which the live view must not replay as new.
// (An offset, not a timestamp: a Slurm node's clock may differ from ours.)
func (f *Follower) StartAt(off int64) { f.off = off }

// Size returns the current size of the file at path, 0 when it does not exist.
func Size(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// NewFollower follows path from its beginning.
func NewFollower(path string) *Follower {
	return &Follower{Path: path, Interval: 200 * time.Millisecond}
}

// Poll returns the complete lines appended since the last call. A trailing line
// without its newline is held back until it is complete.
func (f *Follower) Poll() ([]*Event, error) {
	fh, err := OpenNoFollow(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	if fi, err := fh.Stat(); err == nil && fi.Size() < f.off {
		f.off, f.partial = 0, nil // truncated or replaced: start over
	}
	if _, err := fh.Seek(f.off, io.SeekStart); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxPollBytes))
	if err != nil {
		return nil, err
	}
	f.off += int64(len(data))
	if f.skipping {
		// The rest of a line longer than MaxEventLine: drop it up to its newline.
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return nil, nil
		}
		data, f.skipping = data[i+1:], false
	}
	data = append(f.partial, data...)
	var out []*Event
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		if line := bytes.TrimSpace(data[:i]); len(line) > 0 {
			if e, err := ParseEvent(line); err == nil {
				out = append(out, e)
			}
		}
		data = data[i+1:]
	}
	f.partial = append([]byte(nil), data...)
	if len(f.partial) > MaxEventLine {
		f.partial, f.skipping = nil, true
	}
	return out, nil
}

// Rest returns the last line when it is a whole event without its newline (a writer
// that ended without one), once the writer is done; nil otherwise. Poll keeps such a
// line back, since a live writer may still be in the middle of it.
func (f *Follower) Rest() *Event {
	line := bytes.TrimSpace(f.partial)
	if len(line) == 0 {
		return nil
	}
	e, err := ParseEvent(line)
	if err != nil {
		return nil
	}
	f.partial = nil
	return e
}

// Follow sends events to fn as they arrive until done returns true (checked after each
// poll) or ctx ends. It makes one last poll after done so nothing written just before
// the trainer exited is lost.
func (f *Follower) Follow(ctx context.Context, done func() bool, fn func(*Event)) error {
	t := time.NewTicker(f.Interval)
	defer t.Stop()
	wake := f.Wake
	for {
		evs, err := f.Poll()
		if err != nil {
			return err
		}
		for _, e := range evs {
			fn(e)
		}
		if done() {
			evs, err := f.Poll()
			for _, e := range evs {
				fn(e)
			}
			if e := f.Rest(); e != nil {
				fn(e)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-wake:
			wake = nil // once: a closed channel would spin the loop if done still says no
		}
	}
}

// AppendEvent appends one controller event (e.g. a GPU sample) to the events file.
// O_APPEND keeps each write whole next to the trainer's own appends.
func AppendEvent(path string, ev any) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	f, err := OpenFileNoFollow(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
