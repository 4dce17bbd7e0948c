package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Comparison is two runs side by side on the same eval set: their verdicts and eval
// losses, each task metric of the adapters paired by example index with a bootstrap
// interval of B − A, the settings that differ, and both runs' curves.
type Comparison struct {
	A RunSummary `json:"a"`
	B RunSummary `json:"b"`
	// EvalSet says how the eval sets were found to be the same.
	EvalSet  string              `json:"eval_set"`
	Paired   int                 `json:"paired"`
	Metrics  []MetricComparison  `json:"metrics"`
	Settings []SettingDifference `json:"settings"`
	Notes    []string            `json:"notes,omitempty"`

	a, b *Run
}

// RunSummary is one run's headline figures in a comparison.
type RunSummary struct {
	ID             string   `json:"id"`
	State          string   `json:"state"`
	Verdict        string   `json:"verdict,omitempty"`
	Reason         string   `json:"reason,omitempty"`
	Steps          int      `json:"steps,omitempty"`
	EvalLossBefore *float64 `json:"eval_loss_before,omitempty"`
	EvalLossAfter  *float64 `json:"eval_loss_after,omitempty"`
	JudgeWinRate   *float64 `json:"judge_win_rate,omitempty"`
	Curves         Curves   `json:"curves"`
}

// MetricComparison is one task metric of the two adapters over the paired examples:
// the means, the mean per-example difference B − A and its 95% bootstrap interval.
type MetricComparison struct {
	Name  string     `json:"name"`
	A     float64    `json:"a"`
	B     float64    `json:"b"`
	Delta float64    `json:"delta"`
	CI95  [2]float64 `json:"ci95"`
	N     int        `json:"n"`
	// Better is "a" or "b" when the interval excludes 0, "" when it does not.
	Better string `json:"better"`
}

// SettingDifference is one resolved.json key whose value differs ("" when absent).
type SettingDifference struct {
	Key string `json:"key"`
	A   string `json:"a"`
	B   string `json:"b"`
}

// bootstrapResamples and bootstrapSeed make the intervals reproducible: the same two
// runs always give the same interval.
const (
	bootstrapResamples = 10000
	bootstrapSeed      = 42
)

// Compare loads two run directories and compares them. Runs whose eval sets differ
// (a prompt or reference differs at an example index both scored, or the manifests
// record different eval data) are refused with an *InputError: their metrics and
// losses are not comparable, and a paired interval would be meaningless.
func Compare(dirA, dirB string) (*Comparison, error) {
	a, err := Load(dirA)
	if err != nil {
		return nil, err
	}
	b, err := Load(dirB)
	if err != nil {
		return nil, err
	}
	c := &Comparison{A: summarize(a), B: summarize(b), a: a, b: b}
	if err := c.pair(); err != nil {
		return nil, err
	}
	c.Settings = diffSettings(a, b)
	return c, nil
}

func summarize(r *Run) RunSummary {
	s := RunSummary{ID: r.Manifest.RunID, State: string(r.Manifest.State), Curves: r.Curves}
	v := verdictOf(r)
	s.Verdict, s.Reason = v.Word, v.Reason
	if res := r.Manifest.Result; res != nil {
		s.Steps, s.EvalLossBefore, s.EvalLossAfter = res.Step, res.EvalLossBefore, res.EvalLossAfter
	}
	if sm := r.Summary; sm != nil {
		if sm.EvalLoss != nil {
			s.EvalLossBefore, s.EvalLossAfter = sm.EvalLoss.Before, sm.EvalLoss.After
		}
		if sm.Judge != nil {
			w := sm.Judge.WinRate
			s.JudgeWinRate = &w
		}
	}
	return s
}

// pair checks that the two runs were evaluated on the same examples and compares
// their adapters' scores example by example.
func (c *Comparison) pair() error {
	a, b := c.a, c.b
	if ia, ib := evalIdentity(a), evalIdentity(b); ia != "" && ib != "" && ia != ib && (len(a.Generations) == 0 || len(b.Generations) == 0) {
		return &InputError{Msg: fmt.Sprintf("%s and %s were evaluated on different eval sets (%s vs %s): their losses and metrics are not comparable; "+
			"score both on one file with `loractl eval RUN --data FILE`", a.Manifest.RunID, b.Manifest.RunID, ia, ib)}
	}
	if len(a.Generations) == 0 || len(b.Generations) == 0 {
		switch {
		case evalIdentity(a) != "" && evalIdentity(a) == evalIdentity(b):
			c.EvalSet = "same eval data (" + evalIdentity(a) + ")"
		default:
			c.EvalSet = "unknown: the manifests record no eval data to compare"
		}
		for _, r := range []*Run{a, b} {
			if len(r.Generations) == 0 {
				c.Notes = append(c.Notes, r.Manifest.RunID+" has no generations (eval/generations.jsonl): no paired task metrics")
			}
		}
		return nil
	}
	byIndex := make(map[int]*Generation, len(a.Generations))
	for i := range a.Generations {
		byIndex[a.Generations[i].Index] = &a.Generations[i]
	}
	var pairs [][2]*Generation
	for i := range b.Generations {
		gb := &b.Generations[i]
		ga, ok := byIndex[gb.Index]
		if !ok {
			continue
		}
		if !samePrompt(ga, gb) {
			return &InputError{Msg: fmt.Sprintf("%s and %s were evaluated on different eval sets: example %d's prompt or reference differs; "+
				"score both on one file with `loractl eval RUN --data FILE`", a.Manifest.RunID, b.Manifest.RunID, gb.Index)}
		}
		pairs = append(pairs, [2]*Generation{ga, gb})
	}
	if len(pairs) == 0 {
		return &InputError{Msg: fmt.Sprintf("%s and %s share no eval example index: they were evaluated on different eval sets",
			a.Manifest.RunID, b.Manifest.RunID)}
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i][0].Index < pairs[j][0].Index })
	c.Paired = len(pairs)
	c.EvalSet = fmt.Sprintf("same: %d examples paired by index, prompts and references identical", len(pairs))
	if len(pairs) < len(a.Generations) || len(pairs) < len(b.Generations) {
		c.Notes = append(c.Notes, fmt.Sprintf("paired on the %d examples both runs scored (%s has %d, %s has %d)",
			len(pairs), a.Manifest.RunID, len(a.Generations), b.Manifest.RunID, len(b.Generations)))
	}
	names := intersect(scoreNames(a.Generations), scoreNames(b.Generations))
	// The judge's per-example score (adapter 1, tie 0.5, base 0) is each adapter's
	// result against its base: comparable when both runs were judged.
	names = append(names, judgeMetric)
	for _, n := range names {
		var sa, sb, d []float64
		for _, p := range pairs {
			x, y := pairScore(p[0], n), pairScore(p[1], n)
			if x == nil || y == nil {
				continue
			}
			sa, sb, d = append(sa, *x), append(sb, *y), append(d, *y-*x)
		}
		if len(d) == 0 {
			continue
		}
		lo, hi := pairedInterval(d)
		mc := MetricComparison{Name: n, A: mean(sa), B: mean(sb), Delta: mean(d), CI95: [2]float64{lo, hi}, N: len(d)}
		switch {
		case lo > 0:
			mc.Better = "b"
		case hi < 0:
			mc.Better = "a"
		}
		if len(d) < len(pairs) {
			c.Notes = append(c.Notes, fmt.Sprintf("%s: %d of %d paired examples have a score in both runs (the others raised an error)", n, len(d), len(pairs)))
		}
		c.Metrics = append(c.Metrics, mc)
	}
	return nil
}

// judgeMetric names the judge's win score in a comparison.
const judgeMetric = "judge win score (vs base)"

func pairScore(g *Generation, name string) *float64 {
	if name != judgeMetric {
		return score(g.Adapter, name)
	}
	if g.Judge == nil || g.Judge.Error != "" {
		return nil
	}
	v, ok := map[string]float64{"adapter": 1, "tie": 0.5, "base": 0}[g.Judge.Winner]
	if !ok {
		return nil
	}
	return &v
}

// evalIdentity names what a run was evaluated on from its manifest: the eval file's
// content hash, or the train file's hash with the split and seed when the eval set was
// carved out of it. "" when the manifest does not say.
func evalIdentity(r *Run) string {
	var train string
	for _, d := range r.Manifest.Data {
		switch d.Role {
		case "eval":
			return "eval data sha256 " + short(d.SHA256)
		case "train":
			train = d.SHA256
		}
	}
	var res struct {
		Data struct {
			EvalSplit float64 `json:"eval_split"`
		} `json:"data"`
		Train struct {
			Seed int `json:"seed"`
		} `json:"train"`
	}
	if train == "" || json.Unmarshal(r.Resolved, &res) != nil || res.Data.EvalSplit <= 0 {
		return ""
	}
	return fmt.Sprintf("%g of train data sha256 %s, seed %d", res.Data.EvalSplit, short(train), res.Train.Seed)
}

func short(h string) string { return h[:min(len(h), 12)] }

func samePrompt(a, b *Generation) bool {
	if a.Reference != b.Reference {
		return false
	}
	ja, _ := json.Marshal(a.Messages)
	jb, _ := json.Marshal(b.Messages)
	return bytes.Equal(ja, jb)
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// pairedInterval is the 95% percentile-bootstrap interval of the mean of d (per-example
// differences, so the pairing is kept), seeded so it is reproducible.
func pairedInterval(d []float64) (lo, hi float64) {
	n := len(d)
	rng := rand.New(rand.NewPCG(bootstrapSeed, uint64(n)))
	means := make([]float64, bootstrapResamples)
	for i := range means {
		var s float64
		for range n {
			s += d[rng.IntN(n)]
		}
		means[i] = s / float64(n)
	}
	slices.Sort(means)
	return quantile(means, 0.025), quantile(means, 0.975)
}

func quantile(sorted []float64, p float64) float64 {
	pos := p * float64(len(sorted)-1)
	i := int(pos)
	if i >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (pos-float64(i))*(sorted[i+1]-sorted[i])
}

// diffSettings lists the resolved.json keys whose values differ. Each run's own
// directory inside a value is replaced by RUN_DIR first, and the run name is left
// out: they differ between any two runs and say nothing about the training.
func diffSettings(a, b *Run) []SettingDifference {
	fa, fb := flatSettings(a), flatSettings(b)
	keys := map[string]bool{}
	for k := range fa {
		keys[k] = true
	}
	for k := range fb {
		keys[k] = true
	}
	var out []SettingDifference
	for k := range keys {
		if k == "name" || k == "version" {
			continue
		}
		if fa[k] != fb[k] {
			out = append(out, SettingDifference{Key: k, A: fa[k], B: fb[k]})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func flatSettings(r *Run) map[string]string {
	out := map[string]string{}
	var v any
	if json.Unmarshal(r.Resolved, &v) != nil {
		return out
	}
	flatten("", v, out)
	// Only a real directory path is replaced: "." would eat every decimal point.
	if dir, err := filepath.Abs(r.Dir); err == nil && dir != string(filepath.Separator) {
		for k, s := range out {
			out[k] = strings.ReplaceAll(s, dir, "RUN_DIR")
		}
	}
	return out
}

func flatten(prefix string, v any, out map[string]string) {
	if m, ok := v.(map[string]any); ok && len(m) > 0 {
		for k, x := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, x, out)
		}
		return
	}
	if s, ok := v.(string); ok {
		out[prefix] = s
		return
	}
	b, _ := json.Marshal(v)
	out[prefix] = string(b)
}

// LossChart draws both runs' train and eval loss on one chart: one colour per run,
// train solid, eval dashed with a dot per evaluation.
func (c *Comparison) LossChart() *Chart {
	return &Chart{Title: "loss", YLabel: "loss", Series: []Series{
		{Name: "A train loss", Points: c.A.Curves.TrainLoss, Color: 0},
		{Name: "A eval loss", Points: c.A.Curves.EvalLoss, Color: 0, Dashed: true, Dots: true},
		{Name: "B train loss", Points: c.B.Curves.TrainLoss, Color: 1},
		{Name: "B eval loss", Points: c.B.Curves.EvalLoss, Color: 1, Dashed: true, Dots: true},
	}}
}

// WriteText prints the comparison as plain tables.
func (c *Comparison) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "A\t%s\n", c.A.ID)
	fmt.Fprintf(tw, "B\t%s\n", c.B.ID)
	fmt.Fprintf(tw, "eval set\t%s\n\n", c.EvalSet)
	fmt.Fprintf(tw, "\tA\tB\n")
	fmt.Fprintf(tw, "state\t%s\t%s\n", c.A.State, c.B.State)
	fmt.Fprintf(tw, "verdict\t%s\t%s\n", orDash(c.A.Verdict), orDash(c.B.Verdict))
	fmt.Fprintf(tw, "steps\t%d\t%d\n", c.A.Steps, c.B.Steps)
	fmt.Fprintf(tw, "eval loss before\t%s\t%s\n", loss(c.A.EvalLossBefore), loss(c.B.EvalLossBefore))
	fmt.Fprintf(tw, "eval loss after\t%s\t%s\n", loss(c.A.EvalLossAfter), loss(c.B.EvalLossAfter))
	if c.A.JudgeWinRate != nil || c.B.JudgeWinRate != nil {
		fmt.Fprintf(tw, "judge win rate vs base\t%s\t%s\n", optPct(c.A.JudgeWinRate), optPct(c.B.JudgeWinRate))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(c.Metrics) > 0 {
		fmt.Fprintf(w, "\ntask metrics of the adapters, paired by example (B − A, 95%% bootstrap interval):\n")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "METRIC\tA\tB\tB − A\t95% INTERVAL\tN\t")
		for _, m := range c.Metrics {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", m.Name, num(m.A), num(m.B), signed(m.Delta), interval(m.CI95), m.N, betterWord(m.Better))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	if len(c.Settings) == 0 {
		fmt.Fprintln(w, "settings: identical (resolved.json, run paths aside)")
	} else {
		fmt.Fprintln(w, "settings that differ (resolved.json):")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tA\tB")
		for _, s := range c.Settings {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Key, orDash(s.A), orDash(s.B))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, n := range c.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintln(w)
	return writeCurveTable(w, []string{"A train", "A eval", "B train", "B eval"},
		[][]Point{c.A.Curves.TrainLoss, c.A.Curves.EvalLoss, c.B.Curves.TrainLoss, c.B.Curves.EvalLoss})
}

func betterWord(b string) string {
	switch b {
	case "a":
		return "A better"
	case "b":
		return "B better"
	}
	return "no difference resolved"
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func optPct(v *float64) string {
	if v == nil {
		return "–"
	}
	return pct(*v)
}

// maxCurveRows bounds the curve table on a terminal; every evaluation is kept, the
// logged steps between them are thinned evenly.
const maxCurveRows = 24

// writeCurveTable prints several curves (each sorted by step) as one table by step:
// every step that carries an evaluation (a series with few points), and up to
// maxCurveRows steps overall.
func writeCurveTable(w io.Writer, names []string, series [][]Point) error {
	steps := map[int]bool{}
	keep := map[int]bool{}
	for _, s := range series {
		for _, p := range s {
			steps[p.Step] = true
		}
		if len(s) <= maxCurveRows/3 {
			for _, p := range s {
				keep[p.Step] = true
			}
		}
	}
	all := make([]int, 0, len(steps))
	for s := range steps {
		all = append(all, s)
	}
	sort.Ints(all)
	if len(all) == 0 {
		_, err := fmt.Fprintln(w, "curves: no logged losses")
		return err
	}
	rows := all
	if len(all) > maxCurveRows {
		room := max(maxCurveRows-len(keep), 2)
		for i := range room {
			keep[all[i*(len(all)-1)/(room-1)]] = true
		}
		rows = rows[:0:0]
		for _, s := range all {
			if keep[s] {
				rows = append(rows, s)
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "STEP\t")
	for _, n := range names {
		fmt.Fprintf(tw, "%s\t", strings.ToUpper(n))
	}
	fmt.Fprintln(tw)
	// Each cell is the series' latest value in the row's window (after the previous
	// row's step, up to its own): curves logged at different steps share rows.
	next := make([]int, len(series))
	for _, row := range rows {
		fmt.Fprintf(tw, "%d\t", row)
		for i, s := range series {
			cell := ""
			for next[i] < len(s) && s[next[i]].Step <= row {
				cell = strconv.FormatFloat(s[next[i]].Value, 'f', 4, 64)
				next[i]++
			}
			fmt.Fprintf(tw, "%s\t", cell)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// WriteHTML renders the comparison as one self-contained HTML page.
func (c *Comparison) WriteHTML(w io.Writer) error {
	var svg []byte
	if ch := c.LossChart(); !ch.Empty() {
		var err error
		if svg, err = ch.SVG(); err != nil {
			return err
		}
	}
	v := comparePage{Title: "loractl compare: " + c.A.ID + " vs " + c.B.ID, Generated: now().UTC().Format("2006-01-02 15:04 UTC"),
		Runs: []RunSummary{c.A, c.B}, EvalSet: c.EvalSet, Notes: c.Notes, LossSVG: svgHTML(svg)}
	v.Rows = [][3]string{
		{"run", c.A.ID, c.B.ID},
		{"state", c.A.State, c.B.State},
		{"verdict", orDash(c.A.Verdict), orDash(c.B.Verdict)},
		{"steps", fmt.Sprint(c.A.Steps), fmt.Sprint(c.B.Steps)},
		{"eval loss before", loss(c.A.EvalLossBefore), loss(c.B.EvalLossBefore)},
		{"eval loss after", loss(c.A.EvalLossAfter), loss(c.B.EvalLossAfter)},
	}
	if c.A.JudgeWinRate != nil || c.B.JudgeWinRate != nil {
		v.Rows = append(v.Rows, [3]string{"judge win rate vs base", optPct(c.A.JudgeWinRate), optPct(c.B.JudgeWinRate)})
	}
	for _, m := range c.Metrics {
		v.Metrics = append(v.Metrics, metricRow{Name: m.Name, Base: num(m.A), Adapter: num(m.B), Delta: signed(m.Delta),
			CI: interval(m.CI95), N: m.N, Class: map[string]string{"a": "worse", "b": "better"}[m.Better], Note: betterWord(m.Better)})
	}
	for _, s := range c.Settings {
		v.Settings = append(v.Settings, [3]string{s.Key, orDash(s.A), orDash(s.B)})
	}
	return executeCompare(w, &v)
}

// comparePage is the compare template's view: two runs (or a run and an OpenAI job).
type comparePage struct {
	Title, Generated string
	Runs             []RunSummary
	NameA, NameB     string
	EvalSet          string
	Rows             [][3]string
	Metrics          []metricRow
	Settings         [][3]string
	Notes            []string
	LossSVG, AccSVG  template.HTML
}

func executeCompare(w io.Writer, v *comparePage) error {
	if v.NameA == "" {
		v.NameA, v.NameB = "A", "B"
	}
	var buf bytes.Buffer
	if err := compTmpl.Execute(&buf, v); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// svgHTML marks a chart rendered by Chart.SVG as safe to inline: gonum's SVG canvas
// escapes every text it draws.
func svgHTML(b []byte) template.HTML { return template.HTML(b) }
