package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/run"
)

// ResumeAuto resumes from the newest complete checkpoint.
const ResumeAuto = "auto"

// LaunchOptions say how to launch a prepared run.
type LaunchOptions struct {
	Driver driver.Driver
	Python string
	// Resume is "" for a fresh run, ResumeAuto, or a checkpoint directory.
	Resume string
	// Force starts over a run id that already exists (its old directory is kept
	// aside under .superseded/, not deleted).
	Force bool
	// Detach marks a run whose controller returns right after the launch.
	Detach bool
	GPUs   []int
	GPU    *run.GPUInfo
	Env    map[string]string
	// PassEnv names secrets the trainer gets from the environment, by name only.
	PassEnv []string
	// ReadOnly are extra host paths the trainer reads (container drivers mount them).
	ReadOnly  []string
	DataCheck json.RawMessage
	Estimate  json.RawMessage
	Sweep     string
	// NprocPerNode, when > 0, fixes a distributed run's processes per node where its
	// config says auto (reproduce: the same world size as the original run).
	NprocPerNode int
	// TrainerArgs are appended to the trainer's command line (tests use it).
	TrainerArgs []string
	// NoCache computes the base model's evaluation afresh instead of reusing the one
	// another run with the same base model and eval set stored (--no-cache, reproduce).
	NoCache bool
}

// Errors Launch returns for runs that exist already.
var (
	ErrCompleted  = errors.New("run already completed")
	ErrExists     = errors.New("run already exists")
	ErrNoCheckpt  = errors.New("no complete checkpoint to resume from")
	ErrConfigDiff = errors.New("the resolved config changed since the run started")
	ErrActive     = errors.New("run is still active")
	ErrDamaged    = errors.New("the run's manifest cannot be read")
)

// Active is a launched run this controller drives.
type Active struct {
	Store    *run.Store
	Dir      string
	Manifest *run.Manifest
	Handle   *driver.Handle
	Driver   driver.Driver
	// ResumeFrom is the checkpoint this attempt resumed from, "" for a fresh start;
	// ResumeStep its step.
	ResumeFrom string
	ResumeStep int
	// Warnings are what the launch decided that the user must hear: checkpoints passed
	// over (and why), a trainer copy reinstalled. They are also the attempt's note.
	Warnings []string
	Started  time.Time
	// eventsOffset is where this attempt's events begin in events.jsonl.
	eventsOffset int64
	lock         *run.Lock

	// Notify, when set, receives what the controller does after the trainer ended
	// (the judge's calls), for the user.
	Notify func(msg string)
	// stopEval cancels the end-of-run evaluation's judge calls (StopEval).
	stopEval atomic.Pointer[context.CancelFunc]
}

// StopEval stops the end-of-run judge's calls (a Ctrl-C after training ended); the
// examples not yet judged count as judge errors.
func (a *Active) StopEval() {
	if c := a.stopEval.Load(); c != nil {
		(*c)()
	}
}

// Launch creates (or, when resuming, reopens) the run directory, records a new attempt
// in the manifest and starts the trainer through the driver. Every decision about an
// existing run is made under the run's lock, on the manifest as it is then.
func Launch(ctx context.Context, store *run.Store, p *Prepared, o LaunchOptions) (*Active, error) {
	dir := store.Dir(p.RunID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	reinstalled, err := ensureTrainer(trainerDir(dir, p))
	if err != nil {
		return nil, fmt.Errorf("install the trainer: %w", err)
	}
	lock, err := lockRun(dir)
	if err != nil {
		return nil, err
	}
	a := &Active{Store: store, Dir: dir, Driver: o.Driver, lock: lock}
	if reinstalled != "" {
		a.Warnings = append(a.Warnings, reinstalled)
	}
	ok := false
	defer func() {
		if !ok {
			a.lock.Unlock()
		}
	}()

	old, err := run.ReadManifest(dir)
	exists := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		if !o.Force || o.Resume != "" {
			return nil, fmt.Errorf("%s: %w (%v): start it over with --force (the old directory is kept under .superseded/)", p.RunID, ErrDamaged, err)
		}
		// --force starts over: the damaged run moves aside whole, nothing is deleted.
		if err := a.supersede(store, p.RunID); err != nil {
			return nil, err
		}
		a.Warnings = append(a.Warnings, fmt.Sprintf("the run's manifest.json was unreadable (%v); its directory was moved under .superseded/", err))
	}
	if !exists && o.Resume != "" {
		return nil, fmt.Errorf("%s: %w", p.RunID, run.ErrNoRun)
	}
	inPlace := false // a fresh attempt in the existing dir (nothing to resume from)
	if exists {
		_, hasCheckpoint, err := run.LatestComplete(dir)
		if err != nil {
			return nil, err
		}
		switch {
		case !old.State.Terminal() && stillActive(ctx, o.Driver, old):
			return nil, fmt.Errorf("%s: %w (state %s): stop it first with `loractl stop %s`", p.RunID, ErrActive, old.State, p.RunID)
		case o.Resume != "" && old.State == run.StateCompleted:
			return nil, fmt.Errorf("%s: %w", p.RunID, ErrCompleted)
		case o.Resume != "" && old.ConfigHash != p.ConfigHash:
			return nil, fmt.Errorf("%s: %w (resolved.json hash %.12s, now %.12s): start a new run instead", p.RunID, ErrConfigDiff, old.ConfigHash, p.ConfigHash)
		case o.Resume != "":
			// resume: checked below against the checkpoints
		case o.Force:
			if err := a.supersede(store, p.RunID); err != nil {
				return nil, err
			}
			exists = false
		case old.State == run.StateCompleted:
			return nil, fmt.Errorf("%s: %w (use --force to train it again)", p.RunID, ErrCompleted)
		case hasCheckpoint:
			return nil, fmt.Errorf("%s: %w (state %s, with checkpoints): continue it with --resume %s, or start over with --force", p.RunID, ErrExists, old.State, p.RunID)
		default:
			// Failed or stopped before its first checkpoint: nothing would be lost by
			// starting it again here, and refusing would leave only --force, which
			// also overrides the GPU pre-flight.
			inPlace = true
		}
	}

	var m *run.Manifest
	var note string
	switch {
	case exists && !inPlace:
		m = old
		if err := a.pickCheckpoint(o.Resume); err != nil {
			return nil, err
		}
		if err := repairResolved(dir, p); err != nil {
			return nil, err
		}
		if m.Trainer.SHA256 != p.Trainer.SHA256 {
			note = fmt.Sprintf("the trainer changed since the run started (sha256 %.12s, now %.12s)", m.Trainer.SHA256, p.Trainer.SHA256)
		}
	case inPlace:
		if err := writeRunFiles(dir, p); err != nil {
			return nil, err
		}
		m = old
		m.ConfigPath, m.Overrides, m.ConfigHash, m.Data, m.Trainer = p.Config.Path, p.Config.Overrides, p.ConfigHash, p.Data, p.Trainer
		note = "started again from the beginning: the previous attempt left no complete checkpoint"
	default:
		if err := writeRunFiles(dir, p); err != nil {
			return nil, err
		}
		m = newManifest(p, o.Driver.Name())
		m.CreatedAt = time.Now().UTC()
	}
	m.Driver = o.Driver.Name()
	if o.DataCheck != nil {
		m.DataCheck = o.DataCheck
	}
	if o.Estimate != nil {
		m.Estimate = o.Estimate
	}
	if o.GPU != nil {
		m.GPU = o.GPU
	}
	if o.Sweep != "" {
		m.Sweep = o.Sweep
	}
	a.Manifest = m

	// Every driver's trainer (or scheduler: Slurm opens train.log itself) writes these;
	// a link planted in their place would redirect the writes, so none is accepted.
	for _, name := range []string{run.LogFile, run.EventsFile, run.CheckpointsDir, run.AdapterDir} {
		if fi, err := os.Lstat(filepath.Join(dir, name)); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s %w", filepath.Join(dir, name), run.ErrSymlink)
		}
	}
	task := TaskFor(dir, p, o, a.ResumeFrom)
	a.eventsOffset = run.Size(filepath.Join(dir, run.EventsFile))
	a.Started = time.Now().UTC()
	m.State = run.StateRunning
	if m.StartedAt.IsZero() {
		m.StartedAt = a.Started
	}
	m.EndedAt, m.ExitCode, m.Error, m.Result = time.Time{}, nil, "", nil
	m.Attempts = append(m.Attempts, run.Attempt{N: len(m.Attempts) + 1, StartedAt: a.Started, ResumeFrom: a.ResumeFrom,
		State: run.StateRunning, Note: joinNotes(append([]string{note}, a.Warnings...)), EventsOffset: a.eventsOffset})
	recordImage(ctx, o.Driver, task, m)
	if sum, _ := p.Config.Spec.Driver.Sections["plugin"]["sha256"].(string); sum != "" {
		if m.DriverInfo == nil {
			m.DriverInfo = map[string]string{}
		}
		m.DriverInfo[run.PluginSHA256] = sum
	}
	start := o.Driver.Start
	if dd, ok := o.Driver.(driver.Detacher); ok && o.Detach {
		start = dd.StartDetached
	}
	h, err := start(ctx, task)
	if err != nil {
		m.State = run.StateFailed
		m.Error = err.Error()
		last := m.LastAttempt()
		last.State, last.EndedAt, last.Note = run.StateFailed, time.Now().UTC(), err.Error()
		_ = run.WriteManifest(dir, m)
		return nil, err
	}
	a.Handle = h
	m.Handle = h
	m.LastAttempt().HandleID = h.ID
	if st, err := o.Driver.Inspect(ctx, h); err == nil && st.State == driver.StatePending {
		m.State = run.StatePending
	}
	if err := run.WriteManifest(dir, m); err != nil {
		return nil, err
	}
	ok = true
	return a, nil
}

// pickCheckpoint chooses the checkpoint a resumed attempt continues from: the newest
// that verifies (every file's size and sha256 against its marker). Each newer one passed
// over is added to a.Warnings with the reason.
func (a *Active) pickCheckpoint(resume string) error {
	if resume == ResumeAuto {
		cp, skipped, found, err := run.ResumeCheckpoint(a.Dir)
		if err != nil {
			return err
		}
		for _, s := range skipped {
			a.Warnings = append(a.Warnings, fmt.Sprintf("checkpoint-%d is not used: %s", s.Step, s.Problem))
		}
		if !found {
			return fmt.Errorf("%s: %w; start it again with `loractl train CONFIG`%s", a.Dir, ErrNoCheckpt, problems(skipped))
		}
		if cp.Legacy {
			a.Warnings = append(a.Warnings, fmt.Sprintf("checkpoint-%d has a marker without a file list (saved by an older loractl): its required files are there and load", cp.Step))
		}
		if len(skipped) > 0 {
			a.Warnings = append(a.Warnings, fmt.Sprintf("resuming from checkpoint-%d, the newest checkpoint that verifies", cp.Step))
		}
		a.ResumeFrom, a.ResumeStep = cp.Path, cp.Step
		return nil
	}
	step, err := run.MarkerStep(resume)
	if err != nil {
		return fmt.Errorf("%s is not a complete checkpoint: %w", resume, err)
	}
	abs, _ := filepath.Abs(resume)
	a.ResumeFrom, a.ResumeStep = abs, step
	return nil
}

func joinNotes(notes []string) string {
	out := ""
	for _, n := range notes {
		if n == "" {
			continue
		}
		if out != "" {
			out += "; "
		}
		out += n
	}
	return out
}

func problems(cps []run.Checkpoint) string {
	s := ""
	for _, c := range cps {
		s += fmt.Sprintf("\n  checkpoint-%d: %s", c.Step, c.Problem)
	}
	return s
}

// TaskFor builds the driver task for run dir dir: the trainer from the store's trainer
// dir, reading only the run dir's resolved.json. resumeFrom is "" for a fresh start.
func TaskFor(dir string, p *Prepared, o LaunchOptions, resumeFrom string) *driver.Task {
	trainer := trainerDir(dir, p)
	cmd := []string{o.Python, filepath.Join(trainer, run.TrainerFile),
		"--config", filepath.Join(dir, run.ResolvedFile), "--run-dir", dir}
	if resumeFrom != "" {
		cmd = append(cmd, "--resume", resumeFrom)
	}
	cmd = append(cmd, o.TrainerArgs...)
	// No bytecode beside the trainer: the store's trainer copy holds only the verified sources.
	env := map[string]string{"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
	for k, v := range o.Env {
		env[k] = v
	}
	var cacheDir string
	if !o.NoCache {
		cacheDir = run.BaseEvalCacheDir(filepath.Dir(dir))
		env[run.BaseEvalCacheEnv] = cacheDir
	}
	readOnly := []string{p.Config.Resolved.Data.Train}
	if p.Config.Resolved.Data.Eval != "" {
		readOnly = append(readOnly, p.Config.Resolved.Data.Eval)
	}
	if filepath.IsAbs(p.Config.Resolved.Model.NameOrPath) {
		readOnly = append(readOnly, p.Config.Resolved.Model.NameOrPath)
	}
	readOnly = append(readOnly, trainer)
	readOnly = append(readOnly, o.ReadOnly...)
	task := &driver.Task{
		RunID:    p.RunID,
		RunDir:   dir,
		Command:  cmd,
		Env:      env,
		PassEnv:  o.PassEnv,
		ReadOnly: readOnly,
		GPUs:     o.GPUs,
		LogPath:  filepath.Join(dir, run.LogFile),
		Options:  p.Config.DriverOptions,
		CacheDir: cacheDir,
	}
	distributedTask(task, p.Config.Resolved.Distributed, p.Config.DriverName, o.GPUs, o.NprocPerNode)
	return task
}

// stillActive asks the driver whether an unfinished run's trainer is still there. Only
// a clean answer that it ended (or that the driver no longer knows it) counts as
// inactive: on a transient error (squeue timing out) starting over could leave two
// trainers writing one run dir.
func stillActive(ctx context.Context, d driver.Driver, m *run.Manifest) bool {
	if m.Handle == nil || d == nil {
		return false
	}
	if m.Handle.Driver != d.Name() {
		return true // another driver's trainer: we cannot tell, so do not touch it
	}
	st, err := d.Inspect(ctx, m.Handle)
	if errors.Is(err, driver.ErrTaskNotFound) {
		return false
	}
	return err != nil || st.State == driver.StateRunning || st.State == driver.StatePending
}

// lockRun takes the run's lock, waiting briefly: `loractl runs` and `logs -f` hold it
// for a moment while they refresh a detached run's manifest.
func lockRun(dir string) (*run.Lock, error) {
	deadline := time.Now().Add(3 * time.Second)
	for {
		l, err := run.LockDir(dir)
		if err == nil || !errors.Is(err, run.ErrLocked) || time.Now().After(deadline) {
			return l, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// supersede moves an existing run dir aside, so --force never destroys a run, and
// takes the lock of the fresh dir that replaces it.
func (a *Active) supersede(store *run.Store, id string) error {
	aside := filepath.Join(store.Base, ".superseded")
	if err := os.MkdirAll(aside, 0o755); err != nil {
		return err
	}
	if err := os.Rename(a.Dir, filepath.Join(aside, id+"-"+time.Now().UTC().Format("20060102T150405.000000000"))); err != nil {
		return err
	}
	a.lock.Unlock() // the lock moved aside with the old dir
	if err := os.MkdirAll(a.Dir, 0o755); err != nil {
		return err
	}
	l, err := run.LockDir(a.Dir)
	if err != nil {
		return err
	}
	a.lock = l
	return nil
}

// recordImage writes the image a container driver runs the task in, and its digest,
// into the manifest, so the run can be repeated in the same image.
func recordImage(ctx context.Context, d driver.Driver, task *driver.Task, m *run.Manifest) {
	ir, ok := d.(driver.ImageReporter)
	if !ok || !d.Capabilities().Image {
		return
	}
	image, digest, err := ir.TaskImage(ctx, task)
	if image == "" && err != nil {
		return
	}
	if m.DriverInfo == nil {
		m.DriverInfo = map[string]string{}
	}
	m.DriverInfo["image"] = image
	if digest != "" {
		m.DriverInfo["image_digest"] = digest
	}
}
