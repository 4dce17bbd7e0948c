package runs

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/run"
)

var knownStates = []run.State{run.StateCreated, run.StatePending, run.StateRunning, run.StateCompleted, run.StateFailed, run.StateInterrupted}

func (o *Options) filtered() bool { return len(o.States) > 0 || o.Name != "" || o.Sweep != "" }

// checkFilters refuses a state no run can be in and a malformed glob (exit 2).
func (o *Options) checkFilters() error {
	for _, s := range o.States {
		if !slices.Contains(knownStates, run.State(s)) {
			return cmdutil.Invalidf("--state %s: want one of %s", s, joinStates())
		}
	}
	if _, err := path.Match(o.Name, ""); err != nil {
		return cmdutil.Invalidf("--name %s: %v", o.Name, err)
	}
	return nil
}

// resolveSweep turns --sweep (an id or a unique prefix of one) into the whole sweep id
// of the listed runs: a prefix of several sweeps' ids is refused with them (exit 2),
// as a run-id prefix is, rather than listing the points of them all.
func (o *Options) resolveSweep(ms []*run.Manifest) error {
	if o.Sweep == "" {
		return nil
	}
	var ids []string
	for _, m := range ms {
		if m.Sweep == o.Sweep {
			return nil
		}
		if strings.HasPrefix(m.Sweep, o.Sweep) && !slices.Contains(ids, m.Sweep) {
			ids = append(ids, m.Sweep)
		}
	}
	if len(ids) > 1 {
		slices.Sort(ids)
		return cmdutil.Invalidf("--sweep %s matches %d sweeps: %s; give more of the sweep id", o.Sweep, len(ids), strings.Join(ids, ", "))
	}
	if len(ids) == 1 {
		o.Sweep = ids[0]
	}
	return nil
}

// keepBeforeRefresh applies the filters that no refresh can change (name, sweep), so
// runs filtered out are not refreshed at all.
func (o *Options) keepBeforeRefresh(m *run.Manifest) bool {
	if o.Name != "" {
		if strings.ContainsAny(o.Name, "*?[") {
			if ok, _ := path.Match(o.Name, m.Name); !ok {
				return false
			}
		} else if !strings.HasPrefix(m.Name, o.Name) && !strings.HasPrefix(m.RunID, o.Name) {
			return false
		}
	}
	if o.Sweep != "" && m.Sweep != o.Sweep { // resolveSweep made it the whole id
		return false
	}
	return true
}

// keep applies the state filter, on the refreshed state.
func (o *Options) keep(m *run.Manifest) bool {
	return len(o.States) == 0 || slices.Contains(o.States, string(m.State))
}

func joinStates() string {
	var s []string
	for _, st := range knownStates {
		s = append(s, string(st))
	}
	return fmt.Sprint(strings.Join(s, ", "))
}
