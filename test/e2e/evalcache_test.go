package e2e

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/loractl/loractl/run"
)

// cacheEvents are a run's base_eval_cache events as "phase:status".
func cacheEvents(t *testing.T, f *fixture, id string) (out []string, storedBy []string) {
	t.Helper()
	evs, err := run.ReadEvents(filepath.Join(f.runs, id, run.EventsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Type == run.EventBaseEvalCache {
			out = append(out, e.Phase+":"+e.Status)
			storedBy = append(storedBy, e.StoredBy)
		}
	}
	return out, storedBy
}

// TestSweepEvaluatesTheBaseOnce runs a 4-point sweep (rank × learning rate, two at a
// time) with the task evaluation: the base model's eval loss and its replies are
// computed by one point and reused by the three others, and a point that reused them
// reproduces bit for bit without the cache.
func TestSweepEvaluatesTheBaseOnce(t *testing.T) {
	f := newFixture(t, "")
	tinyBase(t, f, "eval:\n  max_examples: 8\n  max_new_tokens: 12\n  metrics: [chrf]\n")
	sw := writeSweep(t, f, `name: cached
base: base.yaml
max_parallel: 2
parameters:
  lora.r: [2, 4]
  train.learning_rate: [1.0e-2, 5.0e-3]
`)
	_, ids := dryRunIDs(t, f, sw)
	if r := f.loractl(t, "sweep", sw); r.code != 0 {
		t.Fatalf("sweep exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	count := map[string]int{}
	var reuser string
	var before *float64
	for _, id := range ids {
		evs, by := cacheEvents(t, f, id)
		if len(evs) != 2 || !strings.HasPrefix(evs[0], "before:") || !strings.HasPrefix(evs[1], "generate:") {
			t.Fatalf("point %s cache events %v", id, evs)
		}
		for i, e := range evs {
			count[e]++
			if strings.HasSuffix(e, ":reused") {
				reuser = id
				if !slices.Contains(ids, by[i]) {
					t.Errorf("point %s reused an entry stored by %q, not a point of this sweep", id, by[i])
				}
			}
		}
		m := manifest(t, f, id)
		if m.State != run.StateCompleted || m.Result == nil || m.Result.EvalLossBefore == nil {
			t.Fatalf("point %s: %s %+v", id, m.State, m.Result)
		}
		if before != nil && *before != *m.Result.EvalLossBefore {
			t.Errorf("point %s eval loss before %v, another point %v", id, *m.Result.EvalLossBefore, *before)
		}
		before = m.Result.EvalLossBefore
	}
	want := map[string]int{"before:stored": 1, "before:reused": 3, "generate:stored": 1, "generate:reused": 3}
	for k, v := range want {
		if count[k] != v {
			t.Fatalf("cache events over the sweep %v, want %v", count, want)
		}
	}

	// The reproduction computes everything itself and must match the point exactly.
	r := f.loractl(t, "reproduce", reuser, "--json")
	var rep struct {
		Reproduction string `json:"reproduction"`
		Reproduced   bool   `json:"reproduced"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil || !rep.Reproduced {
		t.Fatalf("reproduce %s: exit %d\n%s\n%s", reuser, r.code, r.stdout, r.stderr)
	}
	if evs, _ := cacheEvents(t, f, rep.Reproduction); len(evs) != 0 {
		t.Errorf("the reproduction used the cache: %v", evs)
	}
}
