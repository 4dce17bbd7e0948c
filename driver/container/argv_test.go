package container

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/loractl/loractl/driver"
)

// baseTask is a typical task; tests copy and change it.
func baseTask() *driver.Task {
	return &driver.Task{
		RunID:    "20261128-quick-ab12",
		RunDir:   "/runs/20261128-quick-ab12",
		Command:  []string{"/host/venv/bin/python", "/opt/loractl/train_lora.py", "--config", "/runs/20261128-quick-ab12/resolved.json", "--run-dir", "/runs/20261128-quick-ab12"},
		Env:      map[string]string{"HF_HUB_OFFLINE": "1"},
		PassEnv:  []string{"HF_TOKEN"},
		ReadOnly: []string{"/data", "/models/tiny"},
		LogPath:  "/runs/20261128-quick-ab12/train.log",
	}
}

func mustOptions(t *testing.T, js string) *Options {
	t.Helper()
	o, err := DecodeOptions(json.RawMessage(js))
	if err != nil {
		t.Fatalf("DecodeOptions(%s): %v", js, err)
	}
	return o
}

func TestRunArgsFull(t *testing.T) {
	o := mustOptions(t, `{"image":"loractl-trainer:1","stop_grace":"90s","memory":"32g","ulimits":["nofile=20000:20000"],"env":["WANDB_API_KEY"]}`)
	got, err := runArgs(Docker, o, baseTask(), invoker{1000, 100})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"run", "--detach", "--name", "loractl-20261128-quick-ab12",
		"--label", "io.loractl.run-id=20261128-quick-ab12",
		"--label", "io.loractl.run-dir=/runs/20261128-quick-ab12",
		"--label", "io.loractl.driver=docker",
		"--init",
		"--user", "1000:100",
		"--cap-drop", "ALL", "--security-opt", "no-new-privileges",
		"--network", "none", "--shm-size", "8g",
		"--memory", "32g",
		"--ulimit", "nofile=20000:20000",
		"--stop-signal", "SIGTERM", "--stop-timeout", "90",
		"--workdir", "/runs/20261128-quick-ab12",
		"--mount", "type=bind,source=/runs/20261128-quick-ab12,target=/runs/20261128-quick-ab12",
		"--mount", "type=bind,source=/data,target=/data,readonly",
		"--mount", "type=bind,source=/models/tiny,target=/models/tiny,readonly",
		"--env", "HF_HUB_OFFLINE=1", "--env", "HOME=/tmp", "--env", "NVIDIA_VISIBLE_DEVICES=void",
		"--env", "HF_TOKEN", "--env", "WANDB_API_KEY",
		"loractl-trainer:1",
		"sh", "-c", launchScript, scriptName, "/runs/20261128-quick-ab12/train.log",
		"python3", "/opt/loractl/train_lora.py", "--config", "/runs/20261128-quick-ab12/resolved.json", "--run-dir", "/runs/20261128-quick-ab12",
	}
	if !slices.Equal(got, want) {
		t.Errorf("argv mismatch\n got: %q\nwant: %q", got, want)
	}
	if slices.Contains(got, "--privileged") {
		t.Error("argv contains --privileged")
	}
}

func TestRunArgsCases(t *testing.T) {
	tests := []struct {
		name    string
		engine  Engine
		opts    string
		who     invoker
		edit    func(*driver.Task)
		want    [][]string // each must appear as a contiguous run in the argv
		notWant []string   // none of these may appear as an argv element
	}{
		{
			name: "docker one GPU", engine: Docker, who: invoker{0, 0},
			edit: func(tk *driver.Task) { tk.GPUs = []int{3} },
			want: [][]string{{"--gpus", "device=3"}, {"--env", "CUDA_VISIBLE_DEVICES=0"}, {"--env", "NVIDIA_VISIBLE_DEVICES=3"}},
		},
		{
			name: "docker several GPUs are CSV-quoted", engine: Docker,
			edit: func(tk *driver.Task) { tk.GPUs = []int{1, 2} },
			want: [][]string{{"--gpus", `"device=1,2"`}, {"--env", "CUDA_VISIBLE_DEVICES=0,1"}, {"--env", "NVIDIA_VISIBLE_DEVICES=1,2"}},
		},
		{
			name: "docker CDI on request", engine: Docker, opts: `{"gpu_request":"cdi"}`,
			edit: func(tk *driver.Task) { tk.GPUs = []int{0, 5} },
			want: [][]string{{"--device", "nvidia.com/gpu=0", "--device", "nvidia.com/gpu=5"}, {"--env", "CUDA_VISIBLE_DEVICES=0,1"}, {"--env", "NVIDIA_VISIBLE_DEVICES=void"}},
		},
		{
			name: "podman uses CDI", engine: Podman,
			edit: func(tk *driver.Task) { tk.GPUs = []int{2} },
			want: [][]string{{"--device", "nvidia.com/gpu=2"}, {"--label", "io.loractl.driver=podman"}},
		},
		{
			name: "no GPUs: no device flags, no GPU from a default nvidia runtime, the host's CUDA_VISIBLE_DEVICES dropped", engine: Docker,
			edit:    func(tk *driver.Task) { tk.Env["CUDA_VISIBLE_DEVICES"] = "7"; tk.Env["NVIDIA_VISIBLE_DEVICES"] = "all" },
			want:    [][]string{{"--env", "NVIDIA_VISIBLE_DEVICES=void"}},
			notWant: []string{"--gpus", "--device", "CUDA_VISIBLE_DEVICES=7", "NVIDIA_VISIBLE_DEVICES=all"},
		},
		{
			name: "GPU renumbering overrides a host CUDA_VISIBLE_DEVICES", engine: Docker,
			edit:    func(tk *driver.Task) { tk.GPUs = []int{6}; tk.Env["CUDA_VISIBLE_DEVICES"] = "6" },
			want:    [][]string{{"--env", "CUDA_VISIBLE_DEVICES=0"}},
			notWant: []string{"CUDA_VISIBLE_DEVICES=6"},
		},
		{
			name: "the shared cache dir is mounted read-write", engine: Docker,
			edit: func(tk *driver.Task) { tk.CacheDir = "/srv/runs/.cache/base-eval/" },
			want: [][]string{{"--mount", "type=bind,source=/srv/runs/.cache/base-eval,target=/srv/runs/.cache/base-eval"}},
		},
		{
			name: "rootless podman keeps the user's id", engine: Podman, who: invoker{1000, 1000},
			want: [][]string{{"--userns", "keep-id", "--user", "1000:1000"}},
		},
		{
			name: "root podman needs no user namespace", engine: Podman, who: invoker{0, 0},
			want: [][]string{{"--user", "0:0"}}, notWant: []string{"--userns"},
		},
		{
			name: "explicit user", engine: Podman, who: invoker{1000, 1000}, opts: `{"user":"4242:4343"}`,
			want: [][]string{{"--user", "4242:4343"}}, notWant: []string{"--userns"},
		},
		{
			name: "init off, pull never, bridge network", engine: Docker, opts: `{"init":false,"pull":"never","network":"bridge"}`,
			want: [][]string{{"--pull", "never"}, {"--network", "bridge"}}, notWant: []string{"--init"},
		},
		{
			name: "podman init path", engine: Podman, opts: `{"init_path":"/usr/bin/tini-static"}`,
			want: [][]string{{"--init", "--init-path", "/usr/bin/tini-static"}},
		},
		{
			name: "duplicate and run-dir read-only paths are mounted once", engine: Docker, opts: `{"read_only":["/data/"]}`,
			edit: func(tk *driver.Task) { tk.ReadOnly = append(tk.ReadOnly, "/data", tk.RunDir) },
			want: [][]string{{"--mount", "type=bind,source=/data,target=/data,readonly", "--mount", "type=bind,source=/models/tiny,target=/models/tiny,readonly", "--env"}},
		},
		{
			name: "HOME passed by name replaces the /tmp default", engine: Docker,
			edit:    func(tk *driver.Task) { tk.PassEnv = append(tk.PassEnv, "HOME") },
			want:    [][]string{{"--env", "HOME"}},
			notWant: []string{"HOME=/tmp"},
		},
		{
			name: "empty log path defaults to train.log in the run dir", engine: Docker,
			edit: func(tk *driver.Task) { tk.LogPath = "" },
			want: [][]string{{scriptName, "/runs/20261128-quick-ab12/train.log"}},
		},
		{
			name: "python option replaces the host interpreter", engine: Docker, opts: `{"python":"/opt/loractl/venv/bin/python"}`,
			want:    [][]string{{"/runs/20261128-quick-ab12/train.log", "/opt/loractl/venv/bin/python", "/opt/loractl/train_lora.py"}},
			notWant: []string{"/host/venv/bin/python"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task := baseTask()
			if tt.edit != nil {
				tt.edit(task)
			}
			got, err := runArgs(tt.engine, mustOptions(t, tt.opts), task, tt.who)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !containsRun(got, w) {
					t.Errorf("argv lacks %q\nargv: %q", w, got)
				}
			}
			for _, nw := range tt.notWant {
				if slices.Contains(got, nw) {
					t.Errorf("argv contains %q\nargv: %q", nw, got)
				}
			}
		})
	}
}

// containsRun reports whether sub appears contiguously in s.
func containsRun(s, sub []string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if slices.Equal(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// Hostile values either are refused with a message naming them, or travel as single
// argv elements, verbatim: nothing is ever parsed by a shell on the host.
func TestRunArgsHostile(t *testing.T) {
	refused := []struct {
		name   string
		engine Engine
		edit   func(*driver.Task)
		opts   string
		want   string
	}{
		{name: "run id with shell text", edit: func(tk *driver.Task) { tk.RunID = "x; rm -rf /" }, want: "cannot name a container"},
		{name: "run id looking like a flag", edit: func(tk *driver.Task) { tk.RunID = "-rm" }, want: "cannot name a container"},
		{name: "relative run dir", edit: func(tk *driver.Task) { tk.RunDir = "runs/x" }, want: "not an absolute path"},
		{name: "comma in a read-only path", edit: func(tk *driver.Task) { tk.ReadOnly = []string{"/data,readonly=false,target=/etc"} }, want: "comma"},
		{name: "newline in the run dir", edit: func(tk *driver.Task) { tk.RunDir = "/runs/a\nb" }, want: "comma or newline"},
		{name: "env name with =", edit: func(tk *driver.Task) { tk.Env = map[string]string{"A=B": "c"} }, want: `"A=B" is invalid`},
		{name: "pass-env name with space", edit: func(tk *driver.Task) { tk.PassEnv = []string{"HF TOKEN"} }, want: "is invalid"},
		{name: "secret both set and passed", edit: func(tk *driver.Task) { tk.Env["HF_TOKEN"] = "x" }, want: "both set and passed"},
		{name: "NUL in an argument", edit: func(tk *driver.Task) { tk.Command = append(tk.Command, "a\x00b") }, want: "NUL"},
		{name: "log outside the run dir", edit: func(tk *driver.Task) { tk.LogPath = "/etc/passwd" }, want: "not inside the run dir"},
		{name: "log via ..", edit: func(tk *driver.Task) { tk.LogPath = tk.RunDir + "/../x.log" }, want: "not inside the run dir"},
		{name: "GPU visibility passed by name", edit: func(tk *driver.Task) { tk.PassEnv = []string{"NVIDIA_VISIBLE_DEVICES"} }, want: "driver sets GPU visibility"},
		{name: "CUDA devices passed by name", edit: func(tk *driver.Task) { tk.PassEnv = []string{"CUDA_VISIBLE_DEVICES"} }, want: "driver sets GPU visibility"},
		{name: "negative GPU", edit: func(tk *driver.Task) { tk.GPUs = []int{-1} }, want: "negative"},
		{name: "empty command", edit: func(tk *driver.Task) { tk.Command = nil }, want: "empty command"},
		{name: "init path on docker", engine: Docker, opts: `{"init_path":"/usr/bin/tini"}`, want: "podman only"},
		{name: "podman with the --gpus flag", opts: `{"gpu_request":"flag"}`, edit: func(tk *driver.Task) { tk.GPUs = []int{0} }, want: "podman has no --gpus flag"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			task := baseTask()
			if tt.edit != nil {
				tt.edit(task)
			}
			engine := tt.engine
			if engine == "" {
				engine = Podman
			}
			_, err := runArgs(engine, mustOptions(t, tt.opts), task, invoker{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}

	t.Run("values travel verbatim", func(t *testing.T) {
		task := baseTask()
		evil := `$(touch /tmp/pwned) "; rm -rf / #` + "\n'`id`'"
		task.Env["LORACTL_NOTE"] = evil
		task.Command = append(task.Command, evil, "--flag=$HOME", "")
		got, err := runArgs(Docker, mustOptions(t, ""), task, invoker{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(got, "LORACTL_NOTE="+evil) {
			t.Errorf("env value not one verbatim element: %q", got)
		}
		if !slices.Equal(got[len(got)-3:], []string{evil, "--flag=$HOME", ""}) {
			t.Errorf("command tail = %q", got[len(got)-3:])
		}
	})

	t.Run("secret values never reach the argv", func(t *testing.T) {
		t.Setenv("HF_TOKEN", "hf_secret_value_123")
		task := baseTask()
		d := NewDocker()
		out, err := d.Render(task)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := runArgs(Docker, mustOptions(t, ""), task, invoker{})
		if bytes.Contains(out, []byte("hf_secret_value_123")) || strings.Contains(strings.Join(got, " "), "hf_secret_value_123") {
			t.Error("the secret's value appears in the argv or its rendering")
		}
	})
}

// The rendering must be the exact argv: a POSIX shell reading it back gets the same
// words, however hostile they are.
func TestRenderRoundTrip(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal("no sh: ", err)
	}
	task := baseTask()
	task.GPUs = []int{0, 1}
	task.Env["LORACTL_NOTE"] = `it's "quoted" $(x) ` + "`y`\ttab\nnewline \\ back"
	task.Command = append(task.Command, "--set", "train.lr=2e-4", "a b", "'", "")
	d := NewDocker()
	rendered, err := d.Render(task)
	if err != nil {
		t.Fatal(err)
	}
	// A function named like the engine prints its arguments NUL-separated instead of
	// running anything.
	script := "docker() { printf '%s\\0' \"$@\"; }\n" + string(rendered)
	cmd := exec.Command(sh, "-c", script)
	cmd.Env = append(os.Environ(), "PATH=/nonexistent")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sh could not read the rendering back: %v\n%s", err, rendered)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	want, err := runArgs(Docker, mustOptions(t, ""), task, d.who)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("rendering does not round-trip\n got: %q\nwant: %q\nrendered:\n%s", got, want, rendered)
	}
	if !strings.HasPrefix(string(rendered), "docker run \\\n  --detach \\\n  --name loractl-20261128-quick-ab12 \\\n") {
		t.Errorf("rendering should put one option per line:\n%s", rendered)
	}
}

func TestRenderRefusesBadOptions(t *testing.T) {
	task := baseTask()
	task.Options = json.RawMessage(`{"shm_size":"lots"}`)
	_, err := NewPodman().Render(task)
	var oe *driver.OptionError
	if err == nil || !errors.As(err, &oe) || oe.Key != "shm_size" {
		t.Fatalf("error = %v, want an OptionError for shm_size", err)
	}
}

func TestShellQuote(t *testing.T) {
	tests := map[string]string{
		"plain":        "plain",
		"a/b-c.d=e:f":  "a/b-c.d=e:f",
		"":             "''",
		"a b":          "'a b'",
		"it's":         `'it'\''s'`,
		"$HOME":        "'$HOME'",
		"x;y":          "'x;y'",
		"type=bind,ro": "type=bind,ro",
	}
	for in, want := range tests {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
