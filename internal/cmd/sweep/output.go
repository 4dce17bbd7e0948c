package sweep

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/preflight"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/launch"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/sweep"
)

// printHeader says what is about to run.
func printHeader(o *Options, pl *sweep.Plan, driverName, dir string) {
	w := o.Factory.IO.Out
	f := pl.File
	how := f.Method
	if f.Method == sweep.MethodRandom {
		how = fmt.Sprintf("random, count %d, seed %d", f.Count, f.Seed)
	}
	fmt.Fprintf(w, "sweep %s: %d points (%s) over %s on %s, retries %d\n",
		pl.ID, len(pl.Points), how, strings.Join(paramKeys(f), ", "), driverName, f.Retries)
	fmt.Fprintf(w, "  base       %s\n  state      %s\n", f.BasePath, dir)
	for _, d := range pl.Duplicates {
		fmt.Fprintf(w, "  note       point %d is the same run as point %d (%s): run once\n", d.Index, d.Of, d.RunID)
	}
}

func paramKeys(f *sweep.File) []string {
	keys := make([]string, len(f.Params))
	for i, p := range f.Params {
		keys[i] = p.Key
	}
	return keys
}

// dryPoint is one point as --dry-run --json prints it.
type dryPoint struct {
	Index  int           `json:"point"`
	RunID  string        `json:"run_id"`
	State  run.State     `json:"state"`
	Values []sweep.Value `json:"values"`
	Sets   []string      `json:"sets"`
}

// dryRun lists the points, their run ids and what the run store already holds for
// them, and writes nothing.
func dryRun(o *Options, store *run.Store, pl *sweep.Plan, driverName string) error {
	points := make([]dryPoint, len(pl.Points))
	for i, p := range pl.Points {
		st := sweep.Queued
		if m, err := store.Manifest(p.RunID()); err == nil {
			st = m.State
		}
		points[i] = dryPoint{Index: p.Index, RunID: p.RunID(), State: st, Values: p.Values, Sets: p.Sets}
	}
	w := o.Factory.IO.Out
	if o.JSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			ID         string            `json:"sweep_id"`
			Driver     string            `json:"driver"`
			Points     []dryPoint        `json:"points"`
			Duplicates []sweep.Duplicate `json:"duplicates,omitempty"`
		}{pl.ID, driverName, points, pl.Duplicates})
	}
	printHeader(o, pl, driverName, "(dry run: nothing written)")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POINT\tRUN ID\tSTATE\tVALUES")
	for _, p := range points {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", p.Index, p.RunID, p.State, strings.Join(p.Sets, " "))
	}
	return tw.Flush()
}

// printBest names the best point and its adapter.
func printBest(w io.Writer, t *sweep.Table) {
	b := t.Best
	fmt.Fprintf(w, "  best       point %d (%s): %s %s\n", b.Index, valuesText(t.Params, b), t.Metric, fmtFloat(b.Metric))
	if b.AdapterPath != "" {
		fmt.Fprintf(w, "  adapter    %s\n", b.AdapterPath)
	}
}

func valuesText(keys []string, r *sweep.Row) string {
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+r.Value(k))
	}
	return strings.Join(parts, " ")
}

func fmtFloat(f *float64) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.4f", *f)
}

// localSlots asks the GPU pre-flight how many points fit at once: the largest
// point's estimated peak against each GPU's free memory, capped by max_parallel.
// On a machine without an NVIDIA GPU the points share the CPU, max_parallel at once.
func (o *Options) localSlots(pl *sweep.Plan) ([]sweep.Slot, error) {
	m, err := gpu.Open(o.Manager())
	if err != nil {
		return nil, cmdutil.Failed(err)
	}
	defer func() { _ = m.Shutdown() }()
	cands, err := preflight.Candidates(m)
	if err != nil {
		return nil, cmdutil.Failed(err)
	}
	if idx := pl.Points[0].Prepared.Config.GPU; idx != preflight.AnyGPU && len(cands) > 0 {
		var only []preflight.Candidate
		for _, c := range cands {
			if c.Index == idx {
				only = append(only, c)
			}
		}
		if len(only) == 0 {
			return nil, cmdutil.Invalidf("GPU %d was requested but this machine has GPUs 0-%d", idx, cands[len(cands)-1].Index)
		}
		cands = only
	}
	var need uint64
	if len(cands) > 0 {
		need = largestEstimate(pl, o)
	}
	return sweep.LocalSlots(cands, need, pl.File.MaxParallel)
}

// largestEstimate is the highest estimated peak over the points, 0 when any point
// cannot be estimated (its architecture is unknown): then one point per GPU.
func largestEstimate(pl *sweep.Plan, o *Options) uint64 {
	var need uint64
	for _, p := range pl.Points {
		r, err := launch.RunFromResolved(&p.Prepared.Config.Resolved)
		if err != nil {
			o.Factory.Log.Warn().Err(err).Msg("no memory estimate: running one point per GPU")
			return 0
		}
		est, err := r.Estimate()
		if err != nil {
			o.Factory.Log.Warn().Err(err).Msg("no memory estimate: running one point per GPU")
			return 0
		}
		need = max(need, est.PeakBytes)
	}
	return need
}
