package container

import (
	"bytes"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/loractl/loractl/driver"
)

// launchScript runs the trainer inside the container with its stdout and stderr
// appended to the run dir's train.log. The log path and the trainer's argv arrive as
// positional parameters ("$1", then "$@"), so no value is ever spliced into shell text
// and nothing needs quoting. Writing the log from inside the container (rather than
// copying `docker logs -f` from the controller) keeps train.log complete when the
// controller exits, reattaches from another process, or never watched at all; the file
// belongs to the container's --user like every other file in the run dir. `exec`
// leaves no shell between the init and the trainer, so signals reach the trainer.
const launchScript = `log=$1; shift; exec "$@" >>"$log" 2>&1`

// scriptName is $0 of the launch script: what `ps` shows for it until the exec.
const scriptName = "loractl-trainer"

// Label keys the driver puts on its containers, so `docker ps --filter label=...`
// finds loractl's trainers and the run each belongs to.
const (
	LabelRunID  = "io.loractl.run-id"
	LabelRunDir = "io.loractl.run-dir"
	LabelDriver = "io.loractl.driver"
)

// runIDRe is what a run id must look like to name a container: the engines accept
// [a-zA-Z0-9][a-zA-Z0-9_.-]* as container names.
var runIDRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// ContainerName is the container name for a run id.
func ContainerName(runID string) string { return "loractl-" + runID }

// invoker is who runs the controller; it decides the default --user and, for rootless
// podman, the user namespace.
type invoker struct{ uid, gid int }

// runArgs builds the engine argv after the binary ("run", "-d", ...) for a task.
// It is pure: no file system or engine access, so Render shows exactly what Start runs.
func runArgs(engine Engine, o *Options, task *driver.Task, who invoker) ([]string, error) {
	if err := o.checkEngine(engine); err != nil {
		return nil, err
	}
	if err := checkTask(task); err != nil {
		return nil, err
	}
	runDir := filepath.Clean(task.RunDir)
	logPath := task.LogPath
	if logPath == "" {
		logPath = filepath.Join(runDir, "train.log")
	}

	a := []string{"run", "--detach", "--name", ContainerName(task.RunID)}
	a = append(a,
		"--label", LabelRunID+"="+task.RunID,
		"--label", LabelRunDir+"="+runDir,
		"--label", LabelDriver+"="+string(engine),
	)
	if o.Pull != "" {
		a = append(a, "--pull", o.Pull)
	}
	if *o.Init {
		a = append(a, "--init")
		if o.InitPath != "" {
			a = append(a, "--init-path", o.InitPath)
		}
	}
	user := o.User
	if user == "" {
		user = fmt.Sprintf("%d:%d", who.uid, who.gid)
		// Rootless podman maps the invoking user to root inside the container; keep-id
		// maps it to itself, so the run dir's files keep the user's ownership.
		if engine == Podman && who.uid != 0 {
			a = append(a, "--userns", "keep-id")
		}
	}
	a = append(a, "--user", user)
	// The trainer needs no privilege: no capabilities, no setuid escalation, and never
	// --privileged (which would also expose every GPU on the host).
	a = append(a, "--cap-drop", "ALL", "--security-opt", "no-new-privileges")
	a = append(a, "--network", o.Network, "--shm-size", o.ShmSize)
	if o.Memory != "" {
		a = append(a, "--memory", o.Memory)
	}
	for _, u := range o.Ulimits {
		a = append(a, "--ulimit", u)
	}
	// Docker's `stop` and a daemon shutdown send the image's STOPSIGNAL; pin SIGTERM (the
	// trainer checkpoints on it) and give it the configured grace either way.
	a = append(a, "--stop-signal", "SIGTERM", "--stop-timeout", seconds(time.Duration(o.StopGrace)))
	gpuFlags, gpuEnv := gpuArgs(engine, o.GPURequest, task.GPUs)
	a = append(a, gpuFlags...)

	a = append(a, "--workdir", runDir)
	for _, m := range mounts(runDir, task.CacheDir, append(append([]string(nil), task.ReadOnly...), o.ReadOnly...)) {
		a = append(a, "--mount", m)
	}
	env, err := envArgs(task, o, gpuEnv)
	if err != nil {
		return nil, err
	}
	a = append(a, env...)

	a = append(a, o.Image, "sh", "-c", launchScript, scriptName, logPath, o.Python)
	return append(a, task.Command[1:]...), nil
}

// checkTask refuses tasks the container drivers cannot run faithfully.
func checkTask(task *driver.Task) error {
	if task == nil {
		return fmt.Errorf("nil task")
	}
	if !runIDRe.MatchString(task.RunID) || len(task.RunID) > 200 {
		return fmt.Errorf("run id %q cannot name a container (letters, digits, '_', '.', '-'; not starting with a punctuation mark)", task.RunID)
	}
	if len(task.Command) == 0 {
		return fmt.Errorf("empty command")
	}
	if err := checkMountPath(task.RunDir); err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	if task.CacheDir != "" {
		if err := checkMountPath(task.CacheDir); err != nil {
			return fmt.Errorf("cache dir: %w", err)
		}
	}
	for _, p := range task.ReadOnly {
		if err := checkMountPath(p); err != nil {
			return fmt.Errorf("read-only path: %w", err)
		}
	}
	if task.LogPath != "" {
		rel, err := filepath.Rel(filepath.Clean(task.RunDir), filepath.Clean(task.LogPath))
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
			// Only the run dir is writable inside the container.
			return fmt.Errorf("log path %q is not inside the run dir %q", task.LogPath, task.RunDir)
		}
	}
	for _, arg := range task.Command {
		if strings.ContainsRune(arg, 0) {
			return fmt.Errorf("command argument %q contains a NUL byte", arg)
		}
	}
	for _, g := range task.GPUs {
		if g < 0 {
			return fmt.Errorf("GPU index %d is negative", g)
		}
	}
	return nil
}

// gpuArgs requests exactly the task's GPUs, and returns the GPU variables the trainer
// must see. Inside the container the GPUs are numbered from 0, so CUDA_VISIBLE_DEVICES
// is rewritten. NVIDIA_VISIBLE_DEVICES is always set: CUDA base images carry
// NVIDIA_VISIBLE_DEVICES=all, and on hosts whose default runtime is nvidia that alone
// would hand the container every GPU. It names the requested devices for --gpus, and
// is "void" (no GPU from the nvidia runtime) with CDI, which injects devices itself,
// and for CPU runs.
func gpuArgs(engine Engine, request string, gpus []int) ([]string, map[string]string) {
	env := map[string]string{"NVIDIA_VISIBLE_DEVICES": "void"}
	if len(gpus) == 0 {
		return nil, env
	}
	if request == GPURequestAuto {
		request = GPURequestFlag
		if engine == Podman {
			request = GPURequestCDI
		}
	}
	ids := make([]string, len(gpus))
	inside := make([]string, len(gpus))
	for i, g := range gpus {
		ids[i] = strconv.Itoa(g)
		inside[i] = strconv.Itoa(i)
	}
	env["CUDA_VISIBLE_DEVICES"] = strings.Join(inside, ",")
	if request == GPURequestCDI {
		var a []string
		for _, id := range ids {
			a = append(a, "--device", "nvidia.com/gpu="+id)
		}
		return a, env
	}
	env["NVIDIA_VISIBLE_DEVICES"] = strings.Join(ids, ",")
	// --gpus is parsed as CSV: several devices need the value itself quoted.
	if len(ids) == 1 {
		return []string{"--gpus", "device=" + ids[0]}, env
	}
	return []string{"--gpus", `"device=` + strings.Join(ids, ",") + `"`}, env
}

// mounts bind-mounts the run dir and the shared cache dir (when there is one)
// read-write and every read-only path read-only, each at its host path so every path in
// resolved.json means the same inside. Duplicates and the run dir itself are dropped:
// the engines refuse two mounts on one target.
func mounts(runDir, cacheDir string, readOnly []string) []string {
	out := []string{"type=bind,source=" + runDir + ",target=" + runDir}
	seen := map[string]bool{runDir: true}
	if cacheDir != "" {
		cacheDir = filepath.Clean(cacheDir)
		out = append(out, "type=bind,source="+cacheDir+",target="+cacheDir)
		seen[cacheDir] = true
	}
	for _, p := range readOnly {
		p = filepath.Clean(p)
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, "type=bind,source="+p+",target="+p+",readonly")
	}
	return out
}

// envArgs passes the task's values as -e K=V and every secret by name only (-e NAME):
// the engine copies the value from the controller's environment, so it appears in no
// argv, script, manifest or log. HOME points at /tmp because the --user uid usually has
// no home in the image, and Python libraries write caches under it. gpuEnv (from
// gpuArgs) overrides the task's values: GPU visibility is the driver's to decide.
func envArgs(task *driver.Task, o *Options, gpuEnv map[string]string) ([]string, error) {
	vals := map[string]string{}
	if !slices.Contains(task.PassEnv, "HOME") && !slices.Contains(o.Env, "HOME") {
		vals["HOME"] = "/tmp"
	}
	for k, v := range task.Env {
		if !envName.MatchString(k) {
			return nil, fmt.Errorf("environment variable name %q is invalid", k)
		}
		if strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("environment variable %s contains a NUL byte", k)
		}
		vals[k] = v
	}
	delete(vals, "CUDA_VISIBLE_DEVICES")
	maps.Copy(vals, gpuEnv)
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var a []string
	for _, k := range keys {
		a = append(a, "--env", k+"="+vals[k])
	}
	seen := map[string]bool{}
	for _, name := range append(append([]string(nil), task.PassEnv...), o.Env...) {
		if !envName.MatchString(name) {
			return nil, fmt.Errorf("pass-through variable name %q is invalid", name)
		}
		if seen[name] {
			continue
		}
		if _, ok := gpuEnv[name]; ok || name == "CUDA_VISIBLE_DEVICES" {
			return nil, fmt.Errorf("variable %s cannot be passed through: the driver sets GPU visibility", name)
		}
		if _, ok := vals[name]; ok {
			return nil, fmt.Errorf("variable %s is both set and passed through by name", name)
		}
		seen[name] = true
		a = append(a, "--env", name)
	}
	return a, nil
}

// shellQuote quotes one argument for a POSIX shell; safe words pass unchanged.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:@,%+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// renderArgv prints an argv as a shell command a user can paste: one option (with its
// value) per line, continued with backslashes, every word shell-quoted.
func renderArgv(argv []string) []byte {
	var b bytes.Buffer
	i := 0
	line := func(words ...string) {
		if i > 0 {
			b.WriteString(" \\\n  ")
		}
		for j, w := range words {
			if j > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(shellQuote(w))
		}
		i++
	}
	// binary and subcommand, then flag/value pairs until the image, then the command.
	line(argv[0], argv[1])
	k := 2
	for k < len(argv) && strings.HasPrefix(argv[k], "-") {
		if takesValue(argv[k]) && k+1 < len(argv) {
			line(argv[k], argv[k+1])
			k += 2
			continue
		}
		line(argv[k])
		k++
	}
	if k < len(argv) {
		line(argv[k]) // image
		k++
	}
	if k+2 < len(argv) && argv[k] == "sh" && argv[k+1] == "-c" {
		line(argv[k], argv[k+1], argv[k+2])
		k += 3
	}
	if k < len(argv) {
		line(argv[k:]...)
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// takesValue reports whether an engine run flag is followed by a separate value.
func takesValue(flag string) bool {
	switch flag {
	case "--detach", "--init", "-d":
		return false
	}
	return !strings.Contains(flag, "=")
}
