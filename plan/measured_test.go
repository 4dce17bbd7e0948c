package plan

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// measuredDir holds the H200 measurements of 2026-12-04 (README.md there says how
// they were made): scripts/gpu_measure.py's table and two real `loractl train` runs.
const measuredDir = "testdata/gpu-2026-12-04"

// measuredRow is one row of scripts/gpu_measure.py's results.json.
type measuredRow struct {
	Setting   string `json:"setting"`
	Shape     string `json:"shape"`
	Allocated uint64 `json:"torch_allocated_bytes"`
	NVML      uint64 `json:"nvml_bytes"`
}

// measuredRun rebuilds the Run gpu_measure.py estimated for a setting (its
// resolved_json: bf16, TRL's fused loss, AdamW, dropout 0.05, no eval).
func measuredRun(t *testing.T, row measuredRow) Run {
	t.Helper()
	var batch, length int
	f := strings.Fields(row.Setting)
	for _, w := range f {
		if strings.HasPrefix(w, "b") && strings.Contains(w, "x") {
			parts := strings.SplitN(w[1:], "x", 2)
			batch, length = atoi(t, parts[0]), atoi(t, parts[1])
		}
	}
	r := run(t, row.Shape, func(r *Run) {
		r.BatchSize, r.EvalBatchSize, r.MaxLength = batch, batch, length
		r.GradientCheckpointing = strings.HasSuffix(row.Setting, " GC")
		r.Precision, r.LossType = "bf16", "nll"
		r.LoRA = LoRA{R: 16, Targets: []string{"all-linear"}, Dropout: 0.05}
		if strings.Contains(row.Setting, " qv ") {
			r.LoRA.Targets = []string{"q_proj", "v_proj"}
		}
		if strings.Contains(row.Setting, " r32") {
			r.LoRA.R = 32
		}
		if strings.Contains(row.Setting, " 4bit ") {
			r.Quantization, r.DoubleQuant = "4bit", true
		}
	})
	return r
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// Every row of the measured table: the estimate lands within -5%..+10% of the peak
// NVML saw for the process (under is an OOM the pre-flight promised would not happen;
// over refuses runs that fit), and these rows have every row max_length long, so the
// data basis is the max_length one.
func TestEstimateAgainstMeasuredTable(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(measuredDir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []measuredRow
	if err := json.Unmarshal(data, &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 6 {
		t.Fatalf("results.json has %d rows, want the 6 measured", len(rows))
	}
	for _, row := range rows {
		t.Run(row.Setting, func(t *testing.T) {
			e := estimate(t, measuredRun(t, row))
			ratio := float64(e.PeakBytes) / float64(row.NVML)
			alloc := float64(e.AllocatedBytes) / float64(row.Allocated)
			t.Logf("estimate %.2f GiB / NVML %.2f GiB = %.3f; allocated %.3f", float64(e.PeakBytes)/gib, float64(row.NVML)/gib, ratio, alloc)
			if ratio < 0.95 || ratio > 1.10 {
				t.Errorf("estimate/NVML = %.3f, want 0.95..1.10", ratio)
			}
		})
	}
}

// measuredTrainerRun is the Run of the two real-trainer measurements: a 252M Llama
// shape (make_tiny_model.py --hidden 1024 --layers 16 --heads 16 --kv-heads 8
// --intermediate 4096, vocabulary 341 built from the sample data, untied head) on
// the sample data (300 train rows of at most 66 tokens, 40 eval rows of at most 63),
// all-linear r16, batch 8, max_length 256, no checkpointing, bf16.
func measuredTrainerRun(quant string) Run {
	a := &Arch{Family: "llama", Hidden: 1024, Intermediate: 4096, Layers: 16, Heads: 16, KVHeads: 8, HeadDim: 64, Vocab: 341}
	a.familyTraits()
	return Run{Model: "tiny-252m", Arch: a, LoRA: LoRA{R: 16, Targets: []string{"all-linear"}, Dropout: 0.05},
		Quantization: quant, DoubleQuant: true, BatchSize: 8, EvalBatchSize: 8, GradAccum: 1, MaxLength: 256,
		Precision: "auto", LossType: "nll", Optimizer: "adamw_torch", Eval: true,
		Data: &Lengths{Train: []int{66}, Eval: []int{63}, TrainCount: 300, EvalCount: 40}}
}

// The real trainer's runs: on the data basis the estimate of what PyTorch allocates
// is within 25% of torch's peak allocated (the max_length basis was 2.4-3.1x over).
func TestEstimateAgainstRealTrainerRuns(t *testing.T) {
	for _, tt := range []struct{ manifest, quant string }{
		{"trainer-lora-manifest.json", "none"},
		{"trainer-qlora-manifest.json", "4bit"},
	} {
		t.Run(tt.manifest, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(measuredDir, tt.manifest))
			if err != nil {
				t.Fatal(err)
			}
			var m struct {
				Result struct {
					PeakAllocated uint64 `json:"peak_allocated_bytes"`
				} `json:"result"`
			}
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			e := estimate(t, measuredTrainerRun(tt.quant))
			if e.Basis != BasisData {
				t.Fatalf("basis %q, want data", e.Basis)
			}
			ratio := float64(e.AllocatedBytes) / float64(m.Result.PeakAllocated)
			t.Logf("data basis: estimate allocated %.3g B / torch peak %.3g B = %.3f (worst case peak %.3g B)",
				float64(e.AllocatedBytes), float64(m.Result.PeakAllocated), ratio, float64(e.WorstCasePeakBytes))
			if ratio < 0.75 || ratio > 1.25 {
				t.Errorf("estimate/measured = %.3f, want within 25%%", ratio)
			}
			if e.WorstCasePeakBytes <= e.PeakBytes {
				t.Errorf("worst case %d should exceed the data basis %d on rows of 66 of 256 tokens", e.WorstCasePeakBytes, e.PeakBytes)
			}
		})
	}
}
