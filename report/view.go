package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The view model: what the HTML template prints, already formatted. Every string in it
// is plain text; html/template escapes it for the context it lands in.

type page struct {
	Title     string
	Generated string
	Facts     []fact
	Verdict   verdictView
	Metrics   []metricRow
	Primary   string
	EvalLoss  []fact
	Judge     string
	Stops     []string
	Notes     []string
	LossSVG   template.HTML
	AccSVG    template.HTML
	ChartNote string
	Warnings  []DataWarning
	// Generations
	GenNote     string
	ScoreNames  []string
	Rows        []genRow
	Worse       int
	ConfigYAML  string
	Resolved    string
	ConfigNote  string
	CompareNote string
}

type fact struct{ Key, Value string }

type verdictView struct {
	Word   string // "adopt", "do not adopt", "inconclusive", "" when unknown
	Class  string // good | bad | neutral
	Reason string
	Source string
}

type metricRow struct {
	Name          string
	Primary       bool
	Base, Adapter string
	Delta, CI     string
	N, Errors     int
	Class         string
	// Note says which side is better (comparisons).
	Note string
}

type msgView struct {
	Role, Content string
	System        bool
}

type sideView struct {
	Text    string
	Tokens  int
	Stopped string
	Cut     bool // ended by max_tokens
	Errors  []string
	Missing bool
}

type scoreView struct {
	Name, Base, Adapter string
	Class               string
}

type genRow struct {
	Index     int
	Prompt    []msgView
	Reference string
	Base      sideView
	Adapter   sideView
	Scores    []scoreView
	Judge     string
	JudgeWhy  string
	Class     string // worse | better | same
}

func buildPage(r *Run, loss, acc []byte, now time.Time) *page {
	m := r.Manifest
	p := &page{
		Title:     "loractl report: " + m.RunID,
		Generated: now.UTC().Format("2006-01-02 15:04 UTC"),
		LossSVG:   template.HTML(loss), // #nosec: rendered by gonum's SVG canvas, which escapes text
		AccSVG:    template.HTML(acc),
		Warnings:  r.Warnings,
	}
	p.Facts = runFacts(r)
	p.Verdict = verdictOf(r)
	if s := r.Summary; s != nil {
		p.Primary = s.Primary
		p.Metrics = metricRows(s)
		if s.Judge != nil {
			j := s.Judge
			p.Judge = fmt.Sprintf("judge: the adapter wins %s of comparisons (95%% interval %s–%s): %d wins, %d losses, %d ties",
				pct(j.WinRate), pct(j.CI95[0]), pct(j.CI95[1]), j.Wins, j.Losses, j.Ties)
			if j.Errors > 0 {
				p.Judge += fmt.Sprintf(", %d errors", j.Errors)
			}
		}
		for _, side := range []string{"base", "adapter"} {
			if s.DoesNotStop[side] {
				p.Stops = append(p.Stops, fmt.Sprintf("the %s model does not stop: it ran to max_new_tokens on %s of prompts", side, stopShare(s, side)))
			}
		}
	}
	p.EvalLoss = evalLossFacts(r)
	for _, n := range []string{r.Notes.Summary, r.Notes.Events} {
		if n != "" {
			p.Notes = append(p.Notes, n)
		}
	}
	p.ChartNote = chartNote(&r.Curves)
	p.GenNote = r.Notes.Generations
	p.ScoreNames, p.Rows = genRows(r)
	for _, row := range p.Rows {
		if row.Class == "worse" {
			p.Worse++
		}
	}
	p.ConfigYAML = r.ConfigYAML
	if len(r.Resolved) > 0 {
		var buf bytes.Buffer
		if json.Indent(&buf, r.Resolved, "", "  ") == nil {
			p.Resolved = buf.String()
		}
	}
	p.ConfigNote = r.Notes.Config
	return p
}

func runFacts(r *Run) []fact {
	m := r.Manifest
	fs := []fact{{"run", m.RunID}, {"state", string(m.State)}}
	if model := resolvedString(r.Resolved, "model", "name_or_path"); model != "" {
		fs = append(fs, fact{"model", model})
	}
	if m.Device != "" {
		fs = append(fs, fact{"device", m.Device})
	}
	if !m.CreatedAt.IsZero() {
		fs = append(fs, fact{"created", m.CreatedAt.UTC().Format("2006-01-02 15:04 UTC")})
	}
	if res := m.Result; res != nil {
		fs = append(fs, fact{"steps", strconv.Itoa(res.Step)})
		if res.WallSeconds > 0 {
			fs = append(fs, fact{"wall time", (time.Duration(res.WallSeconds) * time.Second).String()})
		}
	} else if r.Curves.TotalSteps > 0 {
		fs = append(fs, fact{"steps", strconv.Itoa(r.Curves.TotalSteps)})
	}
	if r.Curves.Selected != "" {
		sel := r.Curves.Selected
		if r.Curves.SelectedBy != "" {
			sel += fmt.Sprintf(" (best %s %s)", r.Curves.SelectedBy, num(r.Curves.SelectedVal))
		}
		fs = append(fs, fact{"selected", sel})
	}
	return fs
}

// resolvedString digs a string out of resolved.json, "" when absent.
func resolvedString(raw json.RawMessage, keys ...string) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = m[k]
	}
	s, _ := v.(string)
	return s
}

func verdictOf(r *Run) verdictView {
	if s := r.Summary; s != nil && s.Verdict != "" {
		v := verdictView{Word: strings.ReplaceAll(s.Verdict, "_", " "), Reason: s.Reason, Source: "task evaluation"}
		v.Class = map[string]string{"adopt": "good", "do_not_adopt": "bad"}[s.Verdict]
		if v.Class == "" {
			v.Class = "neutral"
		}
		return v
	}
	if res := r.Manifest.Result; res != nil && res.Improved != nil {
		if *res.Improved {
			return verdictView{Word: "adopt", Class: "good", Source: "eval loss", Reason: "the adapter lowered the eval loss"}
		}
		return verdictView{Word: "do not adopt", Class: "bad", Source: "eval loss", Reason: "the adapter did not lower the eval loss"}
	}
	return verdictView{Class: "neutral", Reason: "no verdict: the run is " + string(r.Manifest.State)}
}

func metricRows(s *Summary) []metricRow {
	names := make([]string, 0, len(s.Metrics))
	for n := range s.Metrics {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == s.Primary) != (names[j] == s.Primary) {
			return names[i] == s.Primary
		}
		return names[i] < names[j]
	})
	rows := make([]metricRow, 0, len(names))
	for _, n := range names {
		ms := s.Metrics[n]
		row := metricRow{Name: n, Primary: n == s.Primary, Base: num(ms.Base), Adapter: num(ms.Adapter),
			Delta: signed(ms.Delta), CI: interval(ms.CI95), N: ms.N, Errors: ms.Errors, Class: "same"}
		switch {
		case ms.CI95[0] > 0:
			row.Class = "better"
		case ms.CI95[1] < 0:
			row.Class = "worse"
		}
		rows = append(rows, row)
	}
	return rows
}

func evalLossFacts(r *Run) []fact {
	var before, after *float64
	var ci *[2]float64
	if s := r.Summary; s != nil && s.EvalLoss != nil {
		before, after, ci = s.EvalLoss.Before, s.EvalLoss.After, s.EvalLoss.CI95Delta
	} else if res := r.Manifest.Result; res != nil {
		before, after = res.EvalLossBefore, res.EvalLossAfter
	}
	if before == nil && after == nil {
		return nil
	}
	out := []fact{{"eval loss before", loss(before)}, {"eval loss after", loss(after)}}
	if before != nil && after != nil && *before != 0 {
		out = append(out, fact{"change", fmt.Sprintf("%+.1f%%", 100*(*after-*before) / *before)})
	}
	if ci != nil {
		out = append(out, fact{"95% interval of the change", fmt.Sprintf("%+.4f … %+.4f", ci[0], ci[1])})
	}
	return out
}

func stopShare(s *Summary, side string) string {
	if r, ok := s.StopRate[side]; ok {
		return pct(1 - r)
	}
	return "more than 10%"
}

func chartNote(c *Curves) string {
	var parts []string
	if len(c.Checkpoints) > 0 {
		steps := make([]string, len(c.Checkpoints))
		for i, s := range c.Checkpoints {
			steps[i] = strconv.Itoa(s)
		}
		parts = append(parts, "checkpoints (dotted grey) at steps "+strings.Join(steps, ", "))
	}
	if c.Selected != "" {
		parts = append(parts, fmt.Sprintf("selected (green): %s at step %d", c.Selected, c.SelectedStep))
	}
	return strings.Join(parts, "; ")
}

// genRows orders the generations worst first: by the primary metric's per-example
// difference adapter − base, an example the adapter could not be scored on first of
// all, then by the judge's winner when there is no score, then by index.
func genRows(r *Run) ([]string, []genRow) {
	if len(r.Generations) == 0 {
		return nil, nil
	}
	names := scoreNames(r.Generations)
	primary := ""
	if r.Summary != nil {
		primary = r.Summary.Primary
	}
	if primary == "" && len(names) > 0 {
		primary = names[0]
	}
	type keyed struct {
		g   *Generation
		key float64
	}
	ks := make([]keyed, len(r.Generations))
	for i := range r.Generations {
		g := &r.Generations[i]
		ks[i] = keyed{g, rowKey(g, primary)}
	}
	sort.SliceStable(ks, func(i, j int) bool {
		if ks[i].key != ks[j].key {
			return ks[i].key < ks[j].key
		}
		return ks[i].g.Index < ks[j].g.Index
	})
	rows := make([]genRow, len(ks))
	for i, k := range ks {
		g := k.g
		row := genRow{Index: g.Index, Reference: g.Reference, Base: sideOf(g.Base), Adapter: sideOf(g.Adapter), Class: "same"}
		switch {
		case k.key < 0:
			row.Class = "worse"
		case k.key > 0:
			row.Class = "better"
		}
		for _, msg := range g.Messages {
			role, _ := msg["role"].(string)
			row.Prompt = append(row.Prompt, msgView{Role: role, Content: contentText(msg), System: role == "system"})
		}
		for _, n := range names {
			b, a := score(g.Base, n), score(g.Adapter, n)
			sv := scoreView{Name: n, Base: optNum(b), Adapter: optNum(a), Class: "same"}
			if b != nil && a != nil && *a < *b {
				sv.Class = "worse"
			} else if b != nil && a != nil && *a > *b {
				sv.Class = "better"
			}
			if n == primary {
				sv.Name += " ★"
			}
			row.Scores = append(row.Scores, sv)
		}
		if g.Judge != nil {
			row.Judge, row.JudgeWhy = g.Judge.Winner, g.Judge.Reason
			if g.Judge.Error != "" {
				row.Judge, row.JudgeWhy = "error", g.Judge.Error
			}
		}
		rows[i] = row
	}
	return names, rows
}

func rowKey(g *Generation, primary string) float64 {
	if g.Adapter != nil {
		if _, failed := g.Adapter.Errors[primary]; failed {
			return math.Inf(-1)
		}
	}
	b, a := score(g.Base, primary), score(g.Adapter, primary)
	if b != nil && a != nil {
		return *a - *b
	}
	if g.Judge != nil {
		return map[string]float64{"base": -1, "adapter": 1}[g.Judge.Winner]
	}
	return 0
}

func scoreNames(gs []Generation) []string {
	seen := map[string]bool{}
	var names []string
	for _, g := range gs {
		for _, s := range []*Side{g.Base, g.Adapter} {
			if s == nil {
				continue
			}
			for _, m := range []map[string]*float64{s.Scores, floatKeys(s.Errors)} {
				for n := range m {
					if !seen[n] {
						seen[n] = true
						names = append(names, n)
					}
				}
			}
		}
	}
	sort.Strings(names)
	return names
}

func floatKeys(m map[string]string) map[string]*float64 {
	out := make(map[string]*float64, len(m))
	for k := range m {
		out[k] = nil
	}
	return out
}

func score(s *Side, name string) *float64 {
	if s == nil || s.Scores == nil {
		return nil
	}
	if v := s.Scores[name]; v != nil && finite(*v) {
		return v
	}
	return nil
}

func sideOf(s *Side) sideView {
	if s == nil {
		return sideView{Missing: true}
	}
	v := sideView{Text: s.Text, Tokens: s.Tokens, Stopped: s.Stopped, Cut: s.Stopped == "max_tokens"}
	names := make([]string, 0, len(s.Errors))
	for n := range s.Errors {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v.Errors = append(v.Errors, n+": "+s.Errors[n])
	}
	return v
}

// contentText is a message's content as text: a string as is, anything else (content
// parts, a tool call with no content) as compact JSON so nothing is hidden.
func contentText(msg map[string]any) string {
	var parts []string
	switch c := msg["content"].(type) {
	case string:
		parts = append(parts, c)
	case nil:
	default:
		b, _ := json.Marshal(c)
		parts = append(parts, string(b))
	}
	if tc, ok := msg["tool_calls"]; ok && tc != nil {
		b, _ := json.Marshal(tc)
		parts = append(parts, "tool_calls: "+string(b))
	}
	return strings.Join(parts, "\n")
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// num formats a metric value with up to four significant digits.
func num(v float64) string {
	if !finite(v) {
		return "–"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func optNum(v *float64) string {
	if v == nil {
		return "–"
	}
	return num(*v)
}

func signed(v float64) string {
	if v > 0 {
		return "+" + num(v)
	}
	return num(v)
}

func interval(ci [2]float64) string { return signed(ci[0]) + " … " + signed(ci[1]) }

func loss(v *float64) string {
	if v == nil || !finite(*v) {
		return "–"
	}
	return strconv.FormatFloat(*v, 'f', 4, 64)
}

func pct(v float64) string { return strconv.FormatFloat(100*v, 'f', 0, 64) + "%" }
