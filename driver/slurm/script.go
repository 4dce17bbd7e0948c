package slurm

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/loractl/loractl/driver"
)

// File names inside the run directory.
const (
	// ScriptName is the rendered batch script.
	ScriptName = "slurm.sbatch"
	// AttemptsName is the file the batch script appends one line to at the start and
	// at the end of every attempt.
	AttemptsName = "attempts.jsonl"
	// ExitInterrupted is the trainer's exit code after saving a checkpoint on a signal.
	ExitInterrupted = driver.TrainerExitInterrupted
)

var (
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// Run dirs appear in #SBATCH lines, which sbatch parses itself and where % starts a
	// file name pattern, so they are restricted rather than quoted.
	runDirRE  = regexp.MustCompile(`^/[A-Za-z0-9_./+@,=-]*$`)
	jobNameRE = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)
	// Container bind paths: apptainer splits --bind on , and :.
	bindPathRE = regexp.MustCompile(`^/[A-Za-z0-9_./+@=-]*$`)
)

// shellQuote single-quotes s for bash: inside single quotes nothing is special, and
// a quote itself is written as close-quote, backslash-quote, reopen. Newlines stay
// literal data.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// quoteWords quotes each word and joins them with spaces.
func quoteWords(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = shellQuote(w)
	}
	return strings.Join(q, " ")
}

// checkTask validates the parts of a task that reach the script unquoted or that the
// script cannot carry (NUL bytes).
// scriptVars are the shell variables the batch script sets for itself; an env.set
// name among them would be overwritten by (or overwrite) the script's own value.
// TestScriptVarsCoverTheScript keeps the list in step with the template.
var scriptVars = map[string]bool{
	"again": true, "array_job_id": true, "array_task_id": true, "child": true, "extra": true,
	"got": true, "job_id": true, "max_requeues": true, "node": true, "now": true, "rc": true,
	"requeued": true, "restarts": true, "run_dir": true, "trainer": true,
	// distributed jobs (distributed.go)
	"head_node": true, "rdzv_port": true, "ev_start": true, "status": true,
}

func checkTask(t *driver.Task) error {
	if t == nil {
		return fmt.Errorf("nil task")
	}
	if !runDirRE.MatchString(t.RunDir) {
		return fmt.Errorf("run dir %q: the slurm driver needs an absolute path of letters, digits and _ . / + @ , = - (no spaces, quotes or %%); choose another --runs-dir", t.RunDir)
	}
	if len(t.Command) < 2 {
		return fmt.Errorf("trainer command %q: want the interpreter and the trainer script", t.Command)
	}
	for k, v := range t.Env {
		if !envNameRE.MatchString(k) {
			return fmt.Errorf("environment variable name %q is not valid", k)
		}
		if scriptVars[k] {
			return fmt.Errorf("environment variable name %q is used by the batch script itself (it would redirect the requeue and the attempt record); choose another name", k)
		}
		if strings.ContainsRune(v, 0) {
			return fmt.Errorf("environment variable %s holds a NUL byte", k)
		}
	}
	for _, n := range t.PassEnv {
		if !envNameRE.MatchString(n) {
			return fmt.Errorf("pass_env name %q is not a valid environment variable name", n)
		}
	}
	for _, a := range t.Command {
		if strings.ContainsRune(a, 0) {
			return fmt.Errorf("trainer argument %q holds a NUL byte", a)
		}
	}
	return nil
}

// trainerArgv is the trainer's argv on the node: the configured interpreter, any
// --resume from the controller replaced by --resume auto so every attempt (the first,
// and each requeued one) resumes from the newest complete checkpoint by itself.
func trainerArgv(t *driver.Task, o *Options) []string {
	argv := []string{t.Command[0]}
	if o.Python != "" {
		argv[0] = o.Python
	}
	rest := t.Command[1:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--resume" {
			i++
			continue
		}
		if strings.HasPrefix(a, "--resume=") {
			continue
		}
		argv = append(argv, a)
	}
	argv = append(argv, "--resume", "auto")
	if c := o.Container; c != nil {
		wrap := []string{c.Runtime, "exec", "--nv"}
		for _, b := range containerBinds(t, c) {
			wrap = append(wrap, "--bind", b)
		}
		wrap = append(wrap, c.Image)
		argv = append(wrap, argv...)
	}
	return argv
}

// containerBinds are the run dir (read-write), the trainer script's directory and the
// task's inputs (read-only), then the user's extra binds, without duplicates.
func containerBinds(t *driver.Task, c *Container) []string {
	binds := []string{t.RunDir}
	add := func(b string) {
		if !slices.Contains(binds, b) {
			binds = append(binds, b)
		}
	}
	if s := t.Command[1]; filepath.IsAbs(s) && !strings.HasPrefix(s, t.RunDir+"/") {
		add(filepath.Dir(s) + ":" + filepath.Dir(s) + ":ro")
	}
	for _, p := range t.ReadOnly {
		add(p + ":" + p + ":ro")
	}
	for _, b := range c.Bind {
		add(b)
	}
	return binds
}

// timeSeconds converts a Slurm time limit to seconds (0 for none or unlimited).
func timeSeconds(s string) int {
	if s == "" || s == "UNLIMITED" || s == "INFINITE" {
		return 0
	}
	days := 0
	if d, rest, ok := strings.Cut(s, "-"); ok {
		days, _ = strconv.Atoi(d)
		// D-HH, D-HH:MM, D-HH:MM:SS: hours come first.
		parts := strings.Split(rest, ":")
		secs := days * 86400
		mult := []int{3600, 60, 1}
		if len(parts) > len(mult) {
			return 0 // not a Slurm time ("0-00:00::"); Validate reports it
		}
		for i, p := range parts {
			n, _ := strconv.Atoi(p)
			secs += n * mult[i]
		}
		return secs
	}
	parts := strings.Split(s, ":")
	n := make([]int, len(parts))
	for i, p := range parts {
		n[i], _ = strconv.Atoi(p)
	}
	switch len(n) {
	case 1: // MM
		return n[0] * 60
	case 2: // MM:SS
		return n[0]*60 + n[1]
	case 3: // HH:MM:SS
		return n[0]*3600 + n[1]*60 + n[2]
	}
	return 0 // not a Slurm time; Validate reports it
}

// directives are the #SBATCH options from the options, in a fixed order.
func directives(t *driver.Task, o *Options) []string {
	d := []string{}
	add := func(name, val string) {
		if val != "" {
			d = append(d, "--"+name+"="+val)
		}
	}
	add("partition", o.Partition)
	add("account", o.Account)
	add("qos", o.QOS)
	add("time", o.Time)
	gpus := string(o.GPUs)
	if gpus == "" && len(t.GPUs) > 0 {
		gpus = strconv.Itoa(len(t.GPUs))
	}
	if t.Distributed != nil {
		k, _ := gpusPerNode(t.Distributed, o) // checked by prepare
		d = append(d, distributedDirectives(t.Distributed, o, k)...)
	} else if gpus != "" {
		add("gres", "gpu:"+gpus)
	}
	if o.CPUsPerTask > 0 {
		add("cpus-per-task", strconv.Itoa(o.CPUsPerTask))
	}
	add("mem", o.Mem)
	add("constraint", o.Constraint)
	add("nodelist", o.Nodelist)
	add("exclude", o.Exclude)
	for _, x := range o.ExtraDirectives {
		d = append(d, normalizeDirective(x))
	}
	return d
}

// jobName is "loractl-RUNID" with anything unusual replaced, at most 64 characters.
func jobName(runID string) string {
	n := "loractl-" + strings.Trim(jobNameRE.ReplaceAllString(runID, "_"), "_")
	if len(n) > 64 {
		n = n[:64]
	}
	return n
}

// prepare decodes, validates and defaults the task's options and checks the task.
func prepare(t *driver.Task) (Options, error) {
	if err := checkTask(t); err != nil {
		return Options{}, fmt.Errorf("slurm: %w", err)
	}
	op, err := DecodeOptions(t.Options)
	if err != nil {
		return Options{}, fmt.Errorf("driver.slurm: %w", err)
	}
	o := *op
	if t.Distributed != nil {
		if _, err := gpusPerNode(t.Distributed, &o); err != nil {
			return Options{}, fmt.Errorf("slurm: %w", err)
		}
	}
	if o.Container != nil {
		for _, p := range t.ReadOnly {
			if !bindPathRE.MatchString(p) {
				return Options{}, fmt.Errorf("slurm: read-only input %q cannot be bound into the container: use a path without spaces, commas or colons", p)
			}
		}
		if s := t.Command[1]; filepath.IsAbs(s) && !bindPathRE.MatchString(filepath.Dir(s)) {
			return Options{}, fmt.Errorf("slurm: trainer script %q cannot be bound into the container: use a path without spaces, commas or colons", s)
		}
	}
	return o, nil
}

// Render returns the batch script for task: what Start writes to RUN_DIR/slurm.sbatch.
func (d *Driver) Render(t *driver.Task) ([]byte, error) {
	o, err := prepare(t)
	if err != nil {
		return nil, err
	}
	return renderScript(t, &o), nil
}

// renderScript writes the batch script. Values reach the shell body only single-quoted;
// #SBATCH lines hold only values that passed Validate's patterns.
func renderScript(t *driver.Task, o *Options) []byte {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("#!/bin/bash\n")
	w("# loractl batch script for run %s (rendered by loractl; edits are overwritten).\n", jobNameRE.ReplaceAllString(t.RunID, "_"))
	w("# Every value from the run config below was validated or single-quoted when rendered.\n")
	w("# The run directory must be on a filesystem the compute nodes share.\n")
	if len(t.PassEnv) > 0 {
		names := slices.Clone(t.PassEnv)
		slices.Sort(names)
		w("# Secrets are not in this file: %s reach the job by name through sbatch's\n", strings.Join(names, " "))
		w("# environment export (--export=ALL) from the environment of the submitting shell.\n")
	}
	w("#SBATCH --job-name=%s\n", jobName(t.RunID))
	w("#SBATCH --output=%s/train.log\n", t.RunDir)
	w("#SBATCH --open-mode=append\n")
	w("#SBATCH --chdir=%s\n", t.RunDir)
	w("#SBATCH --requeue\n")
	w("#SBATCH --signal=B:USR1@%d\n", o.SignalGrace)
	w("#SBATCH --export=ALL\n")
	for _, d := range directives(t, o) {
		w("#SBATCH %s\n", d)
	}
	w("\nrun_dir=%s\n", shellQuote(t.RunDir))
	w("max_requeues=%d\n", *o.MaxRequeues)
	b.WriteString(scriptPrologue)
	if len(t.Env) > 0 {
		keys := make([]string, 0, len(t.Env))
		for k := range t.Env {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		w("\n")
		for _, k := range keys {
			w("export %s=%s\n", k, shellQuote(t.Env[k]))
		}
	}
	if len(o.Setup) > 0 {
		w("\n# Setup (driver.slurm.setup): one simple command per line, every word quoted.\n")
		for i, line := range o.Setup {
			words, _ := splitSetupLine(line) // validated by ParseOptions
			w("%s || fail_setup %d\n", quoteWords(words), i+1)
		}
	}
	w("\n# --resume auto: every attempt resumes from the newest complete checkpoint, if any.\n")
	if t.Distributed == nil {
		w("trainer=(%s)\n", quoteWords(trainerArgv(t, o)))
		b.WriteString(scriptBody)
		return []byte(b.String())
	}
	// One torchrun per node: the interpreter (in its container) runs torchrun, which
	// runs the trainer script.
	k, _ := gpusPerNode(t.Distributed, o)
	argv := trainerArgv(t, o)
	script := slices.Index(argv, t.Command[1]) // trainerArgv keeps the script path as given
	before, endpoint := torchrunArgs(t.Distributed, k)
	b.WriteString(distributedPrologue(t.Distributed))
	w("trainer=(%s %s %s %s)\n", quoteWords(argv[:script]), quoteWords(before), endpoint, quoteWords(argv[script:]))
	body := strings.Replace(scriptBody, "\"${trainer[@]}\" &\n", distributedEventsMark+distributedLaunch+"\n", 1)
	body = strings.Replace(body, "trap 'forward INT' INT", "trap 'forward TERM' INT", 1)
	body = strings.Replace(body, "\nrequeued=false\n", distributedOutcome+"\nrequeued=false\n", 1)
	b.WriteString(body)
	return []byte(b.String())
}

// scriptPrologue identifies the attempt and defines the helpers. Everything taken from
// Slurm's environment is stripped to the characters it can legitimately hold before it
// is written into attempts.jsonl.
const scriptPrologue = `
cd "$run_dir" || { echo "loractl: cannot enter the run directory $run_dir" >&2; exit 1; }

job_id=${SLURM_JOB_ID//[^0-9]/}
array_job_id=${SLURM_ARRAY_JOB_ID//[^0-9]/}
array_task_id=${SLURM_ARRAY_TASK_ID//[^0-9]/}
restarts=${SLURM_RESTART_COUNT:-0}
restarts=${restarts//[^0-9]/}
restarts=${restarts:-0}
node=${SLURMD_NODENAME:-$(hostname)}
node=${node//[^A-Za-z0-9._-]/}

# attempt start | attempt end CODE SIGNAL REQUEUED: one JSON line per event in
# attempts.jsonl, which loractl folds into the run's history.
# Builtins only (printf -v, %(...)T): at a time limit Slurm kills the job's processes,
# and a forked date or subshell could die and leave an empty field behind.
attempt() {
  local extra="" now
  TZ=UTC0 printf -v now '%(%Y-%m-%dT%H:%M:%SZ)T' -1
  if [ "$1" = end ]; then
    printf -v extra ',"exit_code":%d,"signal":"%s","requeued":%s' "$2" "$3" "$4"
  fi
  printf '{"event":"%s","time":"%s","job_id":"%s","array_job_id":"%s","array_task_id":"%s","restart_count":%d,"node":"%s"%s}\n' \
    "$1" "$now" "$job_id" "$array_job_id" "$array_task_id" "$restarts" "$node" "$extra" \
    >>"$run_dir/attempts.jsonl"
}

fail_setup() {
  echo "loractl: setup line $1 failed; the trainer was not started" >&2
  attempt end 1 "" false
  exit 1
}

echo "loractl: attempt $((restarts + 1)) of job $job_id on $node at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
attempt start
`

// scriptBody runs the trainer in the background so that the traps fire as soon as
// Slurm signals this shell (USR1 before the time limit, TERM on scancel or preemption)
// and forward the signal to the trainer, which saves a checkpoint and exits 75. After
// a USR1 checkpoint the job requeues itself; the next attempt runs this same script.
const scriptBody = `
got=""
child=""
forward() {
  got=$1
  if [ -n "$child" ]; then kill -s "$1" "$child" 2>/dev/null; fi
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM
trap 'forward INT' INT

# Without job control bash starts background commands with SIGINT ignored, and an
# ignored signal cannot be trapped again; set -m keeps INT deliverable to the trainer.
set -m
"${trainer[@]}" &
child=$!
set +m
# A signal that came before the trainer's pid was known is passed on now.
if [ -n "$got" ]; then kill -s "$got" "$child" 2>/dev/null; fi
# wait returns early whenever a trapped signal arrives: wait until the trainer is gone.
while :; do
  wait "$child"
  rc=$?
  kill -0 "$child" 2>/dev/null || break
done
# A trap that interrupted the last wait just as the trainer exited leaves rc at 128+N;
# bash remembers the real status of the reaped child.
if [ "$rc" -gt 128 ]; then
  wait "$child" 2>/dev/null
  again=$?
  if [ "$again" -ne 127 ]; then rc=$again; fi
fi

requeued=false
if [ "$rc" -eq 75 ] && [ "$got" = USR1 ]; then
  if [ "$restarts" -lt "$max_requeues" ]; then
    echo "loractl: checkpoint saved after USR1; requeueing job $job_id for attempt $((restarts + 2))"
    if scontrol requeue "$job_id"; then
      requeued=true
    else
      echo "loractl: scontrol requeue failed; resume the run with loractl train --resume" >&2
    fi
  else
    echo "loractl: checkpoint saved after USR1; not requeueing, max_requeues ($max_requeues) reached" >&2
  fi
fi
attempt end "$rc" "$got" "$requeued"
echo "loractl: trainer exited with status $rc at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
exit "$rc"
`
