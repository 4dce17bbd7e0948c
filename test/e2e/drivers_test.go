package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loractl/loractl/run"
)

// requireEnv skips unless the harness started the engine the test needs (scripts/test.sh
// always does).
func requireEnv(t *testing.T, name, how string) {
	t.Helper()
	if os.Getenv(name) != "1" {
		t.Skipf("%s is not set: %s", name, how)
	}
}

// Through a real Slurm cluster: train --detach returns at once; a new process follows
// the job with logs -f, another stops it (the trainer checkpoints), and train --resume
// finishes it through Slurm from that checkpoint.
func TestSlurmDetachStopResume(t *testing.T) {
	requireEnv(t, "LORACTL_SLURM_TEST", "start a cluster with scripts/ci/slurm-up.sh BASE and source BASE/env")
	f := newFixture(t, "  max_steps: 40\n")
	cfg, _ := os.ReadFile(f.config)
	cfg = []byte(strings.Replace(string(cfg), "  max_steps: 24\n", "", 1) +
		"driver:\n  name: slurm\n  slurm:\n    time: \"00:20:00\"\n    signal_grace: 60\n    python: " + f.python + "\n")
	if err := os.WriteFile(f.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}

	r := f.loractl(t, "train", f.config, "--detach")
	if r.code != 0 {
		t.Fatalf("train --detach: exit %d\n%s", r.code, r.stderr)
	}
	runID := strings.TrimSpace(r.stdout)
	dir := filepath.Join(f.runs, runID)
	m, err := run.ReadManifest(dir)
	if err != nil || m.Handle == nil || m.Handle.Driver != "slurm" {
		t.Fatalf("manifest after detach: %+v %v", m, err)
	}

	// A new controller process follows the job.
	follow := f.command(t, "logs", runID, "-f", "--json")
	stdout, _ := follow.StdoutPipe()
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var followed []string
	stopped := false
	for sc.Scan() {
		e, err := run.ParseEvent(sc.Bytes())
		if err != nil {
			continue
		}
		followed = append(followed, e.Type)
		if e.Type == run.EventCheckpoint && !stopped {
			stopped = true
			if s := f.loractl(t, "stop", runID, "--grace", "60s"); s.code != 0 {
				t.Fatalf("stop: exit %d\n%s", s.code, s.stderr)
			}
		}
	}
	if err := follow.Wait(); err != nil {
		t.Fatalf("logs -f: %v", err)
	}
	if !stopped || followed[len(followed)-1] != run.EventEnd {
		t.Fatalf("logs -f saw %v", followed)
	}
	m, _ = run.ReadManifest(dir)
	cp, ok, _ := run.LatestComplete(dir)
	if m.State != run.StateInterrupted || !ok {
		t.Fatalf("after stop: state %s, complete checkpoint %v", m.State, ok)
	}

	// Resume through Slurm in the foreground.
	res := f.loractl(t, "train", "--resume", runID, "--json")
	if res.code != 0 {
		t.Fatalf("resume: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	events, final := jsonLines(t, res.stdout)
	for _, e := range events {
		if e.Type == run.EventLog {
			if e.Step <= cp.Step {
				t.Fatalf("first step after resume %d, checkpoint at %d", e.Step, cp.Step)
			}
			break
		}
	}
	if final["state"] != "completed" || final["step"] != float64(40) {
		t.Fatalf("resumed result %v", final)
	}
	list := f.loractl(t, "runs", "--json")
	var ms []run.Manifest
	if err := json.Unmarshal([]byte(list.stdout), &ms); err != nil || len(ms) != 1 || ms[0].State != run.StateCompleted || len(ms[0].Attempts) != 2 {
		t.Fatalf("runs --json: %v\n%s", err, list.stdout)
	}
}

// In a real Docker engine: the trainer runs in a registry-free image with the venv
// mounted read-only, and the manifest records the image and its digest.
func TestDockerTrain(t *testing.T) {
	requireEnv(t, "LORACTL_DOCKER_TEST", "start an engine with scripts/ci/dockerd-up.sh and set LORACTL_TEST_ROOTFS")
	rootfs := os.Getenv("LORACTL_TEST_ROOTFS")
	if rootfs == "" {
		t.Fatal("LORACTL_TEST_ROOTFS is not set (scripts/ci/build-test-image.sh --rootfs)")
	}
	f := newFixture(t, "")
	image := "loractl-e2e:latest"
	if out, err := exec.Command("docker", "import", "--change", `CMD ["/bin/sh"]`, rootfs, image).CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
	base, err := exec.Command(f.python, "-c", "import sys; print(sys.base_prefix)").Output()
	if err != nil {
		t.Fatal(err)
	}
	venv := filepath.Dir(filepath.Dir(f.python))
	cfg, _ := os.ReadFile(f.config)
	cfg = append(cfg, []byte("driver:\n  name: docker\n  docker:\n    image: "+image+"\n    python: "+f.python+
		"\n    read_only: ["+venv+", "+strings.TrimSpace(string(base))+"]\n    stop_grace: 60s\n")...)
	if err := os.WriteFile(f.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	r := f.loractl(t, "train", f.config, "--json")
	if r.code != 0 {
		t.Fatalf("train in docker: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	_, final := jsonLines(t, r.stdout)
	runID := final["run_id"].(string)
	m, err := run.ReadManifest(filepath.Join(f.runs, runID))
	if err != nil || m.State != run.StateCompleted || m.Driver != "docker" ||
		m.DriverInfo["image"] != image || !strings.HasPrefix(m.DriverInfo["image_digest"], "sha256:") {
		t.Fatalf("manifest: %+v %v", m, err)
	}
	if _, err := os.Stat(filepath.Join(f.runs, runID, "adapter", "adapter_model.safetensors")); err != nil {
		t.Fatal("no adapter written from inside the container")
	}
	t.Logf("docker run took %s", time.Since(start).Round(time.Second))
}

// TestDockerfileImageTrains runs the trainer in the image Dockerfile.gpu builds
// (scripts/ci/build-trainer-image.sh, registry-free), with nothing from the host but
// the run dir, data and model: the image's own interpreter and stack train the tiny
// model on the CPU and the adapter is adopted.
func TestDockerfileImageTrains(t *testing.T) {
	image := os.Getenv("LORACTL_TRAINER_IMAGE")
	if image == "" {
		t.Skip("LORACTL_TRAINER_IMAGE is not set: build the image with scripts/ci/build-trainer-image.sh")
	}
	f := newFixture(t, "")
	cfg, _ := os.ReadFile(f.config)
	cfg = append(cfg, []byte("driver:\n  name: docker\n  docker:\n    image: "+image+"\n    stop_grace: 60s\n")...)
	if err := os.WriteFile(f.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	r := f.loractl(t, "train", f.config, "--json")
	if r.code != 0 {
		t.Fatalf("train in the Dockerfile.gpu image: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	_, final := jsonLines(t, r.stdout)
	runID := final["run_id"].(string)
	m, err := run.ReadManifest(filepath.Join(f.runs, runID))
	if err != nil || m.State != run.StateCompleted || m.DriverInfo["image"] != image {
		t.Fatalf("manifest: %+v %v", m, err)
	}
	if m.Result == nil || m.Result.Improved == nil || !*m.Result.Improved {
		t.Errorf("the adapter was not adopted: %+v", m.Result)
	}
	t.Logf("run in the Dockerfile.gpu image took %s", time.Since(start).Round(time.Second))
}
