// Package slurm is the Slurm driver: it renders a batch script into the run directory,
// submits it with sbatch, and tracks, signals and cancels the job with scontrol,
// scancel and sacct. The handle holds only the job id, so a new controller process can
// wait on, inspect or stop a job submitted by another.
//
// Preemption and time limits are survived inside the batch script: it is submitted with
// --requeue and --signal=B:USR1@GRACE, forwards USR1/TERM/INT to the trainer (which
// saves a complete checkpoint and exits 75), requeues itself after a USR1 checkpoint,
// and always starts the trainer with --resume auto, so each attempt continues from the
// newest complete checkpoint. Every attempt is appended to RUN_DIR/attempts.jsonl.
//
// Every Slurm command runs through exec with an argv, never a shell.
package slurm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/loractl/loractl/driver"
)

// Name is the driver's config name.
const Name = "slurm"

// Driver submits and controls Slurm jobs. The zero value is not usable: call New.
type Driver struct {
	// PollInterval is how often Wait and Stop ask the controller for the job's state.
	PollInterval time.Duration
	// Bin is a directory holding sbatch, scontrol, scancel and sacct; empty uses PATH.
	Bin string
	// Env is the environment of the Slurm commands (sbatch passes it to the job with
	// --export=ALL); nil means the controller's own environment.
	Env []string
}

// New returns a driver that polls every five seconds, gentle on a busy controller.
func New() *Driver { return &Driver{PollInterval: 5 * time.Second} }

var (
	_ driver.Driver           = (*Driver)(nil)
	_ driver.HistoryReader    = (*Driver)(nil)
	_ driver.OptionsValidator = (*Driver)(nil)
	_ driver.Renderer         = (*Driver)(nil)
	_ driver.ArraySubmitter   = (*Driver)(nil)
)

// Name returns "slurm".
func (d *Driver) Name() string { return Name }

// ValidateOptions implements driver.OptionsValidator.
func (d *Driver) ValidateOptions(raw json.RawMessage) error { _, err := DecodeOptions(raw); return err }

// Capabilities: jobs run on the cluster's nodes (their GPUs are Slurm's to allocate),
// sweeps submit job arrays, and srun starts torchrun on each node of a job.
func (d *Driver) Capabilities() driver.Capabilities {
	return driver.Capabilities{Arrays: true, MultiProcess: true}
}

// slurmError is a failed Slurm command with what it printed.
type slurmError struct {
	argv   []string
	err    error
	stderr string
}

func (e *slurmError) Error() string {
	msg := strings.TrimSpace(e.stderr)
	if msg == "" {
		msg = e.err.Error()
	}
	return fmt.Sprintf("%s: %s", strings.Join(e.argv, " "), msg)
}

func (e *slurmError) Unwrap() error { return e.err }

// run executes one Slurm command and returns its stdout.
func (d *Driver) run(ctx context.Context, name string, args ...string) (string, error) {
	return d.runIn(ctx, "", name, args...)
}

// clusterArgs targets the job's cluster when sbatch named one.
func clusterArgs(s *handleState) []string {
	if s.Cluster == "" {
		return nil
	}
	return []string{"--clusters=" + s.Cluster}
}

// writeFileAtomic writes data so a reader (sbatch, a requeued attempt) never sees half.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Start renders the batch script into RUN_DIR/slurm.sbatch and submits it. It returns
// once Slurm has accepted the job; the job may still be pending.
func (d *Driver) Start(ctx context.Context, t *driver.Task) (*driver.Handle, error) {
	o, err := prepare(t)
	if err != nil {
		return nil, err
	}
	script := filepath.Join(t.RunDir, ScriptName)
	if err := writeFileAtomic(script, renderScript(t, &o), 0o755); err != nil {
		return nil, fmt.Errorf("slurm: failed to write the batch script: %w", err)
	}
	return d.submit(ctx, t.RunDir, script, nil)
}

// submit runs sbatch --parsable on script and builds the handle.
func (d *Driver) submit(ctx context.Context, dir, script string, taskID *int) (*driver.Handle, error) {
	out, err := d.runIn(ctx, dir, "sbatch", "--parsable", script)
	if err != nil {
		return nil, fmt.Errorf("slurm: failed to submit: %w", err)
	}
	s, err := parseSubmit(out)
	if err != nil {
		return nil, err
	}
	s.RunDir, s.Script, s.SubmittedAt, s.ArrayTaskID = dir, script, time.Now().UTC().Truncate(time.Second), taskID
	return newHandle(s)
}

// runIn executes one Slurm command in dir (sbatch resolves relative paths against
// it; "" keeps the current directory) and returns its stdout.
func (d *Driver) runIn(ctx context.Context, dir, name string, args ...string) (string, error) {
	bin := name
	if d.Bin != "" {
		bin = filepath.Join(d.Bin, name)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env, cmd.Dir = d.Env, dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s is not installed here: run loractl where the Slurm commands are (a login node): %w", name, err)
		}
		return "", &slurmError{argv: append([]string{name}, args...), err: err, stderr: stderr.String()}
	}
	return stdout.String(), nil
}

// parseSubmit reads `sbatch --parsable` output: "JOBID" or "JOBID;CLUSTER".
func parseSubmit(out string) (*handleState, error) {
	line := strings.TrimSpace(out)
	if i := strings.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:] // sbatch may print warnings first
	}
	id, cluster, _ := strings.Cut(line, ";")
	if !jobIDRE.MatchString(id) || cluster != "" && !clusterRE.MatchString(cluster) {
		return nil, fmt.Errorf("slurm: unexpected sbatch output %q", out)
	}
	return &handleState{JobID: id, Cluster: cluster}, nil
}

// Inspect reports the job's state. It asks scontrol first; once the job has aged out
// of the controller (MinJobAge) it asks sacct: the accounting database where there is
// one, else the job-completion log (sacct -c).
func (d *Driver) Inspect(ctx context.Context, h *driver.Handle) (*driver.Status, error) {
	s, err := decodeHandle(h)
	if err != nil {
		return nil, err
	}
	ji, err := d.query(ctx, s)
	if err != nil {
		return nil, err
	}
	return toStatus(ji, lastAttempt(s.RunDir, ji.JobID)), nil
}

// query finds the job's record, falling back from scontrol to sacct.
func (d *Driver) query(ctx context.Context, s *handleState) (jobInfo, error) {
	args := append(clusterArgs(s), "-o", "show", "job", s.slurmID())
	out, err := d.run(ctx, "scontrol", args...)
	if err == nil {
		recs, perr := parseScontrol(out)
		if perr != nil {
			return jobInfo{}, perr
		}
		if len(recs) > 0 {
			return infoFromScontrol(pickRecord(recs, s.taskID())), nil
		}
	}
	if err != nil && !isInvalidJob(err) {
		return jobInfo{}, fmt.Errorf("slurm: %w", err)
	}
	return d.accounting(ctx, s)
}

// accounting asks sacct for a job the controller no longer knows: the accounting
// database where there is one, else the job-completion log (sacct -c).
func (d *Driver) accounting(ctx context.Context, s *handleState) (jobInfo, error) {
	// An array task's completion record is filed under its own job id, which the batch
	// script wrote into attempts.jsonl.
	id := s.slurmID()
	if s.ArrayTaskID != nil {
		if a := lastAttempt(s.RunDir, ""); a != nil && jobIDRE.MatchString(a.JobID) {
			id = a.JobID
		}
	}
	fields := []string{"-n", "-P", "-o", "JobID,State,ExitCode,Start,End", "-j", id}
	base := append(clusterArgs(s), fields...)
	if out, err := d.run(ctx, "sacct", append([]string{"-X"}, base...)...); err == nil {
		if ji, ok := parseSacct(out, id); ok {
			return ji, nil
		}
	}
	if out, err := d.run(ctx, "sacct", append([]string{"-c"}, base...)...); err == nil {
		if ji, ok := parseSacct(out, id); ok {
			return ji, nil
		}
	}
	return jobInfo{}, fmt.Errorf("slurm job %s: %w", s.slurmID(), driver.ErrTaskNotFound)
}

// isInvalidJob reports whether a Slurm command failed because the controller does not
// know the job (never existed, or aged out after MinJobAge).
func isInvalidJob(err error) bool {
	var se *slurmError
	return errors.As(err, &se) && strings.Contains(se.stderr, "Invalid job id")
}

// Wait polls until the job ends, through any number of requeues, and returns how it
// ended. A few failed polls in a row (the controller restarting) are tolerated.
func (d *Driver) Wait(ctx context.Context, h *driver.Handle) (*driver.ExitResult, error) {
	failures := 0
	for {
		st, err := d.Inspect(ctx, h)
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case err == nil:
			failures = 0
			if st.State == driver.StateExited {
				return st.Exit, nil
			}
		case errors.Is(err, driver.ErrTaskNotFound), errors.Is(err, driver.ErrHandleVersion):
			return nil, err
		default:
			if failures++; failures >= 5 {
				return nil, err
			}
		}
		if err := sleep(ctx, d.poll()); err != nil {
			return nil, err
		}
	}
}

func (d *Driver) poll() time.Duration {
	if d.PollInterval <= 0 {
		return 5 * time.Second
	}
	return d.PollInterval
}

func sleep(ctx context.Context, dur time.Duration) error {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// signals the driver delivers: the batch script traps USR1, TERM and INT and forwards
// them to the trainer; any other signal would end the script and orphan the trainer.
var signals = map[string]bool{"TERM": true, "INT": true, "USR1": true, "KILL": true}

// Signal delivers a signal to the batch script, which forwards it to the trainer.
// KILL goes to every process of the job at once.
func (d *Driver) Signal(ctx context.Context, h *driver.Handle, sig string) error {
	s, err := decodeHandle(h)
	if err != nil {
		return err
	}
	sig = strings.TrimPrefix(strings.ToUpper(sig), "SIG")
	if !signals[sig] {
		return fmt.Errorf("slurm: unsupported signal %q", sig)
	}
	// --batch reaches only the batch shell, so the trainer gets the signal once: from
	// the script's trap. Without it scancel signals job steps only, which we have none of.
	scope := "--batch"
	if sig == "KILL" {
		scope = "--full"
	}
	return d.scancel(ctx, s, scope, "--signal="+sig)
}

// scancel runs scancel on the job; an unknown job is driver.ErrTaskNotFound.
func (d *Driver) scancel(ctx context.Context, s *handleState, flags ...string) error {
	args := append(append(clusterArgs(s), flags...), s.slurmID())
	if _, err := d.run(ctx, "scancel", args...); err != nil {
		if isInvalidJob(err) {
			return fmt.Errorf("slurm job %s: %w", s.slurmID(), driver.ErrTaskNotFound)
		}
		return fmt.Errorf("slurm: failed to signal job %s: %w", s.slurmID(), err)
	}
	return nil
}

// Stop asks a running trainer to checkpoint and exit (TERM to the batch script, which
// forwards it and does not requeue), waits up to grace for the job to end, then kills
// every process of the job. A job that has not started (or waits to be requeued) is
// cancelled at once: it has nothing to save.
func (d *Driver) Stop(ctx context.Context, h *driver.Handle, grace time.Duration) error {
	s, err := decodeHandle(h)
	if err != nil {
		return err
	}
	st, err := d.Inspect(ctx, h)
	if err != nil {
		return err
	}
	switch st.State {
	case driver.StateExited:
		return nil
	case driver.StateRunning:
		if err := d.Signal(ctx, h, "TERM"); err != nil {
			break // it stopped running in between (requeued, ending): cancel it
		}
		deadline := time.Now().Add(grace)
		for time.Now().Before(deadline) {
			if err := sleep(ctx, min(d.poll(), time.Until(deadline))); err != nil {
				return err
			}
			if st, err := d.Inspect(ctx, h); err == nil && st.State == driver.StateExited {
				return nil
			}
		}
		if err := d.scancel(ctx, s, "--full", "--signal=KILL"); err == nil {
			return nil
		}
	}
	return d.scancel(ctx, s)
}
