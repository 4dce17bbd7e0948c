package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/catalog"
	"github.com/loractl/loractl/driver/drivertest"
	"github.com/loractl/loractl/driver/plugin"
)

// These tests run loractl-driver-exec for real: built from this package, found by
// the catalog in a plugins dir, launched by go-plugin over gRPC with AutoMTLS, its
// checksum pinned.

var (
	buildOnce sync.Once
	builtExe  string
	buildErr  error
)

// binary builds loractl-driver-exec once per test run and returns its path.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "loractl-driver-exec-test-")
		if err != nil {
			buildErr = err
			return
		}
		builtExe = filepath.Join(dir, "loractl-driver-exec")
		out, err := exec.Command("go", "build", "-o", builtExe, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtExe
}

// hostEnv makes the test binary act as a controller that launches the driver found
// in the directory it names and then waits to be killed.
const hostEnv = "LORACTL_TEST_PLUGIN_HOST"

func TestMain(m *testing.M) {
	if dir := os.Getenv(hostEnv); dir != "" {
		c := catalog.New(catalog.Options{PluginsDir: dir, Path: dir, Logger: zerolog.Nop()})
		if _, err := c.Lookup("exec"); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("ready")
		select {}
	}
	code := m.Run()
	if builtExe != "" {
		os.RemoveAll(filepath.Dir(builtExe))
	}
	os.Exit(code)
}

// pluginsDir makes a plugins dir holding the built driver under the given file name.
func pluginsDir(t *testing.T, file string) string {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, file), b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newCatalog returns a catalog that searches only dir, closed when the test ends.
func newCatalog(t *testing.T, dir string, logger zerolog.Logger) *catalog.Catalog {
	c := catalog.New(catalog.Options{PluginsDir: dir, Path: t.TempDir(), Logger: logger})
	t.Cleanup(c.Close)
	return c
}

func sha(t *testing.T, path string) string {
	t.Helper()
	s, err := plugin.FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestContractAsSubprocess runs the whole contract suite against the executable.
// Every factory call is a new catalog and so a new plugin process, as a new
// controller would start: the reattach tests cross process boundaries for real.
func TestContractAsSubprocess(t *testing.T) {
	dir := pluginsDir(t, "loractl-driver-exec")
	sum := sha(t, filepath.Join(dir, "loractl-driver-exec"))
	factory := func(t *testing.T) driver.Driver {
		c := newCatalog(t, dir, zerolog.Nop())
		if err := c.Pin("exec", sum); err != nil {
			t.Fatal(err)
		}
		d, err := c.Lookup("exec")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	drivertest.Run(t, factory, drivertest.WithUnknownHandle(func(valid *driver.Handle) *driver.Handle {
		u := *valid
		u.State = []byte(`{"supervisor_pid": 999999999, "status": "/nonexistent/status.json"}`)
		return &u
	}))
}

// TestChecksumRefusedBeforeRun pins checksums on a wrapper that leaves a mark when it
// runs: a wrong pin must refuse it without the mark appearing.
func TestChecksumRefusedBeforeRun(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(t.TempDir(), "ran")
	wrapper := filepath.Join(dir, "loractl-driver-exec")
	script := fmt.Sprintf("#!/bin/sh\n: > '%s'\nexec '%s' \"$@\"\n", mark, binary(t))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	right := sha(t, wrapper)
	wrong := strings.Repeat("ab", 32)

	c := newCatalog(t, dir, zerolog.Nop())
	if err := c.Pin("exec", wrong); err != nil {
		t.Fatal(err)
	}
	_, err := c.Lookup("exec")
	if !errors.Is(err, plugin.ErrChecksum) || !strings.Contains(err.Error(), right) {
		t.Fatalf("Lookup with a wrong pin = %v, want ErrChecksum naming the actual sum", err)
	}
	if _, statErr := os.Stat(mark); statErr == nil {
		t.Fatal("the executable ran although its checksum did not match")
	}

	c = newCatalog(t, dir, zerolog.Nop())
	if err := c.Pin("exec", right); err != nil {
		t.Fatal(err)
	}
	d, err := c.Lookup("exec")
	if err != nil {
		t.Fatalf("Lookup with the right pin: %v", err)
	}
	if d.Name() != "exec" {
		t.Errorf("Name() = %q", d.Name())
	}
	if _, err := os.Stat(mark); err != nil {
		t.Error("the pinned executable did not run")
	}
}

// TestPluginLogsReachTheController checks that the driver's hclog lines on stderr
// arrive in the controller's zerolog stream with their level and the plugin's name.
func TestPluginLogsReachTheController(t *testing.T) {
	var buf syncBuffer
	c := newCatalog(t, pluginsDir(t, "loractl-driver-exec"), zerolog.New(&buf).Level(zerolog.DebugLevel))
	d, err := c.Lookup("exec")
	if err != nil {
		t.Fatal(err)
	}
	runDir := t.TempDir()
	// The trainer records its environment: the controller's, without go-plugin's.
	h, err := d.Start(context.Background(), &driver.Task{
		RunID: "logs", RunDir: runDir, Command: []string{"/bin/sh", "-c", "env > env.txt"}, LogPath: filepath.Join(runDir, "train.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Wait(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	c.Close() // go-plugin has read all of stderr once the process is gone
	entries := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("controller log line is not JSON: %q", line)
		}
		entries[fmt.Sprint(e["message"])] = e
	}
	started := entries["task started"]
	if started["level"] != "info" || started["plugin"] != "loractl-driver-exec" || started["run_id"] != "logs" {
		t.Errorf("the driver's \"task started\" line arrived as %v, want level info, plugin and run_id fields:\n%s", started, buf.String())
	}
	// go-plugin's own line, proof that the connection uses AutoMTLS.
	if entries["configuring client automatic mTLS"] == nil {
		t.Errorf("controller log does not show AutoMTLS:\n%s", buf.String())
	}
	env, err := os.ReadFile(filepath.Join(runDir, "env.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"PLUGIN_CLIENT_CERT=", plugin.Handshake.MagicCookieKey + "="} {
		if strings.Contains(string(env), leak) {
			t.Errorf("the trainer's environment holds go-plugin's %s", leak)
		}
	}
	if !strings.Contains(string(env), "PATH=") {
		t.Errorf("the trainer did not get the controller's environment:\n%s", env)
	}
}

func TestNameMismatchRefused(t *testing.T) {
	c := newCatalog(t, pluginsDir(t, "loractl-driver-other"), zerolog.Nop())
	_, err := c.Lookup("other")
	if err == nil || !strings.Contains(err.Error(), `serves driver "exec", not "other"`) {
		t.Fatalf("Lookup of a renamed driver = %v, want a name mismatch error", err)
	}
}

func TestFoundOnPath(t *testing.T) {
	bin := pluginsDir(t, "loractl-driver-exec")
	c := catalog.New(catalog.Options{PluginsDir: t.TempDir(), Path: bin, Logger: zerolog.Nop()})
	t.Cleanup(c.Close)
	if _, err := c.Lookup("exec"); err != nil {
		t.Fatalf("Lookup from PATH: %v", err)
	}
}

func TestRunByHandRefuses(t *testing.T) {
	out, err := exec.Command(binary(t)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "plugin") {
		t.Fatalf("running the plugin by hand: %v, %q; want a refusal that says it is a plugin", err, out)
	}
}

// syncBuffer is a bytes.Buffer safe for go-plugin's log goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestPluginExitsWithItsController kills a controller with SIGKILL, which gives it no
// chance to stop its plugins, and checks that the plugin notices and exits.
func TestPluginExitsWithItsController(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	host := exec.Command(self)
	host.Env = append(os.Environ(), hostEnv+"="+pluginsDir(t, "loractl-driver-exec"))
	stdout, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Process.Kill(); _ = host.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("controller said %q, %v", line, err)
	}
	plugins := children(t, host.Process.Pid, "loractl-driver-exec")
	if len(plugins) != 1 {
		t.Fatalf("controller %d has plugin children %v, want one", host.Process.Pid, plugins)
	}
	pid := plugins[0]
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if err := host.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = host.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("plugin %d still runs 10s after its controller died", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// children lists the pids whose parent is ppid and whose command name is comm.
func children(t *testing.T, ppid int, comm string) []int {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var pids []int
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		f := strings.Fields(s[close+1:])
		// /proc truncates the command name to 15 bytes.
		if len(f) > 1 && f[1] == strconv.Itoa(ppid) && strings.HasPrefix(comm, s[open+1:close]) {
			pid, _ := strconv.Atoi(strings.Fields(s)[0])
			pids = append(pids, pid)
		}
	}
	return pids
}

// An unpinned driver that others could have replaced is refused before it runs, as
// ssh refuses a key file others can write; pinning its checksum lets it run.
func TestUnpinnedWritableDriverRefused(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"binary writable by everyone", func(t *testing.T, dir string) {
			must(t, os.Chmod(filepath.Join(dir, "loractl-driver-exec"), 0o777))
		}, "is writable by others (mode 0777)"},
		{"binary writable by the group", func(t *testing.T, dir string) {
			must(t, os.Chmod(filepath.Join(dir, "loractl-driver-exec"), 0o775))
		}, "is writable by others (mode 0775)"},
		{"plugins dir writable by everyone", func(t *testing.T, dir string) {
			must(t, os.Chmod(dir, 0o777))
		}, "is writable by others (mode 0777)"},
	}
	if os.Getuid() == 0 {
		cases = append(cases, struct {
			name  string
			setup func(t *testing.T, dir string)
			want  string
		}{"binary owned by another user", func(t *testing.T, dir string) {
			must(t, os.Chown(filepath.Join(dir, "loractl-driver-exec"), 65534, 65534))
		}, "is owned by uid 65534"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := pluginsDir(t, "loractl-driver-exec")
			sum := sha(t, filepath.Join(dir, "loractl-driver-exec"))
			tc.setup(t, dir)
			_, err := newCatalog(t, dir, zerolog.Nop()).Lookup("exec")
			if !errors.Is(err, plugin.ErrUntrusted) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("unpinned: %v, want %q", err, tc.want)
			}
			c := newCatalog(t, dir, zerolog.Nop())
			must(t, c.Pin("exec", sum))
			if _, err := c.Lookup("exec"); err != nil {
				t.Fatalf("pinned: %v", err)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
