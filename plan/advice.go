package plan

import (
	"fmt"
)

// Verdict is how an estimate compares with the memory available.
type Verdict string

// Verdicts. Tight means within the estimator's ±10% target of the limit: it may run,
// or it may fail with out-of-memory late in a run on the longest batch.
const (
	Fits       Verdict = "fits"
	Tight      Verdict = "tight"
	DoesNotFit Verdict = "does not fit"
)

// TightMargin is the fraction of the available memory above which a fit is tight.
const TightMargin = 0.90

// Judge compares a peak with the available bytes.
func Judge(peak, available uint64) Verdict {
	switch {
	case peak > available:
		return DoesNotFit
	case float64(peak) > TightMargin*float64(available):
		return Tight
	}
	return Fits
}

// better reports whether verdict a is better than b (fits > tight > does not fit).
func better(a, b Verdict) bool { return rank(a) > rank(b) }

func rank(v Verdict) int {
	switch v {
	case Fits:
		return 2
	case Tight:
		return 1
	}
	return 0
}

// Change is one setting changed by advice or auto-fit. Setting is the key path in
// resolved.json; Value is the new value, JSON-ready.
type Change struct {
	Setting string `json:"setting"`
	Value   any    `json:"value"`
}

// Advice is one way to make a run fit, with the estimate after it.
type Advice struct {
	// Summary says what to do and what it costs, for people.
	Summary   string   `json:"summary"`
	Changes   []Change `json:"changes"`
	PeakBytes uint64   `json:"peak_bytes"`
	Verdict   Verdict  `json:"verdict"`
	// Partial marks a change that does not change the verdict by itself but cuts the
	// peak by at least PartialCut: a step towards a fit that others complete.
	Partial bool `json:"partial,omitempty"`
	run     Run
}

// PartialCut is the share of the peak a change must save to be advised when it does
// not make the run fit by itself (checkpointing alone taking 158 GiB to 27 GiB on a
// 24 GiB GPU is worth saying).
const PartialCut = 0.10

// option is one kind of change: it proposes variants of a run, gentlest first.
type option struct {
	name string
	// mustFit: a variant is only worth proposing when it makes the run fit, not
	// merely tight (cutting max_length truncates the data, a cost only worth paying
	// for a run that then fits).
	mustFit bool
	// variants returns candidate runs with their summaries and changes; nil when
	// the option does not apply.
	variants func(r Run) []Advice
}

// options in the order auto-fit tries them: first the changes that keep the
// training mathematically the same (checkpointing, micro-batch, eval batch), then
// the one that changes the base's precision, then the one that changes the data.
var options = []option{
	{"gradient_checkpointing", false, func(r Run) []Advice {
		if r.GradientCheckpointing {
			return nil
		}
		r.GradientCheckpointing = true
		return []Advice{{Summary: "turn on gradient checkpointing (about 30% slower, same result)",
			Changes: []Change{{"train.gradient_checkpointing", true}}, run: r}}
	}},
	{"micro_batch", false, func(r Run) []Advice {
		var out []Advice
		ga := max(r.GradAccum, 1)
		for b := r.BatchSize - 1; b >= 1; b-- {
			if r.BatchSize%b != 0 {
				continue
			}
			v := r
			v.BatchSize, v.GradAccum = b, ga*r.BatchSize/b
			out = append(out, Advice{
				Summary: fmt.Sprintf("micro-batch %d with grad_accum %d (same effective batch %d, slower)", b, v.GradAccum, r.BatchSize*ga),
				Changes: []Change{{"train.batch_size", b}, {"train.grad_accum", v.GradAccum}}, run: v})
		}
		return out
	}},
	{"eval_batch", false, func(r Run) []Advice {
		eb := r.EvalBatchSize
		if !r.Eval || eb <= 1 {
			return nil
		}
		var out []Advice
		for b := eb / 2; b >= 1; b /= 2 {
			v := r
			v.EvalBatchSize = b
			out = append(out, Advice{Summary: fmt.Sprintf("evaluation batch %d (same result)", b),
				Changes: []Change{{"train.eval_batch_size", b}}, run: v})
		}
		return out
	}},
	{"quantization", false, func(r Run) []Advice {
		if r.Quantization == "4bit" || r.Precision == "fp32" {
			return nil
		}
		r.Quantization, r.DoubleQuant = "4bit", true
		return []Advice{{Summary: "load the base in 4-bit NF4 (QLoRA: needs bitsandbytes, slightly lower quality)",
			Changes: []Change{{"quantization.mode", "4bit"}, {"quantization.double_quant", true}}, run: r}}
	}},
	{"max_length", true, func(r Run) []Advice {
		var out []Advice
		for l := r.MaxLength / 2; l >= 128; l /= 2 {
			v := r
			v.MaxLength = l
			out = append(out, Advice{Summary: fmt.Sprintf("max_length %d (longer examples are truncated)", l),
				Changes: []Change{{"train.max_length", l}}, run: v})
		}
		return out
	}},
}

// estimateAdvice fills in an advice's estimate and verdict.
func estimateAdvice(a *Advice, available uint64) error {
	e, err := a.run.Estimate()
	if err != nil {
		return err
	}
	a.PeakBytes, a.Verdict = e.PeakBytes, Judge(e.PeakBytes, available)
	return nil
}

// Advise lists, for each kind of change, the gentlest variant that makes the run fit
// or, when none does, the gentlest that at least improves its verdict (does not fit
// → tight), each with its new estimate. A change that leaves the verdict as it is is
// only advice when it cuts the peak by PartialCut or more (marked Partial: combine it
// with others, as --auto-fit does), and a max_length cut only when it makes the run fit.
func Advise(r Run, available uint64) ([]Advice, error) {
	base, err := r.Estimate()
	if err != nil {
		return nil, err
	}
	was := Judge(base.PeakBytes, available)
	var out []Advice
	for _, o := range options {
		vs := o.variants(r)
		chosen := -1
		for i := range vs {
			if err := estimateAdvice(&vs[i], available); err != nil {
				return nil, err
			}
			if vs[i].Verdict == Fits {
				chosen = i
				break
			}
			if chosen < 0 && !o.mustFit && better(vs[i].Verdict, was) {
				chosen = i
			}
		}
		if chosen < 0 || !better(vs[chosen].Verdict, was) {
			// The verdict stays; a large enough cut is still worth saying.
			best := -1
			for i := range vs {
				if best < 0 || vs[i].PeakBytes < vs[best].PeakBytes {
					best = i
				}
			}
			if o.mustFit || best < 0 || float64(vs[best].PeakBytes) > (1-PartialCut)*float64(base.PeakBytes) {
				continue // no help (e.g. a smaller eval batch when training peaks)
			}
			vs[best].Partial = true
			out = append(out, vs[best])
			continue
		}
		out = append(out, vs[chosen])
	}
	return out, nil
}

// AutoFit applies changes in the order of options until the run fits, taking from
// each kind the gentlest variant that fits or, when none does, the strongest one
// (a max_length cut only when it makes the run fit) before moving on. Changes that
// turn out not to be needed for the final verdict are then dropped, latest first.
// It returns the changed run, the changes and its estimate. When no combination
// improves the verdict (tight stays tight, does not fit stays does not fit), nothing
// is changed: the run, no changes and its own estimate come back with an error that
// says so.
func AutoFit(r Run, available uint64) (Run, []Change, *Estimate, error) {
	e0, err := r.Estimate()
	if err != nil {
		return r, nil, nil, err
	}
	was := Judge(e0.PeakBytes, available)
	if was == Fits {
		return r, nil, e0, nil
	}
	cur, e := r, e0
	var steps [][]Change
	for _, o := range options {
		if Judge(e.PeakBytes, available) == Fits {
			break
		}
		vs := o.variants(cur)
		if len(vs) == 0 {
			continue
		}
		pick := -1
		for i := range vs {
			if err := estimateAdvice(&vs[i], available); err != nil {
				return r, nil, nil, err
			}
			if vs[i].Verdict == Fits {
				pick = i
				break
			}
		}
		if pick < 0 {
			if o.mustFit {
				continue
			}
			pick = len(vs) - 1
		}
		next, err := vs[pick].run.Estimate()
		if err != nil {
			return r, nil, nil, err
		}
		if next.PeakBytes >= e.PeakBytes {
			continue // no help (e.g. the peak is elsewhere)
		}
		cur, e = vs[pick].run, next
		steps = append(steps, vs[pick].Changes)
	}
	// Drop the steps the final verdict does not need.
	got := Judge(e.PeakBytes, available)
	for i := len(steps) - 1; i >= 0; i-- {
		rest := append(append([][]Change(nil), steps[:i]...), steps[i+1:]...)
		v, err := r.with(rest)
		if err != nil {
			return r, nil, nil, err
		}
		ve, err := v.Estimate()
		if err != nil {
			return r, nil, nil, err
		}
		if !better(got, Judge(ve.PeakBytes, available)) {
			steps, cur, e = rest, v, ve
		}
	}
	if !better(got, was) {
		if was == Tight {
			return r, nil, e0, fmt.Errorf("no change auto-fit knows makes the run fit: it stays tight at about %s of %s (it may run, or fail out of memory on the longest batch)",
				humanBytes(int64(e0.PeakBytes)), humanBytes(int64(available)))
		}
		return r, nil, e0, fmt.Errorf("even with every change auto-fit knows, the run needs about %s (%s available)",
			humanBytes(int64(e.PeakBytes)), humanBytes(int64(available)))
	}
	var changes []Change
	for _, st := range steps {
		changes = mergeChanges(changes, st)
	}
	return cur, changes, e, nil
}

// with returns r with the changes of steps applied in order.
func (r Run) with(steps [][]Change) (Run, error) {
	for _, st := range steps {
		for _, c := range st {
			var ok bool
			switch c.Setting {
			case "train.gradient_checkpointing":
				r.GradientCheckpointing, ok = c.Value.(bool)
			case "train.batch_size":
				r.BatchSize, ok = c.Value.(int)
			case "train.grad_accum":
				r.GradAccum, ok = c.Value.(int)
			case "train.eval_batch_size":
				r.EvalBatchSize, ok = c.Value.(int)
			case "quantization.mode":
				r.Quantization, ok = c.Value.(string)
			case "quantization.double_quant":
				r.DoubleQuant, ok = c.Value.(bool)
			case "train.max_length":
				r.MaxLength, ok = c.Value.(int)
			default:
				ok = false
			}
			if !ok {
				return r, fmt.Errorf("cannot apply %s=%v", c.Setting, c.Value)
			}
		}
	}
	return r, nil
}

// mergeChanges appends add to cs, replacing earlier changes of the same setting.
func mergeChanges(cs, add []Change) []Change {
	for _, a := range add {
		replaced := false
		for i := range cs {
			if cs[i].Setting == a.Setting {
				cs[i], replaced = a, true
			}
		}
		if !replaced {
			cs = append(cs, a)
		}
	}
	return cs
}
