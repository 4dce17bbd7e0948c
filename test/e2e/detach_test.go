package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/loractl/loractl/run"
)

// TestLocalDetach: `train --detach` with the local driver returns at once and the
// trainer trains on without its controller; `runs` shows it running, `logs -f`
// reattaches and follows it to the end, and the run is recorded as completed.
func TestLocalDetach(t *testing.T) {
	f := newFixture(t, "")
	start := time.Now()
	r := f.loractl(t, "train", f.config, "--detach")
	if r.code != 0 {
		t.Fatalf("train --detach exit %d\n%s", r.code, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(id, "e2e-") {
		t.Fatalf("train --detach printed %q, want the run id", r.stdout)
	}
	t.Logf("detached after %s", time.Since(start).Round(time.Millisecond))
	if r := f.loractl(t, "runs"); !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "running") {
		t.Errorf("runs right after detaching:\n%s", r.stdout)
	}
	r = f.loractl(t, "logs", "-f", id)
	if r.code != 0 || !strings.Contains(r.stdout, "trainer completed at step 24") {
		t.Fatalf("logs -f exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = f.loractl(t, "runs", "--json")
	if !strings.Contains(r.stdout, `"state": "completed"`) {
		t.Errorf("after the detached run ended, runs --json:\n%s", r.stdout)
	}
	m, err := run.ReadManifest(f.runs + "/" + id)
	if err != nil || m.State != run.StateCompleted || m.Result == nil || m.Result.AdapterPath == "" {
		t.Fatalf("manifest after the detached run: %+v %v", m, err)
	}
}

// TestLocalDetachStop: `stop` reaches a detached local trainer through its handle; it
// checkpoints and the run is interrupted, resumable.
func TestLocalDetachStop(t *testing.T) {
	f := newFixture(t, "")
	r := f.loractl(t, "train", f.config, "--detach", "--set", "train.max_steps=400")
	if r.code != 0 {
		t.Fatalf("train --detach exit %d\n%s", r.code, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if _, found, _ := run.LatestComplete(f.runs + "/" + id); found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint from the detached trainer within 3 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := f.loractl(t, "stop", id); r.code != 0 {
		t.Fatalf("stop exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	m, err := run.ReadManifest(f.runs + "/" + id)
	if err != nil || m.State != run.StateInterrupted {
		t.Fatalf("state after stop: %+v %v", m, err)
	}
}
