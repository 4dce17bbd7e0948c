package sweep

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCarriedPicksTheMostAdvancedRecord: the newest points.json may hold a stale copy
// of a point another version of the sweep ran since; launches decide, not file age.
func TestCarriedPicksTheMostAdvancedRecord(t *testing.T) {
	base := t.TempDir()
	write := func(dir string, st State) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(base, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(st)
		if err := os.WriteFile(filepath.Join(base, dir, PointsFileName), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	write("s-aaaa", State{Name: "s", UpdatedAt: now.Add(-time.Hour), Points: []*PointState{{RunID: "r1", Launches: 3, Failures: 2}}})
	write("s-bbbb", State{Name: "s", UpdatedAt: now, Points: []*PointState{{RunID: "r1", Launches: 1, Failures: 1}, {RunID: "r2", Launches: 1}}})
	write("s-b-cccc", State{Name: "s-b", UpdatedAt: now, Points: []*PointState{{RunID: "r1", Launches: 9, Failures: 9}}})
	got := carried(base, "s", filepath.Join(base, "s-new"))
	if p := got["r1"]; p == nil || p.Launches != 3 || p.Failures != 2 {
		t.Errorf("r1: %+v, want the record with 3 launches", p)
	}
	if p := got["r2"]; p == nil || p.Launches != 1 {
		t.Errorf("r2: %+v", p)
	}
}
