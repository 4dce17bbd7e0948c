package container

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/loractl/loractl/driver"
)

func TestContainerStateStatus(t *testing.T) {
	started := "2026-11-28T04:49:18.600442743Z"
	tests := []struct {
		name, js string
		state    driver.TaskState
		reason   string
		exit     *driver.ExitResult
		finished bool
	}{
		{"docker created", `{"Status":"created","StartedAt":"0001-01-01T00:00:00Z","FinishedAt":"0001-01-01T00:00:00Z"}`, driver.StatePending, "", nil, false},
		{"podman configured", `{"Status":"configured"}`, driver.StatePending, "", nil, false},
		{"running", `{"Status":"running","Running":true,"StartedAt":"` + started + `","FinishedAt":"0001-01-01T00:00:00Z"}`, driver.StateRunning, "", nil, false},
		{"paused", `{"Status":"paused","Running":true,"Paused":true}`, driver.StateRunning, "paused", nil, false},
		{"completed", `{"Status":"exited","ExitCode":0,"StartedAt":"` + started + `","FinishedAt":"` + started + `"}`, driver.StateExited, "", &driver.ExitResult{}, true},
		{"interrupted with a checkpoint", `{"Status":"exited","ExitCode":75}`, driver.StateExited, "", &driver.ExitResult{ExitCode: 75}, false},
		{"killed", `{"Status":"exited","ExitCode":137}`, driver.StateExited, "", &driver.ExitResult{ExitCode: 137, Signal: 9, Reason: "killed by signal 9"}, false},
		{"oom", `{"Status":"exited","ExitCode":137,"OOMKilled":true}`, driver.StateExited, "", &driver.ExitResult{ExitCode: 137, Signal: 9, OOMKilled: true, Reason: "out of memory: the kernel killed the trainer (raise the memory option or lower batch_size)"}, false},
		{"runtime error", `{"Status":"exited","ExitCode":127,"Error":"exec: \"sh\": not found"}`, driver.StateExited, "", &driver.ExitResult{ExitCode: 127, Reason: `exec: "sh": not found`}, false},
		{"podman stopped", `{"Status":"stopped","ExitCode":1}`, driver.StateExited, "", &driver.ExitResult{ExitCode: 1}, false},
		{"dead", `{"Status":"dead","Dead":true,"ExitCode":255}`, driver.StateExited, "", &driver.ExitResult{ExitCode: 255}, false},
		{"unknown", `{"Status":"weird"}`, driver.StateUnknown, "weird", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cs containerState
			if err := json.Unmarshal([]byte(tt.js), &cs); err != nil {
				t.Fatal(err)
			}
			s := cs.status()
			if s.State != tt.state || s.Reason != tt.reason {
				t.Errorf("state = %s (%q), want %s (%q)", s.State, s.Reason, tt.state, tt.reason)
			}
			if (s.Exit == nil) != (tt.exit == nil) || (s.Exit != nil && *s.Exit != *tt.exit) {
				t.Errorf("exit = %+v, want %+v", s.Exit, tt.exit)
			}
			if tt.finished != !s.FinishedAt.IsZero() {
				t.Errorf("FinishedAt = %v", s.FinishedAt)
			}
			if !s.StartedAt.IsZero() && s.StartedAt.Year() <= 1 {
				t.Errorf("placeholder StartedAt leaked: %v", s.StartedAt)
			}
		})
	}
}

func TestHandleDecodeRefusesForeignAndBrokenHandles(t *testing.T) {
	good, _ := json.Marshal(handleState{Engine: Docker, Binary: "/usr/bin/docker", Name: "loractl-x"})
	tests := []struct {
		name string
		h    *driver.Handle
	}{
		{"nil", nil},
		{"other driver", &driver.Handle{Driver: "podman", Version: driver.HandleVersion, ID: "abc", State: good}},
		{"old version", &driver.Handle{Driver: "docker", Version: driver.HandleVersion + 1, ID: "abc", State: good}},
		{"no state", &driver.Handle{Driver: "docker", Version: driver.HandleVersion, ID: "abc"}},
		{"id looks like a flag", &driver.Handle{Driver: "docker", Version: driver.HandleVersion, ID: "--all", State: good}},
	}
	d := NewDocker()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := d.decode(tt.h); err == nil {
				t.Error("decode accepted the handle")
			}
		})
	}
	if _, err := d.decode(&driver.Handle{Driver: "docker", Version: driver.HandleVersion, ID: "abc", State: good}); err != nil {
		t.Errorf("decode refused a good handle: %v", err)
	}
}

func TestEndpointEnvIsCaptured(t *testing.T) {
	// Start from none set (the engine tests set some); t.Setenv restores them after.
	for _, vars := range endpointVars {
		for _, k := range vars {
			t.Setenv(k, "")
			if err := os.Unsetenv(k); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Setenv("DOCKER_HOST", "unix:///tmp/x.sock")
	t.Setenv("CONTAINERS_STORAGE_CONF", "/tmp/storage.conf")
	if got := endpointEnv(Docker); len(got) != 1 || got["DOCKER_HOST"] != "unix:///tmp/x.sock" {
		t.Errorf("docker endpoint = %v", got)
	}
	if got := endpointEnv(Podman); len(got) != 1 || got["CONTAINERS_STORAGE_CONF"] != "/tmp/storage.conf" {
		t.Errorf("podman endpoint = %v", got)
	}
}

func TestRealTime(t *testing.T) {
	if !realTime(time.Time{}).IsZero() || realTime(time.Unix(1, 0)).IsZero() {
		t.Error("realTime")
	}
}
