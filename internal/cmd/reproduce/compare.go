package reproduce

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sort"
	"strings"

	"github.com/loractl/loractl/run"
)

// AdapterWeightsFile is the adapter's weights inside its directory (PEFT's name).
const AdapterWeightsFile = "adapter_model.safetensors"

// Report is the comparison of a run and its reproduction.
type Report struct {
	Original     string  `json:"original"`
	Reproduction string  `json:"reproduction"`
	Tolerance    float64 `json:"tolerance"`
	Reproduced   bool    `json:"reproduced"`
	// Metrics compares every final value both runs report, timings excluded.
	Metrics []MetricDiff `json:"metrics"`
	Weights *WeightDiff  `json:"weights,omitempty"`
	// StepLosses compares the per-step losses from the events, when they were logged.
	StepLosses *StepLosses `json:"step_losses,omitempty"`
	// Notes say which comparisons a resume changed, and how.
	Notes []string `json:"notes,omitempty"`
	// Versions lists packages whose version differs between the runs.
	Versions []string `json:"versions_changed,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// MetricDiff is one final value in both runs.
type MetricDiff struct {
	Name         string   `json:"name"`
	Original     *float64 `json:"original"`
	Reproduction *float64 `json:"reproduction"`
	Match        bool     `json:"match"`
}

// compare judges the reproduction against the original. tol < 0 picks the default:
// bit for bit for a CPU run, DefaultGPUTolerance otherwise.
// The events (nil when unreadable) give the per-step losses and tell a resumed run.
func compare(orig, repro *run.Manifest, origEvents, reproEvents []*run.Event, tol float64) (*Report, error) {
	if tol < 0 {
		tol = 0
		// A GPU run whose device was never recorded (its start event not folded in)
		// still gets the GPU tolerance: orig.GPU says where it was placed.
		if (orig.Device != "" && orig.Device != "cpu") || orig.GPU != nil {
			tol = DefaultGPUTolerance
		}
	}
	r := &Report{Original: orig.RunID, Reproduction: repro.RunID, Tolerance: tol, Reproduced: true}
	a, b := orig.Result, repro.Result
	step := func(n int) *float64 { f := float64(n); return &f }
	r.add("step", step(a.Step), step(b.Step), 0)
	r.add("eval_loss_before", a.EvalLossBefore, b.EvalLossBefore, tol)
	r.add("eval_loss_after", a.EvalLossAfter, b.EvalLossAfter, tol)
	ha, hb := readHistory(origEvents), readHistory(reproEvents)
	resumed := ha.resumeStep > 0 || hb.resumeStep > 0
	for _, side := range []struct {
		name string
		h    history
	}{{"the original", ha}, {"the reproduction", hb}} {
		if side.h.resumeStep > 0 {
			r.Notes = append(r.Notes, fmt.Sprintf("%s was resumed from step %d: train_loss and total_flos cover only the part after the resume, so they are not compared; the per-step losses, the eval losses and the adapter are", side.name, side.h.resumeStep))
		}
	}
	names := make([]string, 0, len(a.Metrics))
	for k := range a.Metrics {
		if !timing(k) && !(resumed && sessionMetrics[k]) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		r.add(k, a.Metrics[k], b.Metrics[k], tol)
	}
	if (a.AdapterPath == "") != (b.AdapterPath == "") {
		// One side has no adapter: nothing was reproduced, whatever the metrics say.
		r.Reproduced = false
		r.Metrics = append(r.Metrics, MetricDiff{Name: "adapter"})
	}
	if a.AdapterPath != "" && b.AdapterPath != "" {
		w, err := compareSafetensors(filepath.Join(a.AdapterPath, AdapterWeightsFile), filepath.Join(b.AdapterPath, AdapterWeightsFile))
		if err != nil {
			return nil, fmt.Errorf("compare adapter weights: %w", err)
		}
		r.Weights = w
		if len(w.Mismatch) > 0 || w.MaxAbsDiff > tol {
			r.Reproduced = false
		}
	}
	if len(ha.losses) > 0 || len(hb.losses) > 0 {
		r.StepLosses = compareSteps(ha, hb, tol)
		if !r.StepLosses.Same() {
			r.Reproduced = false
		}
	}
	for _, k := range sortedKeys(orig.Versions, repro.Versions) {
		if orig.Versions[k] != repro.Versions[k] {
			r.Versions = append(r.Versions, fmt.Sprintf("%s %s -> %s", k, orDash(orig.Versions[k]), orDash(repro.Versions[k])))
		}
	}
	return r, nil
}

// timing reports metrics that measure the machine, not the training: they differ
// from run to run by nature.
func timing(name string) bool {
	return strings.Contains(name, "runtime") || strings.Contains(name, "per_second")
}

// add compares one value: equal within tol relative (0: exactly equal).
func (r *Report) add(name string, a, b *float64, tol float64) {
	if a == nil && b == nil {
		return
	}
	m := MetricDiff{Name: name, Original: a, Reproduction: b}
	if a != nil && b != nil {
		d := math.Abs(*a - *b)
		m.Match = d == 0 || d <= tol*math.Max(math.Abs(*a), math.Abs(*b))
	}
	if !m.Match {
		r.Reproduced = false
	}
	r.Metrics = append(r.Metrics, m)
}

func (r *Report) print(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(w, "reproduction %s of %s\n", r.Reproduction, r.Original)
	for _, m := range r.Metrics {
		mark := "same"
		if !m.Match {
			mark = "DIFFERS"
		}
		fmt.Fprintf(w, "  %-22s %-14s %-14s %s\n", m.Name, num(m.Original), num(m.Reproduction), mark)
	}
	if sl := r.StepLosses; sl != nil {
		switch {
		case sl.Same():
			partial := ""
			if len(sl.Partial) > 0 {
				partial = fmt.Sprintf("; step %v not compared: its loss averages only the steps since the resume", sl.Partial)
			}
			fmt.Fprintf(w, "  %-22s %d steps, all the same (largest relative difference %.3g)%s\n", "per-step loss", sl.Steps, sl.MaxRelDiff, partial)
		default:
			fmt.Fprintf(w, "  %-22s %d of %d steps differ (largest relative difference %.3g); missing on one side: %d\n",
				"per-step loss", len(sl.Mismatched), sl.Steps, sl.MaxRelDiff, len(sl.Missing))
		}
	}
	if wd := r.Weights; wd != nil {
		switch {
		case wd.Same():
			fmt.Fprintf(w, "  adapter weights        identical (%d tensors, bit for bit)\n", wd.Tensors)
		case wd.NonFinite:
			fmt.Fprintf(w, "  adapter weights        %d of %d tensors identical; NaN or infinity on one side only, in %s\n",
				wd.Identical, wd.Tensors, wd.MaxTensor)
		default:
			fmt.Fprintf(w, "  adapter weights        %d of %d tensors identical; largest difference %.3g in %s\n",
				wd.Identical, wd.Tensors, wd.MaxAbsDiff, wd.MaxTensor)
			for _, m := range wd.Mismatch {
				fmt.Fprintf(w, "    %s\n", m)
			}
		}
	}
	for _, v := range r.Versions {
		fmt.Fprintf(w, "  version changed        %s\n", v)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note                   %s\n", n)
	}
	verdict := "reproduced"
	if !r.Reproduced {
		verdict = "NOT reproduced"
	}
	if r.Tolerance > 0 {
		verdict += fmt.Sprintf(" (relative tolerance %g)", r.Tolerance)
	} else {
		verdict += " (bit for bit)"
	}
	fmt.Fprintf(w, "  verdict                %s\n", verdict)
	return nil
}

func num(f *float64) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.8g", *f)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sortedKeys(ms ...map[string]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range ms {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// resolvedDiff names the resolved.json keys that differ, for the refusal message.
func resolvedDiff(old, cur []byte) string {
	var a, b map[string]any
	_ = json.Unmarshal(old, &a)
	_ = json.Unmarshal(cur, &b)
	fa, fb := map[string]string{}, map[string]string{}
	flatten("", a, fa)
	flatten("", b, fb)
	var diffs []string
	for _, k := range sortedKeys(fa, fb) {
		if fa[k] != fb[k] {
			diffs = append(diffs, fmt.Sprintf("%s: %s -> %s", k, orDash(fa[k]), orDash(fb[k])))
		}
	}
	if len(diffs) == 0 {
		return "the resolved.json bytes differ"
	}
	return strings.Join(diffs, "; ")
}

func flatten(prefix string, v any, out map[string]string) {
	if m, ok := v.(map[string]any); ok {
		for k, x := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, x, out)
		}
		return
	}
	b, _ := json.Marshal(v)
	out[prefix] = string(b)
}
