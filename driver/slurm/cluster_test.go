package slurm_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/drivertest"
	"github.com/loractl/loractl/driver/slurm"
)

// needCluster skips unless the test harness started a cluster (scripts/ci/slurm-up.sh
// writes LORACTL_SLURM_TEST=1 and SLURM_CONF into BASE/env). It returns a run-dir base
// whose path the batch script accepts (t.TempDir names may hold unusual characters).
func needCluster(t *testing.T) string {
	t.Helper()
	if os.Getenv("LORACTL_SLURM_TEST") != "1" {
		t.Skip("no Slurm test cluster: run scripts/ci/slurm-up.sh and source the env file it prints (sets LORACTL_SLURM_TEST=1)")
	}
	if _, err := exec.LookPath("sbatch"); err != nil {
		t.Skip("sbatch is not installed: run scripts/ci/slurm-up.sh")
	}
	base, err := os.MkdirTemp("", "loractl-slurm-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(base)
		}
	})
	return base
}

// testDriver polls often: the test cluster answers in milliseconds.
func testDriver(*testing.T) driver.Driver {
	return &slurm.Driver{PollInterval: 200 * time.Millisecond}
}

// unknownHandle names a job id the cluster never issued.
func unknownHandle(valid *driver.Handle) *driver.Handle {
	u := *valid
	var st map[string]any
	_ = json.Unmarshal(valid.State, &st)
	st["job_id"] = "999999999"
	delete(st, "array_task_id")
	u.State, _ = json.Marshal(st)
	u.ID = "999999999"
	return &u
}

// TestContract runs the driver contract suite against the real cluster. Requeueing is
// off here: the suite expects a USR1 to end the trainer with 75, while the Slurm
// driver's own tests cover USR1 → checkpoint → requeue → resume.
func TestContract(t *testing.T) {
	base := needCluster(t)
	drivertest.Run(t, testDriver,
		drivertest.WithOptions(json.RawMessage(`{"max_requeues": 0}`)),
		drivertest.WithRunDirBase(base),
		drivertest.WithTimeout(150*time.Second),
		drivertest.WithUnknownHandle(unknownHandle))
}

var _ = filepath.Join
