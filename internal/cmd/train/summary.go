package train

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/launch"
	"github.com/loractl/loractl/plan"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/termsafe"
)

// Result is the final object `train --json` prints after the events.
type Result struct {
	Type           string    `json:"type"`
	RunID          string    `json:"run_id"`
	State          run.State `json:"state"`
	ExitCode       int       `json:"exit_code"`
	Step           int       `json:"step"`
	EvalLossBefore *float64  `json:"eval_loss_before,omitempty"`
	EvalLossAfter  *float64  `json:"eval_loss_after,omitempty"`
	Improved       *bool     `json:"improved,omitempty"`
	AdapterPath    string    `json:"adapter_path,omitempty"`
	WallSeconds    float64   `json:"wall_seconds"`
	Error          string    `json:"error,omitempty"`

	// Verdict and VerdictReason are the task evaluation's (docs/evaluation.md).
	Verdict       string `json:"verdict,omitempty"`
	VerdictReason string `json:"verdict_reason,omitempty"`
}

// summarise prints the outcome and returns the exit code as an error.
func (o *Options) summarise(r *launch.Run) error {
	a, out := r.Active, r.Outcome
	m := a.Manifest
	code := cmdutil.ExitOK
	switch out.State {
	case run.StateInterrupted:
		code = cmdutil.ExitInterrupted
	case run.StateFailed:
		code = cmdutil.ExitFailed
		if out.Exit != nil && out.Exit.ExitCode == driver.TrainerExitInvalid {
			code = cmdutil.ExitInvalid // the trainer refused its config (e.g. 4-bit on a CPU)
		}
		if r.Stops > 0 {
			code = cmdutil.ExitInterrupted // the user stopped it (a third Ctrl-C kills the trainer)
		}
	}
	wall := time.Since(a.Started)
	res := Result{Type: "result", RunID: m.RunID, State: out.State, ExitCode: code, Error: m.Error, WallSeconds: wall.Seconds()}
	if s, ok := run.LastStep(a.Dir); ok && m.Result == nil {
		res.Step = s // killed: no end event, but the events say how far it got
	}
	if mr := m.Result; mr != nil {
		res.Step, res.EvalLossBefore, res.EvalLossAfter, res.Improved, res.AdapterPath = mr.Step, mr.EvalLossBefore, mr.EvalLossAfter, mr.Improved, mr.AdapterPath
		res.Verdict, res.VerdictReason = mr.Verdict, mr.VerdictReason
	}
	o.evalWarnings(out)
	w := o.Factory.IO.Out
	if o.JSON {
		b, _ := json.Marshal(res)
		fmt.Fprintf(w, "%s\n", termsafe.JSON(b))
		return exit(code)
	}
	fmt.Fprintf(w, "\nrun %s %s in %s (step %d)\n", m.RunID, out.State, wall.Round(time.Second), res.Step)
	if d := m.Distributed; d != nil {
		fmt.Fprintf(w, "  processes  %d (%d node(s) × %d, %s, %s)\n", d.WorldSize, d.Nodes, d.NprocPerNode, d.Strategy, d.Backend)
	}
	if res.EvalLossBefore != nil && res.EvalLossAfter != nil {
		before, after := *res.EvalLossBefore, *res.EvalLossAfter
		if before != 0 {
			fmt.Fprintf(w, "  eval loss  %.4f -> %.4f (%+.1f%%)\n", before, after, (after-before)/before*100)
		} else {
			fmt.Fprintf(w, "  eval loss  %.4f -> %.4f\n", before, after)
		}
		if res.Verdict == "" {
			if after < before {
				fmt.Fprintf(w, "  verdict    adopt: the adapter beats the base model on the eval set\n")
			} else {
				fmt.Fprintf(w, "  verdict    do not adopt: the adapter does not beat the base model on the eval set\n")
			}
		}
	}
	for _, l := range evalLines(out.Eval) {
		fmt.Fprintln(w, l)
	}
	if mr := m.Result; mr != nil {
		for _, l := range memoryLines(r.Check, r.NVMLPeak, mr.PeakReservedBytes, mr.PeakAllocatedBytes) {
			fmt.Fprintln(w, l)
		}
	}
	if res.AdapterPath != "" {
		fmt.Fprintf(w, "  adapter    %s\n", termsafe.Line(res.AdapterPath))
	}
	switch out.State {
	case run.StateInterrupted:
		if cp, ok, _ := run.LatestComplete(a.Dir); ok {
			fmt.Fprintf(w, "  checkpoint %s (step %d)\n", cp.Path, cp.Step)
			fmt.Fprintf(w, "  continue   loractl train --resume %s\n", m.RunID)
		} else {
			fmt.Fprintf(w, "  stopped before its first checkpoint: start it again with loractl train %s\n", m.ConfigPath)
		}
	case run.StateFailed:
		if m.Error != "" {
			fmt.Fprintf(w, "  error      %s\n", termsafe.Text(m.Error))
		}
		if out.Err != nil && out.Err.Hint != "" {
			fmt.Fprintf(w, "  hint       %s\n", termsafe.Text(out.Err.Hint))
		}
		if out.Exit != nil {
			fmt.Fprintf(w, "  exit       code %d %s\n", out.Exit.ExitCode, termsafe.Line(out.Exit.Reason))
		}
		logPath := filepath.Join(a.Dir, run.LogFile)
		fmt.Fprintf(w, "  log        %s, last lines:\n", logPath)
		for _, l := range tail(logPath, 15) {
			fmt.Fprintf(w, "    | %s\n", termsafe.Line(l))
		}
	}
	return exit(code)
}

// memoryLines compares the measured peaks with the estimate, like with like. Torch's
// reserved peak is what the caching allocator held: the estimate without the CUDA
// context (which lives outside the allocator). NVML's peak is the whole process as
// the driver sees it, sampled every few seconds, less what the GPU had in use before
// the launch: the full estimate. check is the pre-flight's decision (nil: none).
func memoryLines(check *launch.Result, nvmlPeak, reserved, allocated uint64) []string {
	var lines []string
	var e *plan.Estimate
	if check != nil {
		e = check.Estimate
	}
	if reserved > 0 {
		line := fmt.Sprintf("  gpu memory peak %s reserved, %s allocated (torch)", gpu.FormatBytes(reserved), gpu.FormatBytes(allocated))
		if e != nil {
			torchEst := e.PeakBytes - min(e.Breakdown()["cuda_context"], e.PeakBytes)
			if torchEst > 0 {
				line += fmt.Sprintf("; estimate without the CUDA context %s, measured/estimate %.2f",
					gpu.FormatBytes(torchEst), float64(reserved)/float64(torchEst))
			}
		}
		lines = append(lines, line)
	}
	if check != nil && check.NVMLComparable && nvmlPeak > check.BaseUsed {
		used := nvmlPeak - check.BaseUsed
		line := fmt.Sprintf("  gpu memory peak %s used (NVML, sampled, less the %s in use before launch)", gpu.FormatBytes(used), gpu.FormatBytes(check.BaseUsed))
		if e != nil && e.PeakBytes > 0 {
			line += fmt.Sprintf("; full estimate %s, measured/estimate %.2f", gpu.FormatBytes(e.PeakBytes), float64(used)/float64(e.PeakBytes))
		}
		lines = append(lines, line)
	}
	return lines
}

func exit(code int) error {
	if code == cmdutil.ExitOK {
		return nil
	}
	return cmdutil.SilentExit(code)
}

// tail returns the last n lines of a file (at most its last 64 KiB), for a failure
// summary that shows why without sending the user off to another file.
func tail(path string, n int) []string {
	f, err := run.OpenNoFollow(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	const window = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		_, _ = f.Seek(fi.Size()-window, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}
