package sweep

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/loractl/loractl/run"
)

// Row is one point in the results table.
type Row struct {
	// Rank is the point's place by the sweep's metric (1 is best); 0 for a point
	// without a value (not completed, or the metric missing).
	Rank   int       `json:"rank"`
	Index  int       `json:"point"`
	RunID  string    `json:"run_id"`
	State  run.State `json:"state"`
	Values []Value   `json:"values"`
	// Metric is the value of the sweep's metric for this point.
	Metric         *float64 `json:"metric,omitempty"`
	EvalLossBefore *float64 `json:"eval_loss_before,omitempty"`
	EvalLossAfter  *float64 `json:"eval_loss_after,omitempty"`
	Improved       *bool    `json:"improved,omitempty"`
	Step           int      `json:"step,omitempty"`
	WallSeconds    float64  `json:"wall_seconds,omitempty"`
	// PeakMemoryBytes is torch's peak allocated GPU memory (absent on the CPU).
	PeakMemoryBytes uint64 `json:"peak_memory_bytes,omitempty"`
	AdapterPath     string `json:"adapter_path,omitempty"`
	Failures        int    `json:"failures,omitempty"`
	Error           string `json:"error,omitempty"`

	// Verdict is the task evaluation's adoption verdict (adopt, do_not_adopt,
	// inconclusive), "" for a run without one.
	Verdict string `json:"verdict,omitempty"`
}

// Table is the ranked results of a sweep.
type Table struct {
	ID     string   `json:"sweep_id"`
	Metric string   `json:"metric"`
	Goal   string   `json:"goal"`
	Params []string `json:"params"`
	Rows   []Row    `json:"rows"`
	// Best is the top-ranked completed point, nil when none completed.
	Best *Row `json:"best,omitempty"`
}

// Results reads every point's manifest and ranks the points by the metric: the
// best first, then points without a value in expansion order.
func Results(store *run.Store, st *State) (*Table, error) {
	t := &Table{ID: st.ID, Metric: st.Metric, Goal: st.Goal, Params: st.Params}
	for _, ps := range st.Points {
		r := Row{Index: ps.Index, RunID: ps.RunID, State: ps.State, Values: ps.Values, Failures: ps.Failures, Error: ps.Error}
		m, err := store.Manifest(ps.RunID)
		switch {
		case errors.Is(err, run.ErrNoRun):
		case err != nil:
			return nil, err
		default:
			r.State, r.Error = m.State, m.Error
			if res := m.Result; res != nil {
				r.EvalLossBefore, r.EvalLossAfter, r.Improved = res.EvalLossBefore, res.EvalLossAfter, res.Improved
				r.Step, r.WallSeconds, r.PeakMemoryBytes = res.Step, res.WallSeconds, res.PeakAllocatedBytes
				r.AdapterPath, r.Verdict = res.AdapterPath, res.Verdict
				if m.State == run.StateCompleted {
					r.Metric = metricOf(res, st.Metric)
				}
			}
		}
		t.Rows = append(t.Rows, r)
	}
	sort.SliceStable(t.Rows, func(i, j int) bool {
		a, b := t.Rows[i].Metric, t.Rows[j].Metric
		switch {
		case a == nil || b == nil:
			return a != nil && b == nil
		case st.Goal == Maximize:
			return *a > *b
		default:
			return *a < *b
		}
	})
	for i := range t.Rows {
		if t.Rows[i].Metric != nil {
			t.Rows[i].Rank = i + 1
		}
	}
	if len(t.Rows) > 0 && t.Rows[0].Rank == 1 {
		t.Best = &t.Rows[0]
	}
	return t, nil
}

// metricOf finds a metric in a run's result: the eval loss after training for
// "eval_loss" (the adoption metric), else the trainer's final metrics by name.
func metricOf(r *run.Result, name string) *float64 {
	switch name {
	case "eval_loss", "eval_loss_after":
		return r.EvalLossAfter
	case "eval_loss_before":
		return r.EvalLossBefore
	}
	if task, ok := strings.CutPrefix(name, "eval."); ok {
		switch task {
		case "eval_loss", "loss":
			return r.EvalLossAfter
		}
		// The adapter's mean of a task metric (or the judge's win rate).
		if v, ok := r.EvalMetrics[task]; ok {
			return &v
		}
		return nil
	}
	// nil when absent, and when the trainer wrote null (a diverged, NaN metric): a
	// missing value ranks last, never as a perfect 0.
	return r.Metrics[name]
}

// DefaultGoal is a metric's direction when the sweep does not say: task metrics
// (eval.<name>) are better higher, losses and everything else lower.
func DefaultGoal(metric string) string {
	if task, ok := strings.CutPrefix(metric, "eval."); ok && !strings.HasSuffix(task, "loss") {
		return Maximize
	}
	return Minimize
}

// csvHeader is the fixed part of the CSV columns; the swept keys follow "state".
var csvHeader = []string{"rank", "point", "run_id", "state"}

// WriteCSV writes the table as CSV: one column per swept key.
func (t *Table) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	head := append(append(append([]string(nil), csvHeader...), t.Params...),
		t.Metric, "eval_loss_before", "eval_loss_after", "improved", "verdict", "step", "wall_seconds", "peak_memory_bytes", "adapter_path", "failures", "error")
	if err := cw.Write(head); err != nil {
		return err
	}
	for _, r := range t.Rows {
		rec := []string{rankText(r.Rank), strconv.Itoa(r.Index), r.RunID, string(r.State)}
		for _, k := range t.Params {
			rec = append(rec, r.Value(k))
		}
		improved := ""
		if r.Improved != nil {
			improved = strconv.FormatBool(*r.Improved)
		}
		peak := ""
		if r.PeakMemoryBytes > 0 {
			peak = strconv.FormatUint(r.PeakMemoryBytes, 10)
		}
		rec = append(rec, floatText(r.Metric), floatText(r.EvalLossBefore), floatText(r.EvalLossAfter), improved, r.Verdict,
			strconv.Itoa(r.Step), strconv.FormatFloat(r.WallSeconds, 'f', 1, 64), peak, r.AdapterPath,
			strconv.Itoa(r.Failures), r.Error)
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes the table as one JSON object.
func (t *Table) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(t)
}

// Save writes the table into the sweep directory as results.csv.
func (t *Table) Save(dir string) error {
	var b bytes.Buffer
	if err := t.WriteCSV(&b); err != nil {
		return err
	}
	return run.WriteFileAtomic(filepath.Join(dir, ResultsFileName), b.Bytes(), 0o644)
}

// Value is the point's value of key as text (lists as JSON), "" when it has none.
func (r *Row) Value(key string) string {
	for _, v := range r.Values {
		if v.Key == key {
			if s, ok := v.Value.(string); ok {
				return s
			}
			b, _ := json.Marshal(v.Value)
			return string(b)
		}
	}
	return ""
}

func rankText(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func floatText(f *float64) string {
	if f == nil {
		return ""
	}
	return strconv.FormatFloat(*f, 'g', 6, 64)
}

// Progress counts points by state, for `sweep status`.
func Progress(t *Table) map[run.State]int {
	out := map[run.State]int{}
	for _, r := range t.Rows {
		out[r.State]++
	}
	return out
}

// ProgressLine summarises the counts in one line, in lifecycle order.
func ProgressLine(counts map[run.State]int, total int) string {
	s := fmt.Sprintf("%d points:", total)
	for _, st := range []run.State{run.StateCompleted, run.StateRunning, run.StatePending, Queued, run.StateInterrupted, run.StateFailed} {
		if n := counts[st]; n > 0 {
			s += fmt.Sprintf(" %d %s,", n, st)
		}
	}
	return s[:len(s)-1]
}
