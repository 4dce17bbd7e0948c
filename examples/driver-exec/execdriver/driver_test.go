package execdriver

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/drivertest"
)

// TestMain lets the test binary stand in for loractl-driver-exec: the driver runs
// os.Executable() as its supervisor, which is this binary during tests.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == SuperviseArg {
		os.Exit(Supervise(os.Args[2:]))
	}
	os.Exit(m.Run())
}

func newDriver(t *testing.T) driver.Driver {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return New(self, nil)
}

// unknownHandle points a valid handle at a supervisor and status file that never were.
func unknownHandle(valid *driver.Handle) *driver.Handle {
	u := *valid
	u.ID = "999999999"
	u.State = json.RawMessage(`{"supervisor_pid": 999999999, "status": "/nonexistent/loractl-exec/status.json"}`)
	return &u
}

func TestContract(t *testing.T) {
	drivertest.Run(t, newDriver, drivertest.WithUnknownHandle(unknownHandle))
}

func TestContractOverGRPC(t *testing.T) {
	drivertest.Run(t, drivertest.OverGRPC(newDriver), drivertest.WithUnknownHandle(unknownHandle))
}

func testTask(t *testing.T, command ...string) *driver.Task {
	dir := t.TempDir()
	return &driver.Task{RunID: "t", RunDir: dir, Command: command, LogPath: filepath.Join(dir, "train.log")}
}

func TestStartErrors(t *testing.T) {
	tests := []struct {
		name string
		task *driver.Task
		want string
	}{
		{"missing command", testTask(t, "/nonexistent/python"), "/nonexistent/python"},
		{"empty command", testTask(t), "empty command"},
		{"relative run dir", &driver.Task{RunDir: "runs/x", Command: []string{"true"}, LogPath: "x"}, "not absolute"},
		{"no log path", &driver.Task{RunDir: "/tmp", Command: []string{"true"}}, "no log path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newDriver(t).Start(context.Background(), tc.task)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// TestSupervisorKilled checks the one case the supervisor cannot record: its own
// SIGKILL. The status is then reported as unknown rather than as running forever.
func TestSupervisorKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := newDriver(t)
	task := testTask(t, "/bin/sh", "-c", "sleep 30")
	h, err := d.Start(ctx, task)
	if err != nil {
		t.Fatal(err)
	}
	var hs handleState
	if err := json.Unmarshal(h.State, &hs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The orphaned trainer: its group is named by the handle's ID.
		pid, _ := json.Number(h.ID).Int64()
		_ = syscall.Kill(-int(pid), syscall.SIGKILL)
	})
	if err := syscall.Kill(hs.SupervisorPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	res, err := d.Wait(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != -1 || !strings.Contains(res.Reason, "supervisor died") {
		t.Errorf("Wait = %+v, want exit -1 with a reason naming the supervisor", res)
	}
}

// TestResultReadAfterTheSupervisorExits: a supervisor that records the exit and ends
// between a status read and the liveness check is not taken for one that died first.
func TestResultReadAfterTheSupervisorExits(t *testing.T) {
	status := filepath.Join(t.TempDir(), "status.json")
	if err := writeStatus(status, &taskStatus{Exited: true, ExitCode: 2, FinishedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	ended := exec.Command("true")
	if err := ended.Run(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		onDisk   bool // the supervisor recorded the exit before ending
		wantCode int
	}{
		{"recorded since the read", true, 2},
		{"never recorded", false, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := status
			if !tt.onDisk {
				path = filepath.Join(t.TempDir(), "status.json")
				if err := writeStatus(path, &taskStatus{TrainerPID: 1}); err != nil {
					t.Fatal(err)
				}
			}
			// Start ticks no process has: a reused pid is not taken for the supervisor.
			stale := &task{state: &handleState{SupervisorPID: ended.Process.Pid, SupervisorStart: "0", Status: path}, status: &taskStatus{TrainerPID: 1}}
			r := stale.result()
			if r == nil || r.ExitCode != tt.wantCode {
				t.Fatalf("result %+v, want exit %d", r, tt.wantCode)
			}
		})
	}
}
