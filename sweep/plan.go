package sweep

import (
	"errors"
	"fmt"
	"strings"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/runner"
)

// maxReported caps how many distinct problems a failed build lists.
const maxReported = 20

// Plan is a sweep ready to run: every point's config validated and prepared as a
// run, with the run id the run store will use.
type Plan struct {
	File *File
	// ID names the sweep: its name and a hash of its points' run ids, so the same
	// file, base config and data always give the same sweep.
	ID     string
	Points []*Planned
	// Duplicates are points whose config resolved to the run of an earlier point
	// (a random search drew the same values twice); each runs once.
	Duplicates []Duplicate
}

// Planned is a point with its validated config and run id.
type Planned struct {
	*Point
	Prepared *runner.Prepared
}

// RunID is the point's run id.
func (p *Planned) RunID() string { return p.Prepared.RunID }

// Duplicate records a point that is the same run as an earlier one.
type Duplicate struct {
	Index int
	Of    int
	RunID string
}

// Build expands the sweep and validates every point with the real config validation
// (the base config with the point's values as --set overrides). validateDriver, when
// set, also checks the chosen driver's section. Problems name the point and the key,
// located in the sweep file for swept keys and in the base config otherwise.
func Build(f *File, validateDriver func(*config.Config) error) (*Plan, error) {
	points, err := Expand(f)
	if err != nil {
		return nil, err
	}
	pl := &Plan{File: f}
	var probs problems
	seen := map[string]int{}
	for _, pt := range points {
		cfg, err := config.Parse(f.BasePath, f.BaseSource, pt.Sets)
		if err == nil && validateDriver != nil {
			err = validateDriver(cfg)
		}
		if err == nil {
			err = f.checkEvalMetric(cfg)
		}
		if err != nil {
			probs.add(f, pt, err)
			continue
		}
		p, err := runner.Prepare(cfg)
		if err != nil {
			return nil, fmt.Errorf("point %d (%s): %w", pt.Index, pt.Label(), err)
		}
		if first, dup := seen[p.RunID]; dup {
			pl.Duplicates = append(pl.Duplicates, Duplicate{Index: pt.Index, Of: first, RunID: p.RunID})
			continue
		}
		seen[p.RunID] = pt.Index
		pl.Points = append(pl.Points, &Planned{Point: pt, Prepared: p})
	}
	if len(probs.list) > 0 {
		return nil, probs.errors(len(points))
	}
	ids := make([]string, len(pl.Points))
	for i, p := range pl.Points {
		ids[i] = p.RunID()
	}
	pl.ID = f.Name + "-" + run.HashBytes([]byte(strings.Join(ids, "\n")))[:10]
	return pl, nil
}

// checkEvalMetric refuses a metric: eval.<name> that names no metric of the point's
// eval.metrics: every point would rank last, and the sweep would find nothing.
func (f *File) checkEvalMetric(cfg *config.Config) error {
	name, ok := strings.CutPrefix(f.Metric, "eval.")
	if !ok || name == "eval_loss" || name == "loss" {
		return nil
	}
	ev := cfg.Resolved.Eval
	if ev.Metric(name) != nil {
		return nil
	}
	names := make([]string, len(ev.Metrics))
	for i, m := range ev.Metrics {
		names[i] = m.Name
	}
	have := "it has none"
	if len(names) > 0 {
		have = "it has " + strings.Join(names, ", ")
	}
	return f.at("metric", "%s names no metric in the config's eval.metrics (%s; eval.eval_loss is the loss)", f.Metric, have)
}

// problems gathers validation errors across points; the same problem found in many
// points (a bad base config) is reported once, with how many points share it.
type problems struct {
	list  []*config.FieldError
	first map[string]int // problem key → index in list
	count []int
	point []*Point
	other []error
}

func (ps *problems) add(f *File, pt *Point, err error) {
	var list config.Errors
	var fe *config.FieldError
	switch {
	case errors.As(err, &list):
	case errors.As(err, &fe):
		list = config.Errors{fe}
	default:
		ps.other = append(ps.other, fmt.Errorf("point %d (%s): %w", pt.Index, pt.Label(), err))
		return
	}
	if ps.first == nil {
		ps.first = map[string]int{}
	}
	for _, e := range list {
		e := f.locate(e)
		k := e.Error()
		if i, ok := ps.first[k]; ok {
			ps.count[i]++
			continue
		}
		ps.first[k] = len(ps.list)
		ps.list = append(ps.list, e)
		ps.count = append(ps.count, 1)
		ps.point = append(ps.point, pt)
	}
}

// locate moves a config error into the sweep file where it belongs there: a swept
// key is reported at its parameter, an inline base's line is shifted to the sweep
// file's. Errors in a base config file keep their own file:line.
func (f *File) locate(e *config.FieldError) *config.FieldError {
	out := *e
	switch {
	case e.File == "--set":
		out.File = f.Path
		out.Line, out.Col = 0, 0
		for _, p := range f.Params {
			if p.Key == e.Key {
				out.Line, out.Col = p.Line, p.Col
			}
		}
	case e.File == f.BasePath && f.baseLine > 0:
		out.File = f.Path
		if out.Line > 0 {
			out.Line += f.baseLine
			out.Col += f.baseCol
		}
	}
	return &out
}

// errors renders the gathered problems, each naming its point.
func (ps *problems) errors(total int) error {
	var out config.Errors
	for i, e := range ps.list {
		if len(out) == maxReported {
			out = append(out, &config.FieldError{File: e.File, Msg: fmt.Sprintf("... and %d more problems", len(ps.list)-maxReported)})
			break
		}
		pt := ps.point[i]
		where := fmt.Sprintf("point %d (%s)", pt.Index, pt.Label())
		switch n := ps.count[i]; {
		case n == total && total > 1:
			where = "every point"
		case n > 1:
			where += fmt.Sprintf(" and %d more points", n-1)
		}
		c := *e
		c.Msg = where + ": " + e.Msg
		out = append(out, &c)
	}
	switch {
	case len(ps.other) == 0:
		return out
	case len(out) == 0:
		return errors.Join(ps.other...)
	}
	return errors.Join(append([]error{out}, ps.other...)...)
}
