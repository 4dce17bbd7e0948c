package container

// Tests against real container engines. They need an engine the harness started and a
// registry-free image, and run only when asked:
//
//	eval "$(scripts/ci/dockerd-up.sh)"
//	export LORACTL_TEST_ROOTFS=$(scripts/ci/build-test-image.sh --rootfs)
//	export LORACTL_TEST_PYTHON=$(scripts/setup-python.sh | tail -n1)
//	LORACTL_DOCKER_TEST=1 LORACTL_PODMAN_TEST=1 go test ./driver/container/
//	scripts/ci/dockerd-down.sh
//
// The tests import the rootfs into each engine (podman into private storage they set
// up and remove). LORACTL_TEST_PYTHON is the trainer's virtualenv interpreter; the
// container sees it, its base Python and the repo's python/ read-only at their host
// paths.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/loractl/loractl/driver"
)

const (
	envDockerTest = "LORACTL_DOCKER_TEST"
	envPodmanTest = "LORACTL_PODMAN_TEST"
	envRootfs     = "LORACTL_TEST_ROOTFS"
	envPython     = "LORACTL_TEST_PYTHON"
	// envHelper makes the test binary act as a second controller process (TestMain).
	envHelper = "LORACTL_CONTAINER_TEST_HELPER"
)

// testEngine is one engine under test with the options every task on it needs.
type testEngine struct {
	d    *Driver
	opts map[string]any
}

// options returns the engine's base options merged with extra, as JSON.
func (e *testEngine) options(t *testing.T, extra map[string]any) json.RawMessage {
	t.Helper()
	m := maps.Clone(e.opts)
	maps.Copy(m, extra)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	setupOnce sync.Once
	setupErr  error
	engines   []*testEngine
	cleanups  []func()
	runSeq    atomic.Int64
)

func TestMain(m *testing.M) {
	if os.Getenv(envHelper) != "" {
		os.Exit(helperMain())
	}
	code := m.Run()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	os.Exit(code)
}

// forEachEngine runs f as a subtest per engine the harness enabled, and skips with a
// message naming the switches when it enabled none.
func forEachEngine(t *testing.T, f func(t *testing.T, e *testEngine)) {
	t.Helper()
	if os.Getenv(envDockerTest) != "1" && os.Getenv(envPodmanTest) != "1" {
		t.Skipf("no container engine to test: set %s=1 (with DOCKER_HOST from scripts/ci/dockerd-up.sh) and/or %s=1, and %s", envDockerTest, envPodmanTest, envRootfs)
	}
	setupOnce.Do(func() { setupErr = setupEngines() })
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	for _, e := range engines {
		t.Run(e.d.Name(), func(t *testing.T) { f(t, e) })
	}
}

// setupEngines imports the test rootfs into each enabled engine.
func setupEngines() error {
	rootfs := os.Getenv(envRootfs)
	if rootfs == "" {
		return fmt.Errorf("%s is not set: export %s=$(scripts/ci/build-test-image.sh --rootfs)", envRootfs, envRootfs)
	}
	// build-test-image.sh names the tarball test-rootfs-HASH.tar and the image
	// loractl-test:HASH; reuse an image it (or an earlier run) imported.
	tag := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(rootfs), "test-rootfs-"), ".tar")
	image := "loractl-test:" + tag
	if os.Getenv(envDockerTest) == "1" {
		if err := importImage("docker", rootfs, image); err != nil {
			return err
		}
		engines = append(engines, &testEngine{d: NewDocker(), opts: map[string]any{"image": image, "pull": "never"}})
	}
	if os.Getenv(envPodmanTest) == "1" {
		opts, err := setupPodman()
		if err != nil {
			return err
		}
		if err := importImage("podman", rootfs, image); err != nil {
			return err
		}
		opts["image"] = image
		engines = append(engines, &testEngine{d: NewPodman(), opts: opts})
	}
	return nil
}

func importImage(engine, rootfs, image string) error {
	if exec.Command(engine, "image", "inspect", image).Run() == nil {
		return nil
	}
	out, err := exec.Command(engine, "import", "--change", `CMD ["/bin/sh"]`, rootfs, image).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s import %s: %v\n%s", engine, rootfs, err, out)
	}
	return nil
}

// setupPodman points podman at private storage and state (removed after the tests),
// so the tests never touch the machine's containers. It returns the options podman
// needs on these hosts: capped ulimits (runc cannot set podman's defaults here) and,
// where catatonit is missing, tini as the init.
func setupPodman() (map[string]any, error) {
	dir, err := os.MkdirTemp("", "loractl-podman-test-")
	if err != nil {
		return nil, err
	}
	storage := fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n", dir+"/root", dir+"/run")
	// No systemd on CI machines: cgroupfs, and events in a file rather than journald.
	conf := fmt.Sprintf("[engine]\ntmp_dir = %q\nevents_logger = \"file\"\ncgroup_manager = \"cgroupfs\"\n", dir+"/tmp")
	if err := os.WriteFile(dir+"/storage.conf", []byte(storage), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(dir+"/containers.conf", []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if err := os.Setenv("CONTAINERS_STORAGE_CONF", dir+"/storage.conf"); err != nil {
		return nil, err
	}
	if err := os.Setenv("CONTAINERS_CONF", dir+"/containers.conf"); err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() {
		_ = exec.Command("podman", "rm", "--all", "--force", "--time", "0").Run()
		_ = exec.Command("podman", "system", "reset", "--force").Run()
		os.RemoveAll(dir)
	})
	opts := map[string]any{"pull": "never", "ulimits": []string{"nofile=20000:20000", "nproc=32768:32768"}}
	if _, err := os.Stat("/usr/libexec/podman/catatonit"); err != nil {
		for _, p := range []string{"/usr/bin/tini-static", "/usr/bin/catatonit"} {
			if _, err := os.Stat(p); err == nil {
				opts["init_path"] = p
				break
			}
		}
	}
	return opts, nil
}

// shellTask is a task whose "trainer" is sh -c script (Options.Python is /bin/sh), in a
// fresh run dir.
func shellTask(t *testing.T, e *testEngine, script string, extra map[string]any, args ...string) *driver.Task {
	t.Helper()
	runID := fmt.Sprintf("ctest-%d-%d", os.Getpid(), runSeq.Add(1))
	runDir := filepath.Join(t.TempDir(), runID)
	if err := os.Mkdir(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := map[string]any{"python": "/bin/sh"}
	maps.Copy(opts, extra)
	return &driver.Task{
		RunID:   runID,
		RunDir:  runDir,
		Command: append([]string{"/host/python/is/replaced", "-c", script, "trainer"}, args...),
		LogPath: filepath.Join(runDir, "train.log"),
		Options: e.options(t, opts),
	}
}

// start starts task and removes its container when the test ends.
func start(t *testing.T, e *testEngine, task *driver.Task) *driver.Handle {
	t.Helper()
	h, err := e.d.Start(testCtx(t), task)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { removeContainer(e, h) })
	return h
}

func removeContainer(e *testEngine, h *driver.Handle) {
	if st, err := e.d.decode(h); err == nil {
		_, _ = st.run(context.Background(), "rm", "--force", h.ID)
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitFile polls until path exists.
func waitFile(t *testing.T, path string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not appear within %v", path, within)
}

func TestEngineExitLogAndArgs(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *testEngine) {
		hostile := `$(touch /tmp/pwned) "; rm -rf / #'` + "\nsecond line"
		task := shellTask(t, e, `echo "arg=$1"; echo "to stderr" >&2; touch started; sleep 1; exit 3`, nil, hostile)
		ctx := testCtx(t)
		h := start(t, e, task)
		if s, err := e.d.Inspect(ctx, h); err != nil || s.State != driver.StateRunning || s.StartedAt.IsZero() {
			t.Errorf("Inspect while running = %+v, %v", s, err)
		}
		res, err := e.d.Wait(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != 3 || res.Signal != 0 || res.OOMKilled {
			t.Errorf("Wait = %+v, want exit code 3", res)
		}
		s, err := e.d.Inspect(ctx, h)
		if err != nil || s.State != driver.StateExited || s.Exit.ExitCode != 3 || s.FinishedAt.Before(s.StartedAt) {
			t.Errorf("Inspect after exit = %+v (%+v), %v", s, s.Exit, err)
		}
		log := readFile(t, task.LogPath)
		if !strings.Contains(log, "arg="+hostile+"\n") || !strings.Contains(log, "to stderr\n") {
			t.Errorf("train.log does not hold the argument verbatim and stderr:\n%s", log)
		}
		// Files the trainer writes belong to the invoking user (the default --user).
		for _, name := range []string{"train.log", "started"} {
			fi, err := os.Stat(filepath.Join(task.RunDir, name))
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != os.Getuid() || int(st.Gid) != os.Getgid() {
				t.Errorf("%s is owned by %d:%d, want the invoking user %d:%d", name, st.Uid, st.Gid, os.Getuid(), os.Getgid())
			}
		}
	})
}

func TestEngineUserOwnsRunDirFiles(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to hand a run dir to another uid; the default-user case runs in TestEngineExitLogAndArgs")
	}
	forEachEngine(t, func(t *testing.T, e *testEngine) {
		task := shellTask(t, e, `id -u > uid; mkdir -p checkpoints/x && echo ok > checkpoints/x/f`, map[string]any{"user": "4242:4343"})
		if err := os.Chown(task.RunDir, 4242, 4343); err != nil {
			t.Fatal(err)
		}
		h := start(t, e, task)
		if res, err := e.d.Wait(testCtx(t), h); err != nil || res.ExitCode != 0 {
			t.Fatalf("Wait = %+v, %v\n%s", res, err, readFile(t, task.LogPath))
		}
		for _, name := range []string{"uid", "train.log", "checkpoints/x", "checkpoints/x/f"} {
			fi, err := os.Stat(filepath.Join(task.RunDir, name))
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != 4242 || st.Gid != 4343 {
				t.Errorf("%s is owned by %d:%d, want 4242:4343", name, st.Uid, st.Gid)
			}
		}
	})
}

// The base model's evaluation cache is shared by runs: the driver creates it when
// missing and the trainer writes it from inside the container, as the invoking user.
func TestEngineCacheDirWritable(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *testEngine) {
		cache := filepath.Join(t.TempDir(), "runs", ".cache", "base-eval")
		task := shellTask(t, e, `echo entry > "$1/before.json"`, nil, cache)
		task.CacheDir = cache
		h := start(t, e, task)
		res, err := e.d.Wait(testCtx(t), h)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("Wait = %+v, %v\n%s", res, err, readFile(t, task.LogPath))
		}
		if got := readFile(t, filepath.Join(cache, "before.json")); got != "entry\n" {
			t.Errorf("the cache entry written inside reads %q on the host", got)
		}
	})
}

func TestEngineReadOnlyMounts(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *testEngine) {
		data := t.TempDir()
		if err := os.WriteFile(filepath.Join(data, "train.jsonl"), []byte("original\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		task := shellTask(t, e, `
			cat "$1/train.jsonl" > copy
			if echo x >> "$1/train.jsonl"; then echo "appended to a read-only file"; exit 10; fi
			if touch "$1/new"; then echo "created a file on a read-only mount"; exit 11; fi
			if touch /etc/loractl-test 2>/dev/null && [ "$(id -u)" != 0 ]; then echo "wrote the image as non-root"; exit 12; fi
			exit 0`, nil, data)
		task.ReadOnly = []string{data}
		h := start(t, e, task)
		res, err := e.d.Wait(testCtx(t), h)
		log := readFile(t, task.LogPath)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("Wait = %+v, %v\n%s", res, err, log)
		}
		if !strings.Contains(log, "Read-only file system") {
			t.Errorf("train.log lacks the read-only refusal:\n%s", log)
		}
		if got := readFile(t, filepath.Join(task.RunDir, "copy")); got != "original\n" {
			t.Errorf("the read-only mount read %q", got)
		}
		if got := readFile(t, filepath.Join(data, "train.jsonl")); got != "original\n" {
			t.Errorf("the host file changed to %q", got)
		}
		if _, err := os.Stat(filepath.Join(data, "new")); err == nil {
			t.Error("a file appeared in the read-only host directory")
		}
	})
}

func TestEngineEnvAndSecrets(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *testEngine) {
		const secret = "hf_s3cret-value-never-in-argv"
		t.Setenv("LORACTL_TEST_TOKEN", secret)
		t.Setenv("LORACTL_TEST_EXTRA", "extra-value")
		note := `a "quoted" $(value) with 'spaces'`
		task := shellTask(t, e, `printf '%s|%s|%s|%s|%s' "$LORACTL_TEST_TOKEN" "$LORACTL_TEST_EXTRA" "$NOTE" "$HOME" "${CUDA_VISIBLE_DEVICES-unset}" > env.out`,
			map[string]any{"env": []string{"LORACTL_TEST_EXTRA"}})
		task.Env = map[string]string{"NOTE": note, "CUDA_VISIBLE_DEVICES": "5"}
		task.PassEnv = []string{"LORACTL_TEST_TOKEN", "LORACTL_TEST_UNSET"}
		h := start(t, e, task)
		if res, err := e.d.Wait(testCtx(t), h); err != nil || res.ExitCode != 0 {
			t.Fatalf("Wait = %+v, %v\n%s", res, err, readFile(t, task.LogPath))
		}
		want := secret + "|extra-value|" + note + "|/tmp|unset"
		if got := readFile(t, filepath.Join(task.RunDir, "env.out")); got != want {
			t.Errorf("trainer environment = %q, want %q", got, want)
		}
		hb, _ := json.Marshal(h)
		rendered, err := e.d.Render(task)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(hb)+string(rendered), secret) {
			t.Errorf("a secret's value leaked into the handle or the rendering:\n%s\n%s", hb, rendered)
		}
	})
}

func TestEngineStopAndSignal(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *testEngine) {
		t.Run("TERM then checkpoint", func(t *testing.T) {
			task := shellTask(t, e, `trap 'echo "got USR1"' USR1; trap 'echo "got TERM"; touch checkpointed; exit 75' TERM; touch ready; while :; do sleep 0.1; done`, nil)
			ctx := testCtx(t)
			h := start(t, e, task)
			waitFile(t, filepath.Join(task.RunDir, "ready"), 30*time.Second)
			if err := e.d.Signal(ctx, h, "USR1"); err != nil {
				t.Fatal(err)
			}
			began := time.Now()
			if err := e.d.Stop(ctx, h, 20*time.Second); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(began); took > 10*time.Second {
				t.Errorf("Stop took %v for a trainer that exits on SIGTERM", took)
			}
			res, err := e.d.Wait(ctx, h)
			if err != nil || res.ExitCode != 75 || res.Signal != 0 {
				t.Errorf("Wait after Stop = %+v, %v; want 75", res, err)
			}
			log := readFile(t, task.LogPath)
			if !strings.Contains(log, "got USR1") || !strings.Contains(log, "got TERM") {
				t.Errorf("the trainer did not see USR1 and TERM:\n%s", log)
			}
			if err := e.d.Signal(ctx, h, "TERM"); !errors.Is(err, driver.ErrTaskNotFound) {
				t.Errorf("Signal to an exited container = %v, want ErrTaskNotFound", err)
			}
			if err := e.d.Stop(ctx, h, time.Second); err != nil {
				t.Errorf("Stop of an exited container = %v", err)
			}
		})
		t.Run("KILL after grace", func(t *testing.T) {
			task := shellTask(t, e, `trap '' TERM; touch ready; while :; do sleep 0.1; done`, nil)
			ctx := testCtx(t)
			h := start(t, e, task)
			waitFile(t, filepath.Join(task.RunDir, "ready"), 30*time.Second)
			began := time.Now()
			if err := e.d.Stop(ctx, h, time.Second); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(began); took < time.Second || took > 15*time.Second {
				t.Errorf("Stop with a 1s grace took %v", took)
			}
			res, err := e.d.Wait(ctx, h)
			if err != nil || res.ExitCode != 137 || res.Signal != 9 || res.Successful() {
				t.Errorf("Wait after a kill = %+v, %v; want 137 / signal 9", res, err)
			}
		})
	})
}

func TestEngineOOMKilled(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *testEngine) {
		// python3 is in the test image; 256 MB of written bytes against a 32 MB cap.
		task := shellTask(t, e, `exec python3 -c 'b = b"x" * (256 << 20); print(len(b))'`, map[string]any{"memory": "32m"})
		h := start(t, e, task)
		res, err := e.d.Wait(testCtx(t), h)
		if err != nil {
			t.Fatal(err)
		}
		if e.d.engine == Podman && podmanMajor(t) < 5 {
			// podman 4 never records OOM kills (containers/podman#13102, fixed in 5.0):
			// all it can report is the SIGKILL.
			if res.ExitCode != 137 || res.Signal != 9 || res.Successful() {
				t.Errorf("Wait = %+v, want killed by signal 9", res)
			}
			return
		}
		if !res.OOMKilled || res.Successful() || !strings.Contains(res.Reason, "out of memory") {
			t.Errorf("Wait = %+v, want OOMKilled with an out-of-memory reason\n%s", res, readFile(t, task.LogPath))
		}
	})
}

// podmanMajor is the installed podman's major version.
func podmanMajor(t *testing.T) int {
	out, err := exec.Command("podman", "version", "--format", "{{.Client.Version}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	var major int
	if _, err := fmt.Sscanf(string(out), "%d", &major); err != nil {
		t.Fatalf("podman version %q: %v", out, err)
	}
	return major
}

func TestEngineRestartSameRun(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *testEngine) {
		task := shellTask(t, e, `echo attempt >> attempts; [ "$(wc -l < attempts)" -ge 2 ] || exit 75; sleep 30`, nil)
		ctx := testCtx(t)
		h1 := start(t, e, task)
		if res, err := e.d.Wait(ctx, h1); err != nil || res.ExitCode != 75 {
			t.Fatalf("first attempt = %+v, %v", res, err)
		}
		// A resumed run reuses its id: the finished container is replaced.
		h2 := start(t, e, task)
		if h2.ID == h1.ID {
			t.Fatal("the second attempt reused the first container")
		}
		if _, err := e.d.Inspect(ctx, h1); !errors.Is(err, driver.ErrTaskNotFound) {
			t.Errorf("Inspect of the replaced container = %v, want ErrTaskNotFound", err)
		}
		// ...but a live trainer is never replaced.
		if h3, err := e.d.Start(ctx, task); err == nil || !strings.Contains(err.Error(), "is live") {
			if h3 != nil {
				removeContainer(e, h3)
			}
			t.Errorf("Start while the run's container runs = %v, want a refusal", err)
		}
		if err := e.d.Stop(ctx, h2, time.Second); err != nil {
			t.Fatal(err)
		}
	})
}

func TestEngineStartFailures(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *testEngine) {
		ctx := testCtx(t)
		task := shellTask(t, e, "exit 0", nil)
		task.ReadOnly = []string{filepath.Join(task.RunDir, "no-such-dir")}
		if _, err := e.d.Start(ctx, task); err == nil || !strings.Contains(err.Error(), "no-such-dir") {
			t.Errorf("Start with a missing mount source = %v, want an error naming it", err)
		}
		task = shellTask(t, e, "exit 0", map[string]any{"image": "loractl-no-such-image:1"})
		if _, err := e.d.Start(ctx, task); err == nil {
			t.Fatal("Start with a missing image succeeded")
		}
		st := &handleState{Engine: e.d.engine, Binary: e.d.binary}
		if _, err := st.run(ctx, "inspect", "--type", "container", ContainerName(task.RunID)); !errors.Is(err, driver.ErrTaskNotFound) {
			t.Errorf("a failed Start left container %s behind (%v)", ContainerName(task.RunID), err)
		}
		task = shellTask(t, e, "exit 0", map[string]any{"binary": "/nonexistent/docker"})
		if _, err := e.d.Start(ctx, task); err == nil || !strings.Contains(err.Error(), `option "binary"`) {
			t.Errorf("Start with a missing engine binary = %v", err)
		}
	})
}

func TestEngineImageDigest(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *testEngine) {
		image := e.opts["image"].(string)
		got, err := e.d.ImageDigest(testCtx(t), image)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(e.d.binary, "image", "inspect", "--format", "{{.Id}}", image).Output()
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimSpace(string(out)); got != want && got != "sha256:"+want {
			t.Errorf("ImageDigest = %s, want %s", got, want)
		}
		if len(got) != len("sha256:")+64 {
			t.Errorf("ImageDigest = %q, want sha256:<64 hex>", got)
		}
		if _, err := e.d.ImageDigest(testCtx(t), "loractl-no-such-image:1"); err == nil {
			t.Error("ImageDigest of a missing image succeeded")
		}
		task := shellTask(t, e, "exit 0", nil)
		name, digest, err := e.d.TaskImage(testCtx(t), task)
		if err != nil || name != image || digest != got {
			t.Errorf("TaskImage = %s, %s, %v; want %s, %s", name, digest, err, image, got)
		}
	})
}

// TestEngineReattachFromAnotherProcess stops a container from a second process that has
// only the stored handle, with the engine's endpoint variables removed from its
// environment: the handle alone must lead back to the container.
func TestEngineReattachFromAnotherProcess(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *testEngine) {
		task := shellTask(t, e, `trap 'echo stopped; exit 75' TERM; touch ready; while :; do sleep 0.1; done`, nil)
		h := start(t, e, task)
		waitFile(t, filepath.Join(task.RunDir, "ready"), 30*time.Second)
		stored, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		for _, kv := range os.Environ() {
			if k, _, _ := strings.Cut(kv, "="); !slices.Contains(endpointVars[e.d.engine], k) {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, envHelper+"="+string(e.d.engine)+":"+string(stored))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("helper process: %v\n%s", err, out)
		}
		var res driver.ExitResult
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("helper output %q: %v", out, err)
		}
		if res.ExitCode != 75 {
			t.Errorf("the second process saw %+v, want exit code 75", res)
		}
		if log := readFile(t, task.LogPath); !strings.Contains(log, "stopped") {
			t.Errorf("SIGTERM from the second process did not reach the trainer:\n%s", log)
		}
	})
}

// helperMain is the second controller process: decode the handle, check it runs, stop
// it, wait, print the exit result as JSON.
func helperMain() int {
	engine, stored, _ := strings.Cut(os.Getenv(envHelper), ":")
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	d, err := New(Engine(engine))
	if err != nil {
		return fail(err)
	}
	var h driver.Handle
	if err := json.Unmarshal([]byte(stored), &h); err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if s, err := d.Inspect(ctx, &h); err != nil || s.State != driver.StateRunning {
		return fail(fmt.Errorf("inspect from a new process: %+v, %v", s, err))
	}
	if err := d.Stop(ctx, &h, 20*time.Second); err != nil {
		return fail(err)
	}
	res, err := d.Wait(ctx, &h)
	if err != nil {
		return fail(err)
	}
	b, _ := json.Marshal(res)
	if _, err := os.Stdout.Write(b); err != nil {
		return fail(err)
	}
	return 0
}
