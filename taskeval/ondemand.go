package taskeval

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/run"
)

// ScriptFile is the on-demand evaluation script, installed beside the trainer.
const ScriptFile = "eval_task.py"

// InputError is a problem with what was asked for (no such checkpoint, a data file
// that does not exist, a metric the script refused): invalid input, exit 2.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputErrorf(format string, a ...any) error {
	return &InputError{Err: fmt.Errorf(format, a...)}
}

// ErrInterrupted is returned when the evaluation was stopped by a signal; what an
// earlier evaluation left in the output directory is kept.
var ErrInterrupted = errors.New("evaluation interrupted")

// RunOptions say what `loractl eval` evaluates and with what.
type RunOptions struct {
	// RunDir is the run's directory (its resolved.json, adapter/, checkpoints/).
	RunDir string
	// Python is the trainer's interpreter; ScriptDir holds eval_task.py and the
	// trainer modules it imports.
	Python, ScriptDir string
	// Checkpoint is a checkpoint's step; 0 evaluates the run's adapter/.
	Checkpoint int
	// Data is a chat JSONL to evaluate on instead of the run's eval set.
	Data string
	// Metrics replace the run's eval.metrics when not nil (the first is primary).
	Metrics []config.MetricConfig
	// MaxExamples replaces eval.max_examples when > 0.
	MaxExamples int
	// OnEvent receives each event the script writes (progress), as written.
	OnEvent func(raw json.RawMessage)
	Judge   JudgeOptions
	// Env is added to the script's environment (the run's env.set).
	Env map[string]string
	// Against, when set, compares the adapter with another model instead of its base.
	Against *Against
}

// RunResult is a finished on-demand evaluation.
type RunResult struct {
	// Dir is where its files are: RUN/eval, or RUN/eval-<what differs>.
	Dir     string
	Summary *Summary
	// JudgeErr says the judge failed on some or all examples (they count as errors).
	JudgeErr error
}

// OutDirName is the eval directory an evaluation writes: "eval" for the run's own
// (the adapter on the eval set with the configured metrics), else "eval-" and what
// differs, so the training-time evaluation is never overwritten by another one.
func OutDirName(checkpoint int, dataSHA string, metrics []config.MetricConfig, maxExamples int, against string) string {
	var parts []string
	if against != "" {
		sum := sha256.Sum256([]byte(against))
		parts = append(parts, "against-"+hex.EncodeToString(sum[:])[:8])
	}
	if checkpoint > 0 {
		parts = append(parts, fmt.Sprintf("checkpoint-%d", checkpoint))
	}
	if dataSHA != "" {
		parts = append(parts, "data-"+dataSHA[:10])
	}
	if metrics != nil || maxExamples > 0 {
		b, _ := json.Marshal(struct {
			M []config.MetricConfig
			N int
		}{metrics, maxExamples})
		sum := sha256.Sum256(b)
		parts = append(parts, "metrics-"+hex.EncodeToString(sum[:])[:8])
	}
	if len(parts) == 0 {
		return Dir
	}
	return Dir + "-" + strings.Join(parts, "-")
}

// RunOnDemand evaluates a run's adapter (or one of its checkpoints) with eval_task.py,
// runs the judge, writes the summary and returns it. The script writes into a fresh
// directory that replaces the previous evaluation of the same kind only once it is
// complete: a failed or interrupted evaluation loses nothing.
func RunOnDemand(ctx context.Context, o RunOptions) (*RunResult, error) {
	ev, seed, err := ReadRunEval(o.RunDir)
	if err != nil {
		return nil, err
	}
	adapter, label, err := adapterDir(o.RunDir, o.Checkpoint)
	if err != nil {
		return nil, err
	}
	var dataSHA string
	if o.Data != "" {
		if dataSHA, err = hashFile(o.Data); err != nil {
			return nil, inputErrorf("--data %s: %v", o.Data, err)
		}
	}
	if o.MaxExamples < 0 {
		return nil, inputErrorf("--max-examples must be >= 1, got %d", o.MaxExamples)
	}
	if o.Metrics != nil {
		ev.Metrics = o.Metrics
		ev.Primary = ""
		if len(o.Metrics) > 0 {
			ev.Primary = o.Metrics[0].Name
		}
	}
	script := filepath.Join(o.ScriptDir, ScriptFile)
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("the evaluation script is not installed: %w", err)
	}
	var against string
	if o.Against != nil {
		against = o.Against.Label
		if len(ev.Metrics) == 0 {
			return nil, inputErrorf("comparing with %s needs a task metric or a judge to score both sides, and the run has none (eval.metrics): "+
				"add one with --metric, e.g. --metric chrf", against)
		}
	}
	final := filepath.Join(o.RunDir, OutDirName(o.Checkpoint, dataSHA, o.Metrics, o.MaxExamples, against))
	tmp, err := os.MkdirTemp(o.RunDir, ".eval-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	args := []string{script, "--config", filepath.Join(o.RunDir, run.ResolvedFile), "--run-dir", o.RunDir,
		"--adapter", adapter, "--out", tmp}
	if o.Data != "" {
		abs, _ := filepath.Abs(o.Data)
		args = append(args, "--data", abs)
	}
	for _, m := range o.Metrics {
		b, _ := json.Marshal(m)
		args = append(args, "--metric", string(b))
	}
	if o.MaxExamples > 0 {
		args = append(args, "--max-examples", strconv.Itoa(o.MaxExamples))
	}
	if o.Against != nil {
		replies, err := askOther(ctx, o, ev, args, tmp)
		if err != nil {
			return nil, err
		}
		args = append(args, "--against-replies", replies)
	}
	if err := runScript(ctx, o, args, tmp); err != nil {
		return nil, err
	}
	s, judgeErr, err := Evaluate(ctx, tmp, Options{Eval: ev, Seed: seed, Checkpoint: label, Against: against}, o.Judge)
	if err != nil {
		return nil, err
	}
	// Replace the previous evaluation of this kind: move it aside, move the new one in.
	old := tmp + ".old"
	if err := os.Rename(final, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.Rename(old, final)
		return nil, err
	}
	_ = os.RemoveAll(old)
	return &RunResult{Dir: final, Summary: s, JudgeErr: judgeErr}, nil
}

// askOther has the script choose the prompts (no model is loaded), sends them to the
// other model and returns the file of its replies.
func askOther(ctx context.Context, o RunOptions, ev config.EvalConfig, args []string, tmp string) (string, error) {
	promptsPath := filepath.Join(tmp, "prompts.jsonl")
	if err := runScript(ctx, o, append(slices.Clip(args), "--prompts-out", promptsPath), tmp); err != nil {
		return "", err
	}
	prompts, err := readPrompts(promptsPath)
	if err != nil {
		return "", err
	}
	if len(prompts) == 0 {
		return "", inputErrorf("no eval example has an assistant turn after a prompt: nothing to ask %s", o.Against.Label)
	}
	replies := filepath.Join(tmp, "against.jsonl")
	if err := askAgainst(ctx, o.Against, prompts, ev.MaxNewTokens, replies); err != nil {
		if ctx.Err() != nil {
			return "", ErrInterrupted
		}
		return "", err
	}
	return replies, nil
}

// ReadRunEval reads a run's eval section and seed from its resolved.json.
func ReadRunEval(runDir string) (config.EvalConfig, uint64, error) {
	b, err := os.ReadFile(filepath.Join(runDir, run.ResolvedFile))
	if err != nil {
		return config.EvalConfig{}, 0, inputErrorf("%s is not a run directory: %v", runDir, err)
	}
	var r config.Resolved
	if err := json.Unmarshal(b, &r); err != nil {
		return config.EvalConfig{}, 0, fmt.Errorf("%s: %w", filepath.Join(runDir, run.ResolvedFile), err)
	}
	return r.Eval, uint64(r.Train.Seed), nil
}

// adapterDir is the adapter to evaluate: the run's adapter/, or checkpoint-STEP when
// it is complete (a checkpoint interrupted while saving is refused).
func adapterDir(runDir string, step int) (dir, label string, err error) {
	if step < 0 {
		return "", "", inputErrorf("--checkpoint must be a step >= 1, got %d", step)
	}
	if step == 0 {
		dir = filepath.Join(runDir, "adapter")
		if _, err := os.Stat(filepath.Join(dir, "adapter_config.json")); err != nil {
			return "", "", inputErrorf("%s has no adapter/ (not completed?): evaluate one of its checkpoints with --checkpoint STEP", filepath.Base(runDir))
		}
		return dir, "adapter", nil
	}
	cps, err := run.Checkpoints(runDir)
	if err != nil {
		return "", "", err
	}
	var steps []string
	for _, cp := range cps {
		if cp.Step == step {
			if !cp.Complete {
				return "", "", inputErrorf("checkpoint-%d of %s is incomplete (no %s: it was interrupted while saving)", step, filepath.Base(runDir), run.CompleteMarker)
			}
			return cp.Path, fmt.Sprintf("checkpoint-%d", step), nil
		}
		if cp.Complete {
			steps = append(steps, strconv.Itoa(cp.Step))
		}
	}
	have := "none"
	if len(steps) > 0 {
		have = strings.Join(steps, ", ")
	}
	return "", "", inputErrorf("%s has no checkpoint-%d (complete checkpoints: %s)", filepath.Base(runDir), step, have)
}

func hashFile(p string) (string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", errors.New("not a regular file")
	}
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Exit codes of eval_task.py.
const (
	scriptInvalid     = 2
	scriptInterrupted = 130
)

// runScript runs the script with its output in dir/eval.log, following its events
// for progress. A signal reaches it as SIGTERM, so it ends cleanly.
func runScript(ctx context.Context, o RunOptions, args []string, dir string) error {
	logPath := filepath.Join(dir, "eval.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, o.Python, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// No bytecode beside the installed scripts: the dir must hold exactly them.
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1")
	for k, v := range o.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", o.Python, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var waitErr error
	finished := false
	f := run.NewFollower(filepath.Join(dir, "events.jsonl"))
	_ = f.Follow(context.WithoutCancel(ctx), func() bool {
		if finished {
			return true
		}
		select {
		case waitErr = <-done:
			finished = true
			return true
		default:
			return false
		}
	}, func(e *run.Event) {
		if o.OnEvent != nil {
			o.OnEvent(e.Raw)
		}
	})
	if !finished {
		waitErr = <-done
	}
	if waitErr == nil {
		return nil
	}
	tail := logTail(logPath, 20)
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return ErrInterrupted
	case errors.As(waitErr, &ee) && ee.ExitCode() == scriptInvalid:
		return &InputError{Err: fmt.Errorf("the evaluation refused its input:\n%s", tail)}
	case errors.As(waitErr, &ee) && ee.ExitCode() == scriptInterrupted:
		return ErrInterrupted
	}
	return fmt.Errorf("the evaluation failed (%v):\n%s", waitErr, tail)
}

func logTail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(bytes.ToValidUTF8(b, []byte("?"))), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  | " + strings.Join(lines, "\n  | ")
}
