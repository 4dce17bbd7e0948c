package reproduce

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loractl/loractl/run"
)

// writeTensors writes a safetensors file of F32 tensors (and one BF16 tensor when
// bf16 is given).
func writeTensors(t *testing.T, path string, f32 map[string][]float32, bf16 []uint16) {
	t.Helper()
	header := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	var data []byte
	for _, name := range []string{"a.weight", "b.weight"} {
		vals, ok := f32[name]
		if !ok {
			continue
		}
		start := len(data)
		for _, v := range vals {
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
		}
		header[name] = map[string]any{"dtype": "F32", "shape": []int{len(vals)}, "data_offsets": []int{start, len(data)}}
	}
	if bf16 != nil {
		start := len(data)
		for _, v := range bf16 {
			data = binary.LittleEndian.AppendUint16(data, v)
		}
		header["c.weight"] = map[string]any{"dtype": "BF16", "shape": []int{len(bf16)}, "data_offsets": []int{start, len(data)}}
	}
	h, _ := json.Marshal(header)
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	out = append(append(out, h...), data...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCompareSafetensors(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	base := map[string][]float32{"a.weight": {1, 2, 3}, "b.weight": {0.5, -0.5}}
	writeTensors(t, p("orig"), base, []uint16{0x3f80, 0x4000}) // bf16 1.0, 2.0
	writeTensors(t, p("same"), base, []uint16{0x3f80, 0x4000})
	writeTensors(t, p("close"), map[string][]float32{"a.weight": {1, 2, 3.001}, "b.weight": {0.5, -0.5}}, []uint16{0x3f80, 0x4040})
	writeTensors(t, p("missing"), map[string][]float32{"a.weight": {1, 2, 3}}, nil)
	writeTensors(t, p("reshaped"), map[string][]float32{"a.weight": {1, 2}, "b.weight": {0.5, -0.5}}, []uint16{0x3f80, 0x4000})

	d, err := compareSafetensors(p("orig"), p("same"))
	if err != nil || !d.Same() || d.Tensors != 3 {
		t.Fatalf("identical files: %+v %v", d, err)
	}
	d, err = compareSafetensors(p("orig"), p("close"))
	if err != nil || d.Same() || d.Identical != 1 || d.MaxTensor != "c.weight" || d.MaxAbsDiff != 1 {
		t.Fatalf("close files: %+v %v", d, err) // bf16 2.0 → 3.0 beats f32 3 → 3.001
	}
	// A NaN on one side: reported, and the report still encodes as JSON.
	writeTensors(t, p("nan"), map[string][]float32{"a.weight": {1, 2, float32(math.NaN())}, "b.weight": {0.5, -0.5}}, []uint16{0x3f80, 0x4000})
	d, err = compareSafetensors(p("orig"), p("nan"))
	if err != nil || !d.NonFinite || d.MaxTensor != "a.weight" {
		t.Fatalf("NaN on one side: %+v %v", d, err)
	}
	var out bytes.Buffer
	if err := (&Report{Weights: d}).print(&out, true); err != nil || !strings.Contains(out.String(), `"non_finite": true`) {
		t.Fatalf("JSON report: %v\n%s", err, out.String())
	}
	d, _ = compareSafetensors(p("nan"), p("nan"))
	if !d.Same() || d.NonFinite {
		t.Errorf("NaN on both sides, same bits: %+v", d)
	}
	d, _ = compareSafetensors(p("orig"), p("missing"))
	if len(d.Mismatch) != 2 || !strings.Contains(d.Mismatch[0], "missing from the reproduction") {
		t.Fatalf("missing tensors: %+v", d.Mismatch)
	}
	d, _ = compareSafetensors(p("orig"), p("reshaped"))
	if len(d.Mismatch) != 1 || !strings.Contains(d.Mismatch[0], "a.weight: F32[3] vs F32[2]") {
		t.Fatalf("reshaped: %+v", d.Mismatch)
	}
	if err := os.WriteFile(p("junk"), []byte("not a tensor file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := compareSafetensors(p("orig"), p("junk")); err == nil {
		t.Fatal("junk file compared")
	}
}

func TestHalf(t *testing.T) {
	for h, want := range map[uint16]float64{0x3c00: 1, 0xc000: -2, 0x3555: 0.333251953125, 0x0001: math.Ldexp(1, -24), 0x7c00: math.Inf(1)} {
		if got := half(h); got != want {
			t.Errorf("half(%#x) = %v, want %v", h, got, want)
		}
	}
}

func TestCompareJudgement(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	res := func(after, loss float64) *run.Result {
		return &run.Result{Step: 6, EvalLossBefore: f(2), EvalLossAfter: f(after),
			Metrics: map[string]*float64{"train_loss": f(loss), "train_runtime": f(12.5), "train_samples_per_second": f(3)}}
	}
	cases := []struct {
		name       string
		device     string
		tol        float64
		a, b       *run.Result
		reproduced bool
	}{
		{"identical on cpu", "cpu", -1, res(1.5, 1.7), res(1.5, 1.7), true},
		{"timings ignored", "cpu", -1, res(1.5, 1.7), &run.Result{Step: 6, EvalLossBefore: f(2), EvalLossAfter: f(1.5), Metrics: map[string]*float64{"train_loss": f(1.7), "train_runtime": f(99)}}, true},
		{"cpu is bit for bit", "cpu", -1, res(1.5, 1.7), res(1.5000001, 1.7), false},
		{"gpu default tolerance", "cuda", -1, res(1.5, 1.7), res(1.501, 1.7), true},
		{"gpu beyond tolerance", "cuda", -1, res(1.5, 1.7), res(1.6, 1.7), false},
		{"explicit tolerance", "cpu", 0.1, res(1.5, 1.7), res(1.6, 1.8), true},
		{"metric missing", "cpu", -1, res(1.5, 1.7), &run.Result{Step: 6, EvalLossBefore: f(2), EvalLossAfter: f(1.5)}, false},
		{"other step count", "cpu", 0.5, res(1.5, 1.7), &run.Result{Step: 5, EvalLossBefore: f(2), EvalLossAfter: f(1.5), Metrics: map[string]*float64{"train_loss": f(1.7)}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			orig := &run.Manifest{RunID: "a", Device: c.device, Result: c.a, Versions: map[string]string{"torch": "2.15"}}
			rep := &run.Manifest{RunID: "a-repro-1", Device: c.device, Result: c.b, Versions: map[string]string{"torch": "2.16"}}
			r, err := compare(orig, rep, nil, nil, c.tol)
			if err != nil {
				t.Fatal(err)
			}
			if r.Reproduced != c.reproduced {
				t.Fatalf("reproduced %v, want %v: %+v", r.Reproduced, c.reproduced, r.Metrics)
			}
			if len(r.Versions) != 1 || r.Versions[0] != "torch 2.15 -> 2.16" {
				t.Errorf("versions %v", r.Versions)
			}
			for _, m := range r.Metrics {
				if timing(m.Name) {
					t.Errorf("timing metric %s compared", m.Name)
				}
			}
		})
	}
}

func TestResolvedDiff(t *testing.T) {
	a := []byte(`{"lora":{"r":8,"alpha":16},"train":{"seed":1}}`)
	b := []byte(`{"lora":{"r":8,"alpha":32},"train":{"seed":1},"extra":true}`)
	if got, want := resolvedDiff(a, b), "extra: - -> true; lora.alpha: 16 -> 32"; got != want {
		t.Fatalf("diff %q, want %q", got, want)
	}
}

// TestCompareResumedRun: a resumed original's train_loss covers only the resumed
// part; it is not compared, the per-step losses are (the last logged value of a step
// that was logged again after the resume wins).
func TestCompareResumedRun(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	logEv := func(step int, loss float64) *run.Event { return &run.Event{Type: "log", Step: step, Loss: f(loss)} }
	straight := []*run.Event{{Type: "start"}, logEv(2, 3.0), logEv(4, 2.5), logEv(6, 2.0)}
	resumed := []*run.Event{{Type: "start"}, logEv(2, 3.0), logEv(4, 9.9), // step 4 logged, then interrupted before its checkpoint
		{Type: "start", ResumeStep: 2, ResumeFrom: "checkpoint-2"}, logEv(4, 2.5), logEv(6, 2.0)}
	drifted := []*run.Event{{Type: "start"}, logEv(2, 3.0), logEv(4, 2.6), logEv(6, 2.0)}
	// Resumed from step 3, between two logging steps: the loss logged at step 4 then
	// averages step 4 alone, and is not compared.
	offBoundary := []*run.Event{{Type: "start"}, logEv(2, 3.0),
		{Type: "start", ResumeStep: 3, ResumeFrom: "checkpoint-3"}, logEv(4, 2.2), logEv(6, 2.0)}
	res := func(trainLoss float64) *run.Result {
		return &run.Result{Step: 6, EvalLossBefore: f(2), EvalLossAfter: f(1.5), Metrics: map[string]*float64{"train_loss": f(trainLoss)}}
	}
	cases := []struct {
		name         string
		origEv       []*run.Event
		origLoss     float64
		reproEv      []*run.Event
		reproduced   bool
		wantNote     bool
		mismatchStep int
	}{
		{"resumed original, same path", resumed, 2.25, straight, true, true, 0},
		{"straight runs compare train_loss", straight, 2.5, straight, true, false, 0},
		{"straight runs, train_loss differs", straight, 2.4, straight, false, false, 0},
		{"a step's loss differs", resumed, 2.25, drifted, false, true, 4},
		{"resumed between logging steps", offBoundary, 2.1, straight, true, true, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			orig := &run.Manifest{RunID: "a", Device: "cpu", Result: res(c.origLoss)}
			rep := &run.Manifest{RunID: "a-repro-1", Device: "cpu", Result: res(2.5)}
			r, err := compare(orig, rep, c.origEv, c.reproEv, -1)
			if err != nil {
				t.Fatal(err)
			}
			if r.Reproduced != c.reproduced {
				t.Fatalf("reproduced %v, want %v: %+v %+v", r.Reproduced, c.reproduced, r.Metrics, r.StepLosses)
			}
			if (len(r.Notes) > 0) != c.wantNote {
				t.Errorf("notes %q", r.Notes)
			}
			if c.mismatchStep != 0 && (r.StepLosses == nil || len(r.StepLosses.Mismatched) != 1 || r.StepLosses.Mismatched[0] != c.mismatchStep) {
				t.Errorf("step losses %+v, want step %d mismatched", r.StepLosses, c.mismatchStep)
			}
			var out bytes.Buffer
			if err := r.print(&out, false); err != nil {
				t.Fatal(err)
			}
			if c.wantNote && !strings.Contains(out.String(), "was resumed from step") {
				t.Errorf("printed report lacks the resume note:\n%s", out.String())
			}
		})
	}
}
