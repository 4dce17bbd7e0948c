// Package preflight decides, before a training run starts, which GPU it gets and
// whether its estimated peak memory fits there. `loractl train` calls Run; a run that
// would not fit is refused with exit code 3 unless forced, or waits for memory to
// free up on a shared workstation.
package preflight

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/loractl/loractl/gpu"
)

// AnyGPU lets the pre-flight pick the GPU with the most free memory.
const AnyGPU = -1

// Options steer the pre-flight.
type Options struct {
	// GPU is the NVML index to use, or AnyGPU.
	GPU int
	// Force starts the run even when the estimate does not fit.
	Force bool
	// Wait, when positive, polls until the run fits or Wait has passed.
	Wait time.Duration
	// Poll is the interval between checks while waiting (default 5s).
	Poll time.Duration
	// Status receives the one-line waiting status (rewritten in place with \r when
	// StatusTTY is set, one line per change otherwise). Nil discards it.
	Status    io.Writer
	StatusTTY bool
}

// Candidate is one place a run can go: a whole GPU, or one MIG device of a
// MIG-enabled GPU.
type Candidate struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	UUID  string `json:"uuid"`
	// Visible is the CUDA_VISIBLE_DEVICES value that selects it.
	Visible string `json:"cuda_visible_devices"`
	Free    uint64 `json:"free_bytes"`
	Total   uint64 `json:"total_bytes"`
	MIG     bool   `json:"mig,omitempty"`
}

// Decision is the outcome of a pre-flight that lets the run start.
type Decision struct {
	// CPU is set when the machine has no NVIDIA GPU: the run goes to the CPU and
	// the other fields are empty.
	CPU bool `json:"cpu"`
	Candidate
	// Need is the estimated peak the decision was made for.
	Need uint64 `json:"need_bytes"`
	// Fits reports whether Need fits in Free; false only when Forced.
	Fits   bool          `json:"fits"`
	Forced bool          `json:"forced,omitempty"`
	Waited time.Duration `json:"waited_ns,omitempty"`
}

// Env is the environment the trainer must be started with.
func (d *Decision) Env() map[string]string {
	if d.CPU {
		// An empty value hides every GPU from CUDA, so a CPU decision stays one.
		return map[string]string{"CUDA_VISIBLE_DEVICES": ""}
	}
	return map[string]string{"CUDA_VISIBLE_DEVICES": d.Visible}
}

// The pre-flight's refusals are typed; the CLI turns them into exit codes (NoFitError
// and UnusableError: 3, RequestError: 2), so this package decides no exit code itself.

// RequestError is a GPU request this machine cannot meet as written: a GPU index it
// does not have, more processes than it has GPUs. The user's input is wrong.
type RequestError struct{ Msg string }

func (e *RequestError) Error() string { return e.Msg }

func requestErrorf(format string, a ...any) error {
	return &RequestError{Msg: fmt.Sprintf(format, a...)}
}

// UnusableError is a GPU the machine has but cannot use (driver or NVML trouble): the
// run cannot be placed, as with NoFitError, but waiting will not help.
type UnusableError struct{ Err error }

func (e *UnusableError) Error() string { return e.Err.Error() }
func (e *UnusableError) Unwrap() error { return e.Err }

// NoFitError says why a run was refused: it would not fit.
type NoFitError struct {
	Need   uint64
	Best   Candidate
	Waited time.Duration
	// TooBig is set when Need exceeds the total memory of every candidate (Best is
	// then the largest one): no amount of waiting would make the run fit.
	TooBig bool
}

// Error names the need, the best GPU's free memory and the ways out.
func (e *NoFitError) Error() string {
	if e.TooBig {
		return fmt.Sprintf("the run needs about %s of GPU memory, more than the %s that GPU %d (%s), the largest here, has in total; "+
			"waiting cannot help: see `loractl plan` for what would make it fit, or pass --force",
			gpu.FormatBytes(e.Need), gpu.FormatBytes(e.Best.Total), e.Best.Index, e.Best.Name)
	}
	msg := fmt.Sprintf("the run needs about %s of GPU memory but GPU %d (%s) has %s free",
		gpu.FormatBytes(e.Need), e.Best.Index, e.Best.Name, gpu.FormatBytes(e.Best.Free))
	if e.Waited > 0 {
		msg += fmt.Sprintf(" after waiting %s", e.Waited.Round(time.Second))
	}
	return msg + "; see `loractl plan` for what would make it fit, or pass --force"
}

// Unusable is a GPU that offers no candidate: MIG is enabled but it has no MIG
// instance, so CUDA sees no device on it.
type Unusable struct {
	Index  int
	Name   string
	Reason string
}

func (u Unusable) String() string { return fmt.Sprintf("GPU %d (%s) %s", u.Index, u.Name, u.Reason) }

// Candidates lists where a run can go, in NVML order; a MIG-enabled GPU contributes
// its MIG devices instead of itself.
func Candidates(m gpu.Manager) ([]Candidate, error) {
	cands, _, err := Survey(m)
	return cands, err
}

// Survey is Candidates that also names the GPUs that offer none (a MIG-enabled GPU
// without MIG instances), so a caller can say why a GPU cannot be used instead of
// silently falling back to the CPU.
func Survey(m gpu.Manager) ([]Candidate, []Unusable, error) {
	devs, err := m.Devices()
	if err != nil {
		return nil, nil, err
	}
	var out []Candidate
	var unusable []Unusable
	for _, d := range devs {
		info, err := d.Info()
		if err != nil {
			return nil, nil, fmt.Errorf("gpu %d: %w", d.Index(), err)
		}
		if info.MIGEnabled {
			if len(info.MIGDevices) == 0 {
				unusable = append(unusable, Unusable{Index: info.Index, Name: info.Name,
					Reason: fmt.Sprintf("has MIG enabled but no MIG instance: create one (sudo nvidia-smi mig -i %d -cgi <profile> -C) or disable MIG (sudo nvidia-smi -i %d -mig 0)", info.Index, info.Index)})
			}
			for _, mig := range info.MIGDevices {
				out = append(out, Candidate{Index: info.Index, Name: info.Name + " MIG", UUID: mig.UUID,
					Visible: mig.UUID, Free: mig.MemoryFreeBytes, Total: mig.MemoryTotalBytes, MIG: true})
			}
			continue
		}
		out = append(out, Candidate{Index: info.Index, Name: info.Name, UUID: info.UUID,
			Visible: strconv.Itoa(info.Index), Free: info.MemoryFreeBytes, Total: info.MemoryTotalBytes})
	}
	return out, unusable, nil
}

// Largest returns the candidate with the most total memory among those on GPU index
// (any GPU for AnyGPU).
func Largest(cands []Candidate, index int) (Candidate, bool) {
	var best Candidate
	found := false
	for _, c := range cands {
		if index != AnyGPU && c.Index != index {
			continue
		}
		if !found || c.Total > best.Total {
			best, found = c, true
		}
	}
	return best, found
}

// Pick returns the candidate with the most free memory among those on GPU index
// (any GPU for AnyGPU).
func Pick(cands []Candidate, index int) (Candidate, bool) {
	var best Candidate
	found := false
	for _, c := range cands {
		if index != AnyGPU && c.Index != index {
			continue
		}
		if !found || c.Free > best.Free {
			best, found = c, true
		}
	}
	return best, found
}

// Run picks the GPU for a run whose estimated peak is need bytes. It returns a
// CPU decision on a machine without GPUs (unless a GPU was asked for), a decision
// for the chosen GPU when the run fits (or Force is set), and otherwise, after
// waiting when asked to, an exit-3 error wrapping *NoFitError.
func Run(ctx context.Context, m gpu.Manager, need uint64, opts Options) (*Decision, error) {
	poll := opts.Poll
	if poll <= 0 {
		poll = 5 * time.Second
	}
	start := time.Now()
	var deadline time.Time
	if opts.Wait > 0 {
		deadline = start.Add(opts.Wait)
	}
	status := newStatusLine(opts.Status, opts.StatusTTY)
	defer status.done()
	for {
		cands, unusable, err := Survey(m)
		if err != nil {
			return nil, err
		}
		for _, u := range unusable {
			if opts.GPU == u.Index || (opts.GPU == AnyGPU && len(cands) == 0) {
				// Not a CPU decision: the machine has a GPU, it is only not set up.
				return nil, &UnusableError{Err: fmt.Errorf("%s; nothing was launched", u)}
			}
		}
		if len(cands) == 0 {
			if opts.GPU != AnyGPU {
				return nil, requestErrorf("GPU %d was requested but this machine has no usable NVIDIA GPU", opts.GPU)
			}
			return &Decision{CPU: true, Need: need, Fits: true}, nil
		}
		best, ok := Pick(cands, opts.GPU)
		if !ok {
			return nil, requestErrorf("GPU %d was requested but this machine has GPUs 0-%d", opts.GPU, cands[len(cands)-1].Index)
		}
		if largest, _ := Largest(cands, opts.GPU); need > largest.Total && !opts.Force {
			// More than any candidate holds when empty: waiting cannot help.
			return nil, &NoFitError{Need: need, Best: largest, TooBig: true}
		}
		waited := time.Since(start)
		if need <= best.Free {
			return &Decision{Candidate: best, Need: need, Fits: true, Waited: waitedOrZero(opts, waited)}, nil
		}
		if opts.Force {
			return &Decision{Candidate: best, Need: need, Forced: true}, nil
		}
		if deadline.IsZero() || !time.Now().Before(deadline) {
			return nil, &NoFitError{Need: need, Best: best, Waited: waitedOrZero(opts, waited)}
		}
		status.show(fmt.Sprintf("waiting for GPU memory: need %s, GPU %d (%s) has %s free; %s of %s",
			gpu.FormatBytes(need), best.Index, best.Name, gpu.FormatBytes(best.Free),
			waited.Round(time.Second), opts.Wait.Round(time.Second)))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(poll, time.Until(deadline))):
		}
	}
}

func waitedOrZero(opts Options, waited time.Duration) time.Duration {
	if opts.Wait <= 0 {
		return 0
	}
	return waited
}

// statusLine prints the waiting status: rewritten in place on a terminal, and only
// when it changes elsewhere (a log file should not fill with identical lines).
type statusLine struct {
	w     io.Writer
	tty   bool
	last  string
	shown bool
}

func newStatusLine(w io.Writer, tty bool) *statusLine { return &statusLine{w: w, tty: tty} }

func (s *statusLine) show(line string) {
	if s.w == nil {
		return
	}
	if s.tty {
		fmt.Fprintf(s.w, "\r\033[K%s", line)
		s.shown = true
		return
	}
	// The elapsed time changes every poll; compare without it.
	key := line
	if i := strings.LastIndex(line, ";"); i >= 0 {
		key = line[:i]
	}
	if key != s.last {
		fmt.Fprintln(s.w, line)
		s.last = key
	}
}

func (s *statusLine) done() {
	if s.w != nil && s.tty && s.shown {
		fmt.Fprintln(s.w)
	}
}
