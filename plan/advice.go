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
	run       Run
}

// option is one kind of change: it proposes variants of a run, gentlest first.
type option struct {
	name string
	// variants returns candidate runs with their summaries and changes; nil when
	// the option does not apply.
	variants func(r Run) []Advice
}

// options in the order auto-fit tries them: first the changes that keep the
// training mathematically the same (checkpointing, micro-batch, eval batch), then
// the one that changes the base's precision, then the one that changes the data.
var options = []option{
	{"gradient_checkpointing", func(r Run) []Advice {
		if r.GradientCheckpointing {
			return nil
		}
		r.GradientCheckpointing = true
		return []Advice{{Summary: "turn on gradient checkpointing (about 30% slower, same result)",
			Changes: []Change{{"train.gradient_checkpointing", true}}, run: r}}
	}},
	{"micro_batch", func(r Run) []Advice {
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
	{"eval_batch", func(r Run) []Advice {
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
	{"quantization", func(r Run) []Advice {
		if r.Quantization == "4bit" || r.Precision == "fp32" {
			return nil
		}
		r.Quantization, r.DoubleQuant = "4bit", true
		return []Advice{{Summary: "load the base in 4-bit NF4 (QLoRA: needs bitsandbytes, slightly lower quality)",
			Changes: []Change{{"quantization.mode", "4bit"}, {"quantization.double_quant", true}}, run: r}}
	}},
	{"max_length", func(r Run) []Advice {
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

// Advise lists, for each kind of change that lowers the peak, the gentlest variant
// that fits (or the strongest one when none does), each with its new estimate.
func Advise(r Run, available uint64) ([]Advice, error) {
	base, err := r.Estimate()
	if err != nil {
		return nil, err
	}
	var out []Advice
	for _, o := range options {
		vs := o.variants(r)
		if len(vs) == 0 {
			continue
		}
		chosen := -1
		for i := range vs {
			if err := estimateAdvice(&vs[i], available); err != nil {
				return nil, err
			}
			if vs[i].Verdict == Fits {
				chosen = i
				break
			}
		}
		if chosen < 0 {
			chosen = len(vs) - 1
		}
		if vs[chosen].PeakBytes >= base.PeakBytes {
			continue // no help: the peak is elsewhere (e.g. a smaller eval batch when training peaks)
		}
		out = append(out, vs[chosen])
	}
	return out, nil
}

// AutoFit applies changes in the order of options until the run fits, taking from
// each kind the gentlest variant that fits or, when none does, the strongest one
// before moving on. It returns the changed run, the changes, and its estimate; when
// even every change together does not fit, the error says so.
func AutoFit(r Run, available uint64) (Run, []Change, *Estimate, error) {
	e, err := r.Estimate()
	if err != nil {
		return r, nil, nil, err
	}
	var changes []Change
	for _, o := range options {
		if Judge(e.PeakBytes, available) == Fits {
			break
		}
		vs := o.variants(r)
		if len(vs) == 0 {
			continue
		}
		pick := vs[len(vs)-1]
		for i := range vs {
			if err := estimateAdvice(&vs[i], available); err != nil {
				return r, nil, nil, err
			}
			if vs[i].Verdict == Fits {
				pick = vs[i]
				break
			}
		}
		next, err := pick.run.Estimate()
		if err != nil {
			return r, nil, nil, err
		}
		if next.PeakBytes >= e.PeakBytes {
			continue // no help (e.g. the peak is elsewhere)
		}
		r, e = pick.run, next
		changes = mergeChanges(changes, pick.Changes)
	}
	if v := Judge(e.PeakBytes, available); v == DoesNotFit {
		return r, changes, e, fmt.Errorf("even with every change auto-fit knows, the run needs about %s (%s available)",
			humanBytes(int64(e.PeakBytes)), humanBytes(int64(available)))
	}
	return r, changes, e, nil
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
