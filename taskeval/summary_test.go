package taskeval

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loractl/loractl/config"
)

// rowsOf builds rows whose primary metric "m" scores base[i] and adapter[i].
func rowsOf(base, adapter []float64) []Row {
	rows := make([]Row, len(base))
	for i := range base {
		rows[i] = Row{
			Index:   i,
			Base:    Side{Stopped: StoppedEOS, Scores: map[string]float64{"m": base[i]}},
			Adapter: Side{Stopped: StoppedEOS, Scores: map[string]float64{"m": adapter[i]}},
		}
	}
	return rows
}

func repeat(pattern []float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = pattern[i%len(pattern)]
	}
	return out
}

func opts(primary string, minImp float64, metrics ...config.MetricConfig) Options {
	if len(metrics) == 0 && primary != "" {
		metrics = []config.MetricConfig{{Name: primary, Kind: config.MetricExact}}
	}
	return Options{Eval: config.EvalConfig{Metrics: metrics, Primary: primary, MinImprovement: minImp}, Seed: 42}
}

func TestVerdicts(t *testing.T) {
	withErrors := rowsOf(repeat([]float64{0}, 40), repeat([]float64{1}, 40))
	withErrors[3].Adapter.Errors = map[string]string{"m": "ValueError: bad"}
	delete(withErrors[3].Adapter.Scores, "m")

	cases := []struct {
		name        string
		rows        []Row
		opts        Options
		verdict     string
		reasonParts []string
	}{
		{"clear gain", rowsOf(repeat([]float64{0, 0, 1, 0}, 40), repeat([]float64{1, 1, 1, 0}, 40)), opts("m", 0),
			Adopt, []string{"40 eval examples: the 95% interval +", "is above zero (mean +0.500)"}},
		{"clear loss", rowsOf(repeat([]float64{1, 1, 1, 0}, 40), repeat([]float64{0, 0, 1, 0}, 40)), opts("m", 0),
			DoNotAdopt, []string{"is at or below zero (mean -0.500)"}},
		{"equal", rowsOf(repeat([]float64{1, 0}, 40), repeat([]float64{1, 0}, 40)), opts("m", 0),
			DoNotAdopt, []string{"+0.000..+0.000 m is at or below zero"}},
		{"three examples", rowsOf([]float64{0, 1, 0}, []float64{1, 0, 1}), opts("m", 0),
			Inconclusive, []string{"3 eval examples are too few to decide (at least 10 are needed): the 95% interval", "; about ", " examples would resolve a difference this size"}},
		{"three examples all better", rowsOf([]float64{0, 0.2, 0}, []float64{1, 0.9, 0.8}), opts("m", 0),
			Inconclusive, []string{"3 eval examples are too few"}},
		{"twelve noisy examples", rowsOf(repeat([]float64{0, 1, 0, 0.5}, 12), repeat([]float64{1, 0, 0.5, 1}, 12)), opts("m", 0),
			Inconclusive, []string{"12 eval examples: the 95% interval", "includes zero; about ", " examples would resolve a difference this size"}},
		{"symmetric noise", rowsOf(repeat([]float64{0, 1}, 30), repeat([]float64{1, 0}, 30)), opts("m", 0),
			Inconclusive, []string{"includes zero"}},
		{"gain below required", rowsOf(repeat([]float64{0, 0, 1, 0}, 40), repeat([]float64{1, 1, 1, 0}, 40)), opts("m", 0.9),
			DoNotAdopt, []string{"at or below the required m +0.900"}},
		{"errors cannot adopt", withErrors, opts("m", 0),
			Inconclusive, []string{"m failed on 1 example, so it cannot adopt"}},
		{"chrf units", rowsOf([]float64{40, 50, 45}, []float64{42, 41, 60}), opts("c", 0, config.MetricConfig{Name: "c", Kind: config.MetricChrF}),
			Inconclusive, []string{"chrF"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// chrf rows carry "m": rename for that case.
			rows := tc.rows
			if tc.opts.Eval.Primary == "c" {
				for i := range rows {
					rows[i].Base.Scores = map[string]float64{"c": rows[i].Base.Scores["m"]}
					rows[i].Adapter.Scores = map[string]float64{"c": rows[i].Adapter.Scores["m"]}
				}
			}
			s := Compute(rows, nil, tc.opts)
			if s.Verdict != tc.verdict {
				t.Fatalf("verdict %s (%s), want %s", s.Verdict, s.Reason, tc.verdict)
			}
			for _, part := range tc.reasonParts {
				if !strings.Contains(s.Reason, part) {
					t.Errorf("reason %q lacks %q", s.Reason, part)
				}
			}
		})
	}
}

func TestMetricSummary(t *testing.T) {
	rows := rowsOf([]float64{0, 0, 1, 1}, []float64{1, 1, 1, 1})
	rows[0].Base.Errors = map[string]string{"m": "boom"}
	delete(rows[0].Base.Scores, "m")
	s := Compute(rows, nil, opts("m", 0))
	ms := s.Metrics["m"]
	if ms.N != 3 || ms.Errors != 1 || ms.Base != 2.0/3 || ms.Adapter != 1 || ms.CI95[0] > ms.Delta || ms.CI95[1] < ms.Delta {
		t.Fatalf("metric summary %+v", ms)
	}
	if s.N != 4 || s.Primary != "m" || s.Checkpoint != "adapter" {
		t.Fatalf("summary %+v", s)
	}
}

func TestLossDecidesWithoutMetrics(t *testing.T) {
	before := repeat([]float64{2.0, 2.5, 3.0}, 30)
	after := make([]float64, len(before))
	for i := range before {
		after[i] = before[i] - 0.5 + 0.1*float64(i%3)
	}
	s := Compute(nil, &ExampleLosses{Before: before, After: after}, opts("", 0))
	if s.Verdict != Adopt || !strings.Contains(s.Reason, "eval loss reduction") {
		t.Fatalf("falling loss: %s (%s)", s.Verdict, s.Reason)
	}
	if s.EvalLoss == nil || s.EvalLoss.After >= s.EvalLoss.Before || s.EvalLoss.CI95Delta[1] >= 0 || s.N != 30 {
		t.Fatalf("eval loss %+v, n %d", s.EvalLoss, s.N)
	}
	// A loss that rises is not adopted.
	s = Compute(nil, &ExampleLosses{Before: after, After: before}, opts("", 0))
	if s.Verdict != DoNotAdopt {
		t.Fatalf("rising loss: %s (%s)", s.Verdict, s.Reason)
	}
	// A 0.1% drop on a few noisy examples is noise.
	s = Compute(nil, &ExampleLosses{Before: repeat([]float64{2, 3, 1, 2.5}, 12), After: repeat([]float64{2.5, 2.4, 1.2, 2.38}, 12)}, opts("", 0))
	if s.Verdict != Inconclusive {
		t.Fatalf("noisy loss: %s (%s)", s.Verdict, s.Reason)
	}
}

func TestDoesNotStop(t *testing.T) {
	rows := rowsOf(repeat([]float64{0}, 10), repeat([]float64{0}, 10))
	rows[0].Adapter.Stopped = StoppedMaxTokens
	s := Compute(rows, nil, opts("m", 0))
	if s.DoesNotStop.Adapter || s.StopRate.Adapter != 0.9 {
		t.Fatalf("1 of 10 is not more than 10%%: %+v %+v", s.DoesNotStop, s.StopRate)
	}
	rows[1].Adapter.Stopped = StoppedMaxTokens
	s = Compute(rows, nil, opts("m", 0))
	if !s.DoesNotStop.Adapter || s.DoesNotStop.Base || s.StopRate.Base != 1 {
		t.Fatalf("2 of 10: %+v %+v", s.DoesNotStop, s.StopRate)
	}
}

func TestJudgePrimary(t *testing.T) {
	judge := config.MetricConfig{Name: "judge", Kind: config.MetricJudge, Endpoint: "http://x", Model: "m"}
	rows := rowsOf(repeat([]float64{0}, 30), repeat([]float64{0}, 30))
	for i := range rows {
		w := []string{WinnerAdapter, WinnerAdapter, WinnerTie}[i%3]
		rows[i].Judge = &Judgement{Winner: w, Reason: "r"}
	}
	o := opts("judge", 0, judge)
	s := Compute(rows, nil, o)
	if s.Judge == nil || s.Judge.Wins != 20 || s.Judge.Ties != 10 || s.Judge.Losses != 0 {
		t.Fatalf("judge summary %+v", s.Judge)
	}
	if want := (20 + 5) / 30.0; s.Judge.WinRate != want {
		t.Fatalf("win rate %v, want %v", s.Judge.WinRate, want)
	}
	if s.Verdict != Adopt || !strings.Contains(s.Reason, "judge win rate is above an even split (0.50)") {
		t.Fatalf("%s: %s", s.Verdict, s.Reason)
	}
	if _, ok := s.Metrics["judge"]; ok {
		t.Fatal("the judge is summarised under judge, not metrics")
	}
	rows[4].Judge = &Judgement{Error: "HTTP 500"}
	s = Compute(rows, nil, o)
	if s.Verdict == Adopt || s.Judge.Errors != 1 {
		t.Fatalf("a judge with errors adopted: %s (%s)", s.Verdict, s.Reason)
	}
	// Not judged yet: nothing to decide by.
	for i := range rows {
		rows[i].Judge = nil
	}
	if s = Compute(rows, nil, o); s.Verdict != Inconclusive || s.Judge != nil {
		t.Fatalf("unjudged: %s %+v", s.Verdict, s.Judge)
	}
}

func TestSummarizeFilesAndJudgements(t *testing.T) {
	dir := t.TempDir()
	if _, err := Summarize(dir, opts("m", 0)); !errors.Is(err, ErrNoEval) {
		t.Fatalf("empty dir: %v", err)
	}
	var lines []string
	for i := range 12 {
		lines = append(lines, fmt.Sprintf(`{"index":%d,"messages":[{"role":"user","content":"q%d"}],"reference":"r","extra":{"kept":true},`+
			`"base":{"text":"b","tokens":3,"stopped":"eos","scores":{"m":0},"errors":{}},`+
			`"adapter":{"text":"a","tokens":2,"stopped":"eos","scores":{"m":1},"errors":{}}}`, i, i))
	}
	gen := filepath.Join(dir, GenerationsFile)
	if err := os.WriteFile(gen, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(dir, opts("m", 0))
	if err != nil || s.Verdict != Adopt || s.N != 12 {
		t.Fatalf("summarize: %v %+v", err, s)
	}
	if err := WriteSummary(dir, s); err != nil {
		t.Fatal(err)
	}
	back, err := ReadSummary(dir)
	if err != nil || back.Verdict != Adopt || back.Metrics["m"].Adapter != 1 {
		t.Fatalf("summary round trip: %v %+v", err, back)
	}

	js := make([]*Judgement, 12)
	for i := range js {
		js[i] = &Judgement{Winner: WinnerAdapter, Reason: "closer to the reference"}
	}
	if err := WriteJudgements(gen, js[:11]); err == nil {
		t.Fatal("a judgement count that does not match the rows was accepted")
	}
	if err := WriteJudgements(gen, js); err != nil {
		t.Fatal(err)
	}
	rows, err := ReadGenerations(gen)
	if err != nil || len(rows) != 12 || rows[5].Judge == nil || rows[5].Judge.Winner != WinnerAdapter || rows[5].Adapter.Text != "a" {
		t.Fatalf("rows after judging: %v %+v", err, rows[5])
	}
	b, _ := os.ReadFile(gen)
	if !strings.HasPrefix(string(b), `{"index":0,"messages":`) || !strings.Contains(strings.SplitN(string(b), "\n", 2)[0], `}},"judge":{"winner":"adapter"`) {
		t.Fatalf("the judge is not appended to the row as written: %s", b[:300])
	}
	// Judged again: replaced, not added twice.
	js[0] = &Judgement{Winner: WinnerBase, Reason: "changed"}
	if err := WriteJudgements(gen, js); err != nil {
		t.Fatal(err)
	}
	if rows, _ := ReadGenerations(gen); rows[0].Judge.Winner != WinnerBase || rows[1].Judge.Winner != WinnerAdapter {
		t.Fatalf("rejudged rows %+v %+v", rows[0].Judge, rows[1].Judge)
	}
	b, _ = os.ReadFile(gen)
	if strings.Count(strings.SplitN(string(b), "\n", 2)[0], `"judge"`) != 1 {
		t.Fatalf("judge twice in a row: %s", b[:300])
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(string(b), "\n", 2)[0]), &first); err != nil || first["extra"] == nil {
		t.Fatalf("fields the controller does not know were dropped: %v %s", err, b[:200])
	}

	if err := os.WriteFile(gen, []byte(lines[0]+"\n{broken\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Summarize(dir, opts("m", 0)); err == nil || !strings.Contains(err.Error(), "generations.jsonl:2:") {
		t.Fatalf("a broken row must be an error naming its line, got %v", err)
	}
}

// A loss the trainer wrote as null is left out, not read as 0 (which would look like a
// perfect adapter).
func TestNullLossIsLeftOut(t *testing.T) {
	dir := t.TempDir()
	body := `{"before": [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2], "after": [null, 2.1, 2.1, 2.1, 2.1, 2.1, 2.1, 2.1, 2.1, 2.1, 2.1, 2.1], "indices": []}`
	if err := os.WriteFile(filepath.Join(dir, ExampleLossesFile), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(dir, opts("", 0))
	if err != nil || s.Verdict != DoNotAdopt || math.Abs(s.EvalLoss.After-2.1) > 1e-9 || !strings.HasPrefix(s.Reason, "11 eval examples") {
		t.Fatalf("%v %+v %+v", err, s, s.EvalLoss)
	}
	if err := os.WriteFile(filepath.Join(dir, ExampleLossesFile), []byte(`{"before": [1, 2], "after": [1]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Summarize(dir, opts("", 0)); err == nil || !strings.Contains(err.Error(), "2 losses before but 1 after") {
		t.Fatalf("mismatched lists: %v", err)
	}
}

func TestNullScoreIsAnError(t *testing.T) {
	var r Row
	if err := json.Unmarshal([]byte(`{"index":0,"base":{"scores":{"m":null,"n":0.5}},"adapter":{"scores":{"m":1},"errors":{"x":"boom"}}}`), &r); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Base.Scores["m"]; ok || r.Base.Errors["m"] == "" || r.Base.Scores["n"] != 0.5 || r.Adapter.Errors["x"] != "boom" || r.Adapter.Scores["m"] != 1 {
		t.Fatalf("row %+v", r)
	}
}
