package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/loractl/loractl/run"
)

// Files of a run's task evaluation (docs/evaluation.md), relative to the run dir.
const (
	SummaryFile     = "eval/summary.json"
	GenerationsFile = "eval/generations.jsonl"
	// ReportFile and LossPNGFile are what WriteFiles writes into the run dir.
	ReportFile  = "report.html"
	LossPNGFile = "loss.png"
)

// InputError is a problem with what the user pointed at: a directory that is not a
// run, an unreadable manifest, a results CSV that is not OpenAI's, two runs whose eval
// sets differ. Commands exit 2 on it. Line and Column are 1-based; 0 when not known.
type InputError struct {
	Path   string
	Line   int
	Column int
	Msg    string
}

func (e *InputError) Error() string {
	where := e.Path
	if e.Line > 0 {
		where += ":" + strconv.Itoa(e.Line)
		if e.Column > 0 {
			where += ":" + strconv.Itoa(e.Column)
		}
	}
	if where == "" {
		return e.Msg
	}
	return where + ": " + e.Msg
}

// MetricSummary is one task metric of eval/summary.json: the mean per side, the mean
// per-example difference adapter − base and its paired-bootstrap 95% interval.
type MetricSummary struct {
	Base    float64    `json:"base"`
	Adapter float64    `json:"adapter"`
	Delta   float64    `json:"delta"`
	CI95    [2]float64 `json:"ci95"`
	// N counts the examples scored on both sides; Errors those where the metric
	// failed on either side.
	N      int `json:"n,omitempty"`
	Errors int `json:"errors"`
}

// EvalLossSummary is the eval loss before and after training.
type EvalLossSummary struct {
	Before    *float64    `json:"before"`
	After     *float64    `json:"after"`
	CI95Delta *[2]float64 `json:"ci95_delta,omitempty"`
}

// JudgeSummary is the LLM judge's pairwise result: the adapter's win rate (ties count
// half) with its interval.
type JudgeSummary struct {
	Name    string     `json:"name,omitempty"`
	WinRate float64    `json:"win_rate"`
	CI95    [2]float64 `json:"ci95"`
	Wins    int        `json:"wins"`
	Losses  int        `json:"losses"`
	Ties    int        `json:"ties"`
	Errors  int        `json:"errors,omitempty"`
}

// Summary is eval/summary.json, the task evaluation's verdict.
type Summary struct {
	N           int                      `json:"n"`
	Primary     string                   `json:"primary"`
	Metrics     map[string]MetricSummary `json:"metrics"`
	EvalLoss    *EvalLossSummary         `json:"eval_loss,omitempty"`
	Verdict     string                   `json:"verdict"`
	Reason      string                   `json:"reason"`
	DoesNotStop map[string]bool          `json:"does_not_stop,omitempty"`
	StopRate    map[string]float64       `json:"stop_rate,omitempty"`
	Checkpoint  string                   `json:"checkpoint,omitempty"`
	Judge       *JudgeSummary            `json:"judge,omitempty"`
}

// Side is one model's answer to an eval prompt: the base model's or the adapter's.
type Side struct {
	Text    string              `json:"text"`
	Tokens  int                 `json:"tokens"`
	Stopped string              `json:"stopped"`
	Scores  map[string]*float64 `json:"scores"`
	Errors  map[string]string   `json:"errors"`
}

// Judgement is the LLM judge's verdict on one example; a failed judgement has Error
// and no Winner.
type Judgement struct {
	Winner string `json:"winner"`
	Reason string `json:"reason"`
	Error  string `json:"error,omitempty"`
}

// Generation is one row of eval/generations.jsonl.
type Generation struct {
	Index     int              `json:"index"`
	Messages  []map[string]any `json:"messages"`
	Reference string           `json:"reference"`
	Base      *Side            `json:"base"`
	Adapter   *Side            `json:"adapter"`
	Judge     *Judgement       `json:"judge,omitempty"`
}

// Curves are a run's training curves, from events.jsonl.
type Curves struct {
	TrainLoss []Point `json:"train_loss"`
	EvalLoss  []Point `json:"eval_loss"`
	// TrainAccuracy and EvalAccuracy are the mean token accuracy (log events'
	// metrics.mean_token_accuracy, eval events' metrics.eval_mean_token_accuracy).
	TrainAccuracy []Point `json:"train_accuracy"`
	EvalAccuracy  []Point `json:"eval_accuracy"`
	// Checkpoints are the steps of complete checkpoints.
	Checkpoints []int `json:"checkpoints"`
	// Selected names the checkpoint that became the adapter: a select event's, else
	// the final adapter's (SelectedStep is then the last step).
	Selected     string  `json:"selected,omitempty"`
	SelectedStep int     `json:"selected_step,omitempty"`
	SelectedBy   string  `json:"selected_by,omitempty"`
	SelectedVal  float64 `json:"selected_value,omitempty"`
	TotalSteps   int     `json:"total_steps,omitempty"`
}

// Run is what the report shows about one run. Everything but the manifest is optional;
// Notes says what was missing or unreadable, so the report can say so.
type Run struct {
	Dir         string
	Manifest    *run.Manifest
	Curves      Curves
	Summary     *Summary
	Generations []Generation
	// Resolved is resolved.json as written (nil when absent); ConfigYAML is config.yaml.
	Resolved   json.RawMessage
	ConfigYAML string
	Warnings   []DataWarning
	Notes      Notes
}

// Notes record the optional parts of a run that could not be shown, and why.
type Notes struct {
	Events      string
	Summary     string
	Generations string
	Config      string
}

// DataWarning is one data-check warning recorded in the manifest.
type DataWarning struct {
	Code    string `json:"code"`
	File    string `json:"file"`
	Message string `json:"message"`
	Count   int    `json:"count"`
	Lines   []int  `json:"lines"`
}

// Load reads a run directory. Only the manifest is required: a missing one is an
// *InputError. Other files that are missing or unreadable leave a note.
func Load(dir string) (*Run, error) {
	m, err := run.ReadManifest(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &InputError{Path: dir, Msg: "not a run directory: no " + run.ManifestFile}
	}
	if err != nil {
		return nil, &InputError{Path: filepath.Join(dir, run.ManifestFile), Msg: err.Error()}
	}
	r := &Run{Dir: dir, Manifest: m}
	r.Curves, r.Notes.Events = loadCurves(filepath.Join(dir, run.EventsFile))
	r.Summary, r.Notes.Summary = loadSummary(filepath.Join(dir, SummaryFile))
	r.Generations, r.Notes.Generations = loadGenerations(filepath.Join(dir, GenerationsFile))
	if b, err := os.ReadFile(filepath.Join(dir, run.ResolvedFile)); err == nil && json.Valid(b) {
		r.Resolved = b
	} else if err == nil {
		r.Notes.Config = run.ResolvedFile + " is not valid JSON"
	}
	if b, err := os.ReadFile(filepath.Join(dir, run.ConfigFile)); err == nil {
		r.ConfigYAML = string(b)
	}
	if r.Resolved == nil && r.ConfigYAML == "" && r.Notes.Config == "" {
		r.Notes.Config = "neither " + run.ConfigFile + " nor " + run.ResolvedFile + " is in the run directory"
	}
	if len(m.DataCheck) > 0 {
		var dc struct {
			Warnings []DataWarning `json:"warnings"`
		}
		if json.Unmarshal(m.DataCheck, &dc) == nil {
			r.Warnings = dc.Warnings
		}
	}
	if r.Summary != nil && r.Curves.Selected == "" && r.Summary.Checkpoint != "" && r.Summary.Checkpoint != "adapter" {
		r.Curves.Selected = r.Summary.Checkpoint
		r.Curves.SelectedStep = checkpointStep(r.Summary.Checkpoint)
	}
	return r, nil
}

// selectEvent is the trainer's `select` event (train.select: best), which run.Event
// does not model.
type selectEvent struct {
	Checkpoint string  `json:"checkpoint"`
	By         string  `json:"by"`
	Value      float64 `json:"value"`
}

func loadCurves(path string) (Curves, string) {
	var c Curves
	evs, err := run.ReadEvents(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, "no training curves: " + run.EventsFile + " is not in the run directory"
	}
	if err != nil {
		return c, "no training curves: " + err.Error()
	}
	// A resumed run's file holds every attempt; a step logged twice keeps its last value.
	train, eval := map[int]float64{}, map[int]float64{}
	tacc, eacc := map[int]float64{}, map[int]float64{}
	ckpts := map[int]bool{}
	lastStep := 0
	for _, e := range evs {
		switch e.Type {
		case run.EventStart:
			c.TotalSteps = max(c.TotalSteps, e.TotalSteps)
		case run.EventLog:
			if e.Loss != nil && finite(*e.Loss) {
				train[e.Step] = *e.Loss
			}
			if v := e.Metrics["mean_token_accuracy"]; v != nil && finite(*v) {
				tacc[e.Step] = *v
			}
			c.TotalSteps = max(c.TotalSteps, e.TotalSteps)
		case run.EventEval:
			if e.EvalLoss != nil && finite(*e.EvalLoss) {
				eval[e.Step] = *e.EvalLoss
			}
			if v := e.Metrics["eval_mean_token_accuracy"]; v != nil && finite(*v) && e.Phase != "before" {
				eacc[e.Step] = *v
			}
		case run.EventCheckpoint:
			ckpts[e.Step] = true
		case run.EventEnd:
			if e.Status == string(run.StateCompleted) {
				c.Selected, c.SelectedStep, c.SelectedBy = "adapter", e.Step, ""
			}
		case "select":
			var s selectEvent
			if json.Unmarshal(e.Raw, &s) == nil && s.Checkpoint != "" {
				c.Selected, c.SelectedStep, c.SelectedBy, c.SelectedVal = s.Checkpoint, checkpointStep(s.Checkpoint), s.By, s.Value
			}
		}
		lastStep = max(lastStep, e.Step)
	}
	if c.Selected == "adapter" && c.SelectedStep == 0 {
		c.SelectedStep = lastStep
	}
	c.TrainLoss, c.EvalLoss = sortedPoints(train), sortedPoints(eval)
	c.TrainAccuracy, c.EvalAccuracy = sortedPoints(tacc), sortedPoints(eacc)
	for s := range ckpts {
		c.Checkpoints = append(c.Checkpoints, s)
	}
	sort.Ints(c.Checkpoints)
	return c, ""
}

// checkpointStep is N of "checkpoint-N", 0 otherwise.
func checkpointStep(name string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(name), "checkpoint-"))
	if err != nil {
		return 0
	}
	return n
}

func sortedPoints(m map[int]float64) []Point {
	out := make([]Point, 0, len(m))
	for s, v := range m {
		out = append(out, Point{Step: s, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Step < out[j].Step })
	return out
}

func loadSummary(path string) (*Summary, string) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "no task evaluation: " + SummaryFile + " is not in the run directory " +
			"(the run had no eval set or eval.generate was off; `loractl eval RUN` writes it)"
	}
	if err != nil {
		return nil, "no task evaluation: " + err.Error()
	}
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Sprintf("no task evaluation: %s is not a summary: %v", SummaryFile, err)
	}
	return &s, ""
}

// maxGenerations bounds the rows read: the report is for a person to read, and an
// eval set is at most eval.max_examples (200 by default) anyway.
const maxGenerations = 5000

func loadGenerations(path string) ([]Generation, string) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "no generations: " + GenerationsFile + " is not in the run directory"
	}
	if err != nil {
		return nil, "no generations: " + err.Error()
	}
	defer f.Close()
	var out []Generation
	var bad []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 64*1024*1024)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var g Generation
		if err := json.Unmarshal(b, &g); err != nil {
			if len(bad) < 3 {
				bad = append(bad, fmt.Sprintf("line %d: %v", line, err))
			}
			continue
		}
		if len(out) == maxGenerations {
			bad = append(bad, fmt.Sprintf("only the first %d rows are shown", maxGenerations))
			break
		}
		out = append(out, g)
	}
	if err := sc.Err(); err != nil {
		bad = append(bad, err.Error())
	}
	if len(bad) > 0 {
		return out, GenerationsFile + ": " + strings.Join(bad, "; ")
	}
	return out, ""
}
