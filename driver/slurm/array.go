package slurm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/loractl/loractl/driver"
)

// StartArray submits tasks as one job array, --array=0-(N-1)%maxParallel (no cap when
// maxParallel <= 0). Each task's own batch script is written into its run dir as for
// Start; a small dispatcher script, written next to the run dirs, picks the run dir by
// SLURM_ARRAY_TASK_ID, sends the task's output to that run's train.log and runs its
// script. The resource options must be the same for every task (one array, one
// request). Handle i belongs to tasks[i].
func (d *Driver) StartArray(ctx context.Context, tasks []*driver.Task, maxParallel int) ([]*driver.Handle, error) {
	r, err := renderArray(tasks, maxParallel)
	if err != nil {
		return nil, err
	}
	for i, t := range tasks {
		if err := writeFileAtomic(filepath.Join(t.RunDir, ScriptName), r.scripts[i], 0o755); err != nil {
			return nil, fmt.Errorf("slurm: failed to write the batch script of %s: %w", t.RunID, err)
		}
	}
	if err := writeFileAtomic(r.path, r.array, 0o755); err != nil {
		return nil, fmt.Errorf("slurm: failed to write the array script: %w", err)
	}
	h, err := d.submit(ctx, r.dir, r.path, nil)
	if err != nil {
		return nil, err
	}
	s, err := decodeHandle(h)
	if err != nil {
		return nil, err
	}
	handles := make([]*driver.Handle, len(tasks))
	for i, t := range tasks {
		ts := *s
		ts.ArrayTaskID = &i
		ts.RunDir = t.RunDir
		ts.Script = filepath.Join(t.RunDir, ScriptName)
		if handles[i], err = newHandle(&ts); err != nil {
			return nil, err
		}
	}
	return handles, nil
}

// RenderArray returns the dispatcher script StartArray would submit for tasks and the
// path it would be written to, without writing anything.
func (d *Driver) RenderArray(tasks []*driver.Task, maxParallel int) (script []byte, path string, err error) {
	r, err := renderArray(tasks, maxParallel)
	if err != nil {
		return nil, "", err
	}
	return r.array, r.path, nil
}

// arrayRender is everything StartArray writes: each task's own script and the
// dispatcher at path, in dir.
type arrayRender struct {
	scripts   [][]byte
	array     []byte
	dir, path string
}

// renderArray validates the tasks and renders their scripts and the dispatcher.
func renderArray(tasks []*driver.Task, maxParallel int) (*arrayRender, error) {
	if len(tasks) == 0 {
		return nil, fmt.Errorf("slurm: empty job array")
	}
	opts := make([]Options, len(tasks))
	var request []string
	for i, t := range tasks {
		o, err := prepare(t)
		if err != nil {
			return nil, fmt.Errorf("slurm: array task %d (%s): %w", i, t.RunID, err)
		}
		opts[i] = o
		req := append(directives(t, &o), fmt.Sprint("signal:", o.SignalGrace))
		if i == 0 {
			request = req
		} else if !slices.Equal(req, request) {
			return nil, fmt.Errorf("slurm: array task %d (%s) asks for different resources than task 0 (%s); one array has one request",
				i, t.RunID, tasks[0].RunID)
		}
	}
	dir := commonDir(tasks)
	sum := sha256.New()
	for _, t := range tasks {
		fmt.Fprintln(sum, t.RunDir)
	}
	tag := "slurm-array-" + hex.EncodeToString(sum.Sum(nil))[:10]

	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("#!/bin/bash\n")
	w("# loractl job array of %d runs (rendered by loractl; edits are overwritten).\n", len(tasks))
	w("# Each task runs RUN_DIR/%s of its run; output goes to that run's train.log.\n", ScriptName)
	w("#SBATCH --job-name=loractl-array\n")
	w("#SBATCH --output=%s/%s-%%a.log\n", dir, tag)
	w("#SBATCH --open-mode=append\n")
	w("#SBATCH --chdir=%s\n", dir)
	w("#SBATCH --requeue\n")
	w("#SBATCH --signal=B:USR1@%d\n", opts[0].SignalGrace)
	w("#SBATCH --export=ALL\n")
	if maxParallel > 0 {
		w("#SBATCH --array=0-%d%%%d\n", len(tasks)-1, maxParallel)
	} else {
		w("#SBATCH --array=0-%d\n", len(tasks)-1)
	}
	for _, x := range directives(tasks[0], &opts[0]) {
		w("#SBATCH %s\n", x)
	}
	w("\ncase \"${SLURM_ARRAY_TASK_ID:-}\" in\n")
	for i, t := range tasks {
		w("  %d) run_dir=%s ;;\n", i, shellQuote(t.RunDir))
	}
	w("  *) echo \"loractl: no run for array task ${SLURM_ARRAY_TASK_ID:-(unset)}\" >&2; exit 1 ;;\n")
	w("esac\n")
	w("exec >>\"$run_dir/train.log\" 2>&1\n")
	w("exec /bin/bash \"$run_dir/%s\"\n", ScriptName)

	r := &arrayRender{array: []byte(b.String()), dir: dir, path: filepath.Join(dir, tag+".sbatch")}
	for i, t := range tasks {
		r.scripts = append(r.scripts, renderScript(t, &opts[i]))
	}
	return r, nil
}

// commonDir is the deepest directory holding every task's run dir (the runs dir of a
// sweep). Run dirs passed prepare, so the result is a safe absolute path.
func commonDir(tasks []*driver.Task) string {
	dir := filepath.Dir(filepath.Clean(tasks[0].RunDir))
	for _, t := range tasks[1:] {
		for dir != "/" && !strings.HasPrefix(filepath.Clean(t.RunDir)+"/", dir+"/") {
			dir = filepath.Dir(dir)
		}
	}
	return dir
}
