package slurm

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/loractl/loractl/driver"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the rendering (go test -update rewrites it):\n--- got\n%s", path, got)
	}
}

// hostile holds values that would run a command if any reached the shell unquoted.
var hostile = []string{
	"$(touch PWNED)",
	"`touch PWNED`",
	"'; touch PWNED; '",
	"\"; touch PWNED; \"",
	"x\ntouch PWNED\n",
	"a; touch PWNED",
	"${IFS}touch${IFS}PWNED",
	"\\'$(touch PWNED)",
}

func baseTask(runDir string, opts string) *driver.Task {
	return &driver.Task{
		RunID:   "quickstart-1a2b3c4d",
		RunDir:  runDir,
		Command: []string{"/opt/venv/bin/python", "/opt/loractl/train_lora.py", "--config", runDir + "/resolved.json", "--run-dir", runDir},
		LogPath: runDir + "/train.log",
		Options: json.RawMessage(opts),
	}
}

func TestRenderGolden(t *testing.T) {
	const dir = "/shared/runs/quickstart-1a2b3c4d"
	tests := []struct {
		name   string
		task   *driver.Task
		golden string
	}{
		{"minimal", baseTask(dir, ``), "minimal.sbatch"},
		{"full", func() *driver.Task {
			tk := baseTask(dir, `{
				"partition": "gpu", "account": "proj-42", "qos": "high", "time": "2-00:00:00",
				"gpus": "a100:2", "cpus_per_task": 16, "mem": "128G", "constraint": "a100&ib",
				"nodelist": "node[01-04]", "exclude": "node03",
				"extra_directives": ["mail-type=END,FAIL", "--mail-user=me@example.org", "--exclusive"],
				"setup": ["module purge", "module load cuda/12.1 'gcc/12 extra'", "export HF_HOME=/scratch/hf"],
				"python": "/shared/venv/bin/python", "signal_grace": 600, "max_requeues": 5}`)
			tk.Command = append(tk.Command, "--resume", "/shared/runs/x/checkpoints/checkpoint-10")
			tk.Env = map[string]string{"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
			tk.PassEnv = []string{"WANDB_API_KEY", "HF_TOKEN"}
			return tk
		}(), "full.sbatch"},
		{"container", func() *driver.Task {
			tk := baseTask(dir, `{"container": {"image": "/shared/images/loractl.sif", "bind": ["/scratch"]}, "gpus": 1}`)
			tk.Command[0] = "python3"
			tk.ReadOnly = []string{"/shared/data", "/shared/models/tiny"}
			return tk
		}(), "container.sbatch"},
		{"gpus from task", func() *driver.Task {
			tk := baseTask(dir, `{}`)
			tk.GPUs = []int{0, 1, 2}
			return tk
		}(), "task-gpus.sbatch"},
		{"distributed", func() *driver.Task {
			tk := baseTask(dir, `{"partition": "gpu", "gpus": "a100:4", "time": "1-00:00:00"}`)
			tk.Distributed = &driver.Distributed{Nodes: 2, NprocPerNode: 0, Port: 29500, Strategy: "ddp"}
			tk.Env = map[string]string{"TORCH_ELASTIC_SHUTDOWN_TIMEOUT": "600", "NCCL_DEBUG": "WARN"}
			return tk
		}(), "distributed.sbatch"},
		{"distributed container", func() *driver.Task {
			tk := baseTask(dir, `{"container": {"image": "/shared/images/loractl.sif"}}`)
			tk.Distributed = &driver.Distributed{Nodes: 1, NprocPerNode: 2, Port: 29600, Strategy: "fsdp"}
			return tk
		}(), "distributed-container.sbatch"},
		{"hostile", func() *driver.Task {
			tk := baseTask(dir, `{"setup": ["echo 'a;b' \"c|d\""], "partition": "gpu"}`)
			tk.RunID = "run$(touch PWNED)\n#SBATCH --uid=0"
			tk.Env = map[string]string{}
			for i, v := range hostile {
				tk.Env["HOSTILE_"+string(rune('A'+i))] = v
				tk.Command = append(tk.Command, v)
			}
			tk.PassEnv = []string{"HF_TOKEN"}
			return tk
		}(), "hostile.sbatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := New().Render(tc.task)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			golden(t, tc.golden, got)
			if tc.name == "hostile" {
				// The only #SBATCH lines are loractl's own and the validated partition.
				for _, line := range strings.Split(string(got), "\n") {
					if d, ok := strings.CutPrefix(line, "#SBATCH "); ok && strings.ContainsAny(d, "$`;'\" ") {
						t.Errorf("directive %q holds shell or quote characters", line)
					}
				}
			}
		})
	}
}

func TestRenderRejects(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*driver.Task)
		msg    string
	}{
		{"run dir with space", func(tk *driver.Task) { tk.RunDir = "/shared/my runs/x" }, "run dir"},
		{"run dir with percent", func(tk *driver.Task) { tk.RunDir = "/shared/runs/%j" }, "run dir"},
		{"run dir with newline", func(tk *driver.Task) { tk.RunDir = "/shared/runs/x\n#SBATCH --uid=0" }, "run dir"},
		{"relative run dir", func(tk *driver.Task) { tk.RunDir = "runs/x" }, "run dir"},
		{"empty command", func(tk *driver.Task) { tk.Command = nil }, "trainer command"},
		{"env name", func(tk *driver.Task) { tk.Env = map[string]string{"A;B": "x"} }, "environment variable name"},
		{"pass env name", func(tk *driver.Task) { tk.PassEnv = []string{"$(id)"} }, "pass_env"},
		{"nul in argument", func(tk *driver.Task) { tk.Command = append(tk.Command, "a\x00b") }, "NUL"},
		{"bad option", func(tk *driver.Task) { tk.Options = json.RawMessage(`{"qos": "a b"}`) }, "driver.slurm: qos"},
		{"container read-only with comma", func(tk *driver.Task) {
			tk.Options = json.RawMessage(`{"container": {"image": "/i.sif"}}`)
			tk.ReadOnly = []string{"/data/a,b"}
		}, "cannot be bound"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tk := baseTask("/shared/runs/x", "")
			tc.mutate(tk)
			if _, err := New().Render(tk); err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Render = %v, want an error about %q", err, tc.msg)
			}
		})
	}
}

func TestRenderArrayGolden(t *testing.T) {
	var tasks []*driver.Task
	for _, id := range []string{"sweep-r8", "sweep-r16", "sweep-r32"} {
		tk := baseTask("/shared/runs/"+id, `{"partition": "gpu", "gpus": 1, "time": "4:00:00"}`)
		tk.RunID = id
		tasks = append(tasks, tk)
	}
	script, path, err := New().RenderArray(tasks, 2)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(path) != "/shared/runs" || !strings.HasSuffix(path, ".sbatch") {
		t.Errorf("array script path %s, want a .sbatch file in /shared/runs", path)
	}
	golden(t, "array.sbatch", script)

	tasks[1].Options = json.RawMessage(`{"partition": "cpu", "gpus": 1, "time": "4:00:00"}`)
	if _, _, err := New().RenderArray(tasks, 2); err == nil || !strings.Contains(err.Error(), "different resources") {
		t.Errorf("RenderArray with differing partitions = %v, want a refusal", err)
	}
}

// plainRunDir is a scratch run dir whose path the batch script accepts (no space or
// '%', which Slurm's --output would expand): under /tmp, whatever TMPDIR holds.
func plainRunDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "loractl-slurm-rundir-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestHostileScriptRunsNothing executes the rendered hostile script with bash, outside
// Slurm (the #SBATCH lines are comments to bash), in a scratch run dir. The trainer is a
// recorder that writes its argv and environment; nothing may create PWNED, and the
// recorder must see every hostile value byte for byte.
func TestHostileScriptRunsNothing(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	runDir := plainRunDir(t)
	recorder := filepath.Join(runDir, "recorder.sh")
	err := os.WriteFile(recorder, []byte(`#!/bin/sh
for a in "$@"; do printf '%s\0' "$a"; done >"$PWD/argv"
env -0 >"$PWD/env"
exit 0
`), 0o755)
	if err != nil {
		t.Fatal(err)
	}
	tk := baseTask(runDir, `{"setup": ["echo 'a;b' \"c|d\" $(x)"]}`)
	if _, err := New().Render(tk); err == nil {
		t.Fatal("a setup line with $( ) was accepted")
	}
	tk = baseTask(runDir, `{"setup": ["echo 'a;b' \"c|d\""]}`)
	tk.Command = []string{"/bin/sh", recorder}
	tk.Env = map[string]string{}
	for i, v := range hostile {
		tk.Env["HOSTILE_"+string(rune('A'+i))] = v
		tk.Command = append(tk.Command, v)
	}
	script, err := New().Render(tk)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(runDir, ScriptName)
	if err := os.WriteFile(path, script, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", path)
	cmd.Dir = runDir
	cmd.Env = append(os.Environ(), "SLURM_JOB_ID=7", "SLURMD_NODENAME=node$(touch PWNED)")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("script failed: %v\n%s", err, out)
	}
	for _, dir := range []string{runDir, "."} {
		if _, err := os.Stat(filepath.Join(dir, "PWNED")); err == nil {
			t.Fatalf("a hostile value ran a command (PWNED exists in %s)", dir)
		}
	}
	if !strings.Contains(string(out), "a;b c|d") {
		t.Errorf("the setup line did not run as one echo with two words:\n%s", out)
	}
	argv, err := os.ReadFile(filepath.Join(runDir, "argv"))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join(append(append([]string{}, hostile...), "--resume", "auto"), "\x00") + "\x00"
	if string(argv) != want {
		t.Errorf("trainer argv = %q, want %q", argv, want)
	}
	env, _ := os.ReadFile(filepath.Join(runDir, "env"))
	for i, v := range hostile {
		if !bytes.Contains(env, []byte("HOSTILE_"+string(rune('A'+i))+"="+v+"\x00")) {
			t.Errorf("trainer environment lacks HOSTILE_%c=%q", 'A'+i, v)
		}
	}
	as, err := ReadAttempts(runDir)
	if err != nil || len(as) != 1 || as[0].JobID != "7" || as[0].Node != "nodetouchPWNED" || as[0].ExitCode == nil || *as[0].ExitCode != 0 {
		t.Errorf("attempts = %+v, %v; want one attempt of job 7 that exited 0, node name stripped", as, err)
	}
}

// TestMissingSlurmCommands: on a host without Slurm's commands the error says so.
func TestMissingSlurmCommands(t *testing.T) {
	runDir := plainRunDir(t)
	d := &Driver{Bin: t.TempDir()}
	_, err := d.Start(t.Context(), baseTask(runDir, ""))
	if err == nil || !strings.Contains(err.Error(), "sbatch is not installed here") {
		t.Errorf("Start without sbatch = %v, want an error saying sbatch is not installed", err)
	}
	if _, err := os.Stat(filepath.Join(runDir, ScriptName)); err != nil {
		t.Errorf("the batch script was not written before submitting: %v", err)
	}
}

// Every variable the batch script assigns is in scriptVars, so an env.set name can
// never redirect the requeue or the attempt record.
func TestScriptVarsCoverTheScript(t *testing.T) {
	assigns := []*regexp.Regexp{
		regexp.MustCompile(`^\s*(?:local\s+)?([a-z_][a-z0-9_]*)=`),
		regexp.MustCompile(`^\s*local\s+(?:[a-z_][a-z0-9_]*(?:=\S*)?\s+)*([a-z_][a-z0-9_]*)\s*$`),
		regexp.MustCompile(`printf -v ([a-z_][a-z0-9_]*)`),
		regexp.MustCompile(`^\s*for ([a-z_][a-z0-9_]*) in`),
	}
	for _, name := range []string{"full.sbatch", "array.sbatch", "minimal.sbatch", "distributed.sbatch"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			for _, re := range assigns {
				if m := re.FindStringSubmatch(line); m != nil && !scriptVars[m[1]] {
					t.Errorf("%s assigns %q, which scriptVars does not reserve: %q", name, m[1], line)
				}
			}
		}
	}
	task := &driver.Task{RunDir: "/r/x", Command: []string{"python", "t.py"}, Env: map[string]string{"job_id": "12345"}}
	if _, err := (&Driver{}).Render(task); err == nil || !strings.Contains(err.Error(), "used by the batch script") {
		t.Fatalf("env.set job_id accepted: %v", err)
	}
}
