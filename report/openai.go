package report

import (
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
)

// OpenAI's fine-tuning results CSV (the job's result file): one row per step. Cells
// may be empty (valid_* only at validation steps); files from newer jobs carry extra
// columns (full_valid_loss, full_valid_mean_token_accuracy), which are read when present.
var openAIRequired = []string{"step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"}

// OpenAIResults is an OpenAI fine-tuning job's results CSV, as curves by step.
type OpenAIResults struct {
	Path          string  `json:"path"`
	TrainLoss     []Point `json:"train_loss"`
	TrainAccuracy []Point `json:"train_accuracy"`
	ValidLoss     []Point `json:"valid_loss"`
	ValidAccuracy []Point `json:"valid_accuracy"`
	// FullValidLoss and FullValidAccuracy are over the whole validation file (newer
	// jobs, usually only at the end); valid_* are over one validation batch.
	FullValidLoss     []Point `json:"full_valid_loss,omitempty"`
	FullValidAccuracy []Point `json:"full_valid_accuracy,omitempty"`
	Steps             int     `json:"steps"`
}

// maxCSVRows bounds the rows read: OpenAI jobs log one row per step, and no job has
// millions of steps.
const maxCSVRows = 2_000_000

// ReadOpenAIResults reads OpenAI's fine-tuning results CSV. A file whose header lacks
// one of step, train_loss, train_accuracy, valid_loss, valid_mean_token_accuracy, or
// with a cell that is not a number, is an *InputError naming the line and column.
// The file may also be as the Files API returns it, base64-encoded; it is decoded
// first (line numbers are then the decoded CSV's).
func ReadOpenAIResults(path string) (*OpenAIResults, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &InputError{Path: path, Msg: err.Error()}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCSVBytes+1))
	if err != nil {
		return nil, &InputError{Path: path, Msg: err.Error()}
	}
	if len(b) > maxCSVBytes {
		return nil, &InputError{Path: path, Msg: fmt.Sprintf("larger than %d MiB: not a results file", maxCSVBytes>>20)}
	}
	name := path
	if dec, ok := base64CSV(b); ok {
		b, name = dec, path+" (base64-decoded)"
	}
	return parseOpenAIResults(name, bytes.NewReader(b))
}

// maxCSVBytes bounds the file read: a results file has one short row per step.
const maxCSVBytes = 256 << 20

// base64CSV decodes b when it is base64 text (no comma, which no base64 alphabet has)
// that decodes to a CSV header starting with "step".
func base64CSV(b []byte) ([]byte, bool) {
	t := bytes.TrimSpace(b)
	if len(t) == 0 || bytes.IndexByte(t, ',') >= 0 {
		return nil, false
	}
	dec, err := base64.StdEncoding.DecodeString(string(bytes.Join(bytes.Fields(t), nil)))
	if err != nil || !bytes.HasPrefix(bytes.TrimPrefix(dec, []byte("\ufeff")), []byte("step")) {
		return nil, false
	}
	return dec, true
}

func parseOpenAIResults(path string, rd io.Reader) (*OpenAIResults, error) {
	cr := csv.NewReader(rd)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, &InputError{Path: path, Line: 1, Msg: "empty file: expected OpenAI's results CSV header " + strings.Join(openAIRequired, ",")}
	}
	if err != nil {
		return nil, csvError(path, err)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if _, dup := col[h]; !dup {
			col[h] = i
		}
	}
	var missing []string
	for _, n := range openAIRequired {
		if _, ok := col[n]; !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return nil, &InputError{Path: path, Line: 1, Msg: fmt.Sprintf("not OpenAI's fine-tuning results CSV: the header lacks %s (want %s, extra columns allowed)",
			strings.Join(missing, ", "), strings.Join(openAIRequired, ","))}
	}
	res := &OpenAIResults{Path: path}
	targets := []struct {
		name string
		dst  *[]Point
	}{
		{"train_loss", &res.TrainLoss}, {"train_accuracy", &res.TrainAccuracy},
		{"valid_loss", &res.ValidLoss}, {"valid_mean_token_accuracy", &res.ValidAccuracy},
		{"full_valid_loss", &res.FullValidLoss}, {"full_valid_mean_token_accuracy", &res.FullValidAccuracy},
	}
	rows := 0
	for ; ; rows++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, csvError(path, err)
		}
		line, _ := cr.FieldPos(0)
		if rows == maxCSVRows {
			return nil, &InputError{Path: path, Line: line, Msg: fmt.Sprintf("more than %d rows: not a results file", maxCSVRows)}
		}
		cell := func(name string) (float64, bool, error) {
			i := col[name]
			s := strings.TrimSpace(rec[i])
			if s == "" {
				return 0, false, nil
			}
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				_, c := cr.FieldPos(i)
				return 0, false, &InputError{Path: path, Line: line, Column: c, Msg: fmt.Sprintf("column %d (%s): %q is not a number", i+1, name, s)}
			}
			// An undefined value (NaN, as some exports write it) is a missing value.
			return v, finite(v), nil
		}
		st, ok, err := cell("step")
		if err != nil {
			return nil, err
		}
		if !ok || st < 0 || st != math.Trunc(st) || st > math.MaxInt32 {
			_, c := cr.FieldPos(col["step"])
			return nil, &InputError{Path: path, Line: line, Column: c, Msg: fmt.Sprintf("column %d (step): %q is not a step number", col["step"]+1, strings.TrimSpace(rec[col["step"]]))}
		}
		step := int(st)
		res.Steps = max(res.Steps, step)
		for _, t := range targets {
			if _, present := col[t.name]; !present {
				continue
			}
			v, ok, err := cell(t.name)
			if err != nil {
				return nil, err
			}
			if ok {
				*t.dst = append(*t.dst, Point{Step: step, Value: v})
			}
		}
	}
	if rows == 0 {
		return nil, &InputError{Path: path, Line: 2, Msg: "no rows after the header"}
	}
	if len(res.TrainLoss)+len(res.TrainAccuracy)+len(res.ValidLoss)+len(res.ValidAccuracy)+len(res.FullValidLoss)+len(res.FullValidAccuracy) == 0 {
		// Every figure and curve would be empty: nothing to compare with.
		noun := "rows"
		if rows == 1 {
			noun = "row"
		}
		return nil, &InputError{Path: path, Msg: fmt.Sprintf("%d %s but no train_loss, train_accuracy, valid_loss or valid_mean_token_accuracy value in any of them (empty or NaN cells): nothing to compare", rows, noun)}
	}
	return res, nil
}

func csvError(path string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &InputError{Path: path, Line: pe.Line, Column: pe.Column, Msg: pe.Err.Error()}
	}
	return &InputError{Path: path, Msg: err.Error()}
}

// Figure is one curve's final value and its best (lowest loss, highest accuracy),
// each with its step. Nil when the curve is empty.
type Figure struct {
	Final *Point `json:"final"`
	Best  *Point `json:"best"`
}

// Figures are a training's headline numbers in OpenAI's terms.
type Figures struct {
	Name          string `json:"name"`
	Steps         int    `json:"steps"`
	TrainLoss     Figure `json:"train_loss"`
	TrainAccuracy Figure `json:"train_accuracy"`
	ValidLoss     Figure `json:"valid_loss"`
	ValidAccuracy Figure `json:"valid_accuracy"`
	FullValidLoss Figure `json:"full_valid_loss"`
}

// OpenAIComparison is a loractl run against an OpenAI fine-tuning job's results.
type OpenAIComparison struct {
	Run    Figures        `json:"run"`
	OpenAI Figures        `json:"openai"`
	Curves Curves         `json:"run_curves"`
	Result *OpenAIResults `json:"openai_curves"`
	Notes  []string       `json:"notes"`
}

// CompareOpenAI sets a run's curves beside an OpenAI job's. loractl evaluates the whole
// eval set each time, so its eval loss is OpenAI's full_valid_loss; OpenAI's
// valid_loss is one validation batch and is noisier. The run's "before" evaluation
// (the base model) is left out of the valid figures, as OpenAI reports none.
func CompareOpenAI(runDir string, res *OpenAIResults) (*OpenAIComparison, error) {
	r, err := Load(runDir)
	if err != nil {
		return nil, err
	}
	valid := trained(r.Curves.EvalLoss)
	c := &OpenAIComparison{Curves: r.Curves, Result: res}
	c.Run = Figures{Name: r.Manifest.RunID, Steps: max(r.Curves.TotalSteps, lastStep(r.Curves.TrainLoss)),
		TrainLoss: lowest(r.Curves.TrainLoss), TrainAccuracy: highest(r.Curves.TrainAccuracy),
		ValidLoss: lowest(valid), ValidAccuracy: highest(r.Curves.EvalAccuracy), FullValidLoss: lowest(valid)}
	c.OpenAI = Figures{Name: "OpenAI", Steps: res.Steps,
		TrainLoss: lowest(res.TrainLoss), TrainAccuracy: highest(res.TrainAccuracy),
		ValidLoss: lowest(res.ValidLoss), ValidAccuracy: highest(res.ValidAccuracy), FullValidLoss: lowest(res.FullValidLoss)}
	c.Notes = append(c.Notes, "loractl's eval loss is over the whole eval set (OpenAI's full_valid_loss); OpenAI's valid_loss is one validation batch")
	if len(r.Curves.TrainAccuracy) == 0 {
		c.Notes = append(c.Notes, r.Manifest.RunID+"'s events carry no mean_token_accuracy")
	}
	if r.Notes.Events != "" {
		c.Notes = append(c.Notes, r.Notes.Events)
	}
	if a, b := c.Run.Steps, c.OpenAI.Steps; a > 0 && b > 0 && (a > b*11/10 || b > a*11/10) {
		c.Notes = append(c.Notes, fmt.Sprintf("the step counts differ (%d vs %d): a different batch size or epoch count makes a step a different amount of data", a, b))
	}
	return c, nil
}

// trained drops the evaluation before the first step (the base model's loss).
func trained(ps []Point) []Point {
	if len(ps) > 0 && ps[0].Step == 0 {
		return ps[1:]
	}
	return ps
}

func lastStep(ps []Point) int {
	if len(ps) == 0 {
		return 0
	}
	return ps[len(ps)-1].Step
}

func lowest(ps []Point) Figure  { return extreme(ps, func(a, b float64) bool { return a < b }) }
func highest(ps []Point) Figure { return extreme(ps, func(a, b float64) bool { return a > b }) }

func extreme(ps []Point, better func(a, b float64) bool) Figure {
	if len(ps) == 0 {
		return Figure{}
	}
	final, best := ps[len(ps)-1], ps[0]
	for _, p := range ps[1:] {
		if better(p.Value, best.Value) {
			best = p
		}
	}
	return Figure{Final: &final, Best: &best}
}

func (f Figure) text(digits int) (final, best string) {
	if f.Final == nil {
		return "–", "–"
	}
	return fmt.Sprintf("%.*f (step %d)", digits, f.Final.Value, f.Final.Step), fmt.Sprintf("%.*f (step %d)", digits, f.Best.Value, f.Best.Step)
}

func (c *OpenAIComparison) rows() [][3]string {
	out := [][3]string{{"run", c.Run.Name, c.Result.Path}, {"steps", strconv.Itoa(c.Run.Steps), strconv.Itoa(c.OpenAI.Steps)}}
	add := func(label string, a, b Figure, digits int) {
		af, ab := a.text(digits)
		bf, bb := b.text(digits)
		out = append(out, [3]string{label + " final", af, bf}, [3]string{label + " best", ab, bb})
	}
	add("train loss", c.Run.TrainLoss, c.OpenAI.TrainLoss, 4)
	add("train accuracy", c.Run.TrainAccuracy, c.OpenAI.TrainAccuracy, 4)
	add("valid loss", c.Run.ValidLoss, c.OpenAI.ValidLoss, 4)
	add("valid accuracy", c.Run.ValidAccuracy, c.OpenAI.ValidAccuracy, 4)
	if c.OpenAI.FullValidLoss.Final != nil {
		add("full valid loss", c.Run.FullValidLoss, c.OpenAI.FullValidLoss, 4)
	}
	return out
}

// WriteText prints both trainings' figures and their loss curves as tables.
func (c *OpenAIComparison) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\tLORACTL\tOPENAI")
	for _, r := range c.rows() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r[0], r[1], r[2])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range c.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintln(w)
	return writeCurveTable(w, []string{"loractl train", "loractl valid", "openai train", "openai valid"},
		[][]Point{c.Curves.TrainLoss, c.Curves.EvalLoss, c.Result.TrainLoss, c.Result.ValidLoss})
}

// LossChart draws both trainings' losses on one chart.
func (c *OpenAIComparison) LossChart() *Chart {
	return &Chart{Title: "loss", YLabel: "loss", Series: []Series{
		{Name: "loractl train loss", Points: c.Curves.TrainLoss, Color: 0},
		{Name: "loractl eval loss", Points: c.Curves.EvalLoss, Color: 0, Dashed: true, Dots: true},
		{Name: "OpenAI train loss", Points: c.Result.TrainLoss, Color: 1},
		{Name: "OpenAI valid loss", Points: c.Result.ValidLoss, Color: 1, Dashed: true, Dots: len(c.Result.ValidLoss) <= 60},
		{Name: "OpenAI full valid loss", Points: c.Result.FullValidLoss, Color: 2, Dots: true},
	}}
}

// AccuracyChart draws both trainings' mean token accuracy on one chart.
func (c *OpenAIComparison) AccuracyChart() *Chart {
	return &Chart{Title: "mean token accuracy", YLabel: "accuracy", Rising: true, Series: []Series{
		{Name: "loractl train accuracy", Points: c.Curves.TrainAccuracy, Color: 0},
		{Name: "loractl eval accuracy", Points: c.Curves.EvalAccuracy, Color: 0, Dashed: true, Dots: true},
		{Name: "OpenAI train accuracy", Points: c.Result.TrainAccuracy, Color: 1},
		{Name: "OpenAI valid accuracy", Points: c.Result.ValidAccuracy, Color: 1, Dashed: true, Dots: len(c.Result.ValidAccuracy) <= 60},
	}}
}

// WriteHTML renders the comparison as one self-contained HTML page.
func (c *OpenAIComparison) WriteHTML(w io.Writer) error {
	v := comparePage{Title: "loractl compare: " + c.Run.Name + " vs OpenAI", Generated: now().UTC().Format("2006-01-02 15:04 UTC"),
		NameA: "loractl", NameB: "OpenAI", Rows: c.rows(), Notes: c.Notes}
	for _, ch := range []struct {
		c   *Chart
		dst *template.HTML
	}{{c.LossChart(), &v.LossSVG}, {c.AccuracyChart(), &v.AccSVG}} {
		if ch.c.Empty() {
			continue
		}
		b, err := ch.c.SVG()
		if err != nil {
			return err
		}
		*ch.dst = svgHTML(b)
	}
	return executeCompare(w, &v)
}
