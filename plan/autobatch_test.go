package plan

import (
	"testing"
)

// sampleLengths are rows like the sample data's: ~53 tokens, the longest 66.
func sampleLengths() *Lengths {
	train := make([]int, 0, 300)
	for i := 0; i < 300; i++ {
		train = append(train, 66-i/20) // 66, ..., 52
	}
	return &Lengths{Train: train, Eval: []int{63, 60, 58, 55}, TrainCount: 300, EvalCount: 40}
}

// The data basis pads a micro-batch to its longest row; padding-free counts only the
// rows' own tokens; packing and --worst-case keep max_length.
func TestBatchTokensAndPadding(t *testing.T) {
	tests := []struct {
		name       string
		edit       func(*Run)
		wantTokens int64
		wantSeq    int
		wantBasis  string
	}{
		{"max_length basis without data", func(r *Run) { r.Data = nil }, 8 * 2048, 2048, BasisMaxLength},
		{"data basis pads to the longest row", nil, 8 * 66, 66, BasisData},
		{"worst case keeps max_length", func(r *Run) { r.WorstCase = true }, 8 * 2048, 2048, BasisMaxLength},
		{"packing fills max_length", func(r *Run) { r.Packing = true }, 8 * 2048, 2048, BasisData},
		{"padding-free adds the 8 longest", func(r *Run) { r.PaddingFree = true }, 66 * 8, 66 * 8, BasisData},
		{"padding-free at 64 rows", func(r *Run) { r.PaddingFree, r.BatchSize = true, 64 }, 20*66 + 20*65 + 20*64 + 4*63, 20*66 + 20*65 + 20*64 + 4*63, BasisData},
		{"rows longer than max_length are truncated", func(r *Run) { r.MaxLength = 60 }, 8 * 60, 60, BasisData},
		{"a batch larger than the set", func(r *Run) { r.BatchSize, r.Data.TrainCount = 16, 5 }, 5 * 66, 66, BasisData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, "Llama-3.2-1B", func(r *Run) { r.BatchSize, r.Data = 8, sampleLengths() })
			if tt.edit != nil {
				tt.edit(&r)
			}
			e := estimate(t, r)
			if e.BatchTokens != tt.wantTokens || e.SeqLen != tt.wantSeq || e.Basis != tt.wantBasis {
				t.Errorf("tokens %d seq %d basis %s, want %d %d %s", e.BatchTokens, e.SeqLen, e.Basis, tt.wantTokens, tt.wantSeq, tt.wantBasis)
			}
			if e.WorstCasePeakBytes < e.PeakBytes {
				t.Errorf("worst case %d below the peak %d", e.WorstCasePeakBytes, e.PeakBytes)
			}
		})
	}
}

// Padding-free saves the padding of a batch of uneven rows; the fraction saved is the
// padding's share of the padded batch.
func TestPaddingFreeSavesThePadding(t *testing.T) {
	lens := &Lengths{Train: []int{1000, 200, 200, 200}, TrainCount: 4}
	padded := estimate(t, run(t, "Llama-3.2-1B", func(r *Run) { r.Data, r.GradientCheckpointing = lens, false }))
	free := estimate(t, run(t, "Llama-3.2-1B", func(r *Run) {
		r.Data, r.GradientCheckpointing, r.PaddingFree, r.FlashAttention = lens, false, true, true
	}))
	if padded.BatchTokens != 4000 || free.BatchTokens != 1600 {
		t.Fatalf("tokens %d / %d, want 4000 / 1600 (60%% padding)", padded.BatchTokens, free.BatchTokens)
	}
	if free.PeakBytes >= padded.PeakBytes {
		t.Errorf("padding-free %d not below padded %d", free.PeakBytes, padded.PeakBytes)
	}
}

// Liger's kernels keep less per token, and its fused cross-entropy removes the full
// logits of a loss that would otherwise materialise them.
func TestLigerModelled(t *testing.T) {
	base := run(t, "Llama-3.2-1B", func(r *Run) { r.GradientCheckpointing, r.LossType = false, "full_logits" })
	liger := base
	liger.Liger = true
	e0, e1 := estimate(t, base), estimate(t, liger)
	if e1.ActivationBytesNoGC >= e0.ActivationBytesNoGC {
		t.Errorf("Liger activations %d not below %d", e1.ActivationBytesNoGC, e0.ActivationBytesNoGC)
	}
	l0, l1 := e0.Breakdown()["logits_and_loss"], e1.Breakdown()["logits_and_loss"]
	if l0 == 0 || l1*4 > l0 {
		t.Errorf("logits term %d with Liger vs %d without: the fused loss should remove most of it", l1, l0)
	}
}

// The auto micro-batch is the largest divisor of the effective batch whose estimate
// fits in 90% of the memory given, and the effective batch is kept.
func TestAutoBatchSearch(t *testing.T) {
	cands := []int{32, 16, 8, 4, 2, 1}
	r := run(t, "Llama-3.2-1B", func(r *Run) { r.Data, r.GradientCheckpointing = sampleLengths(), false })
	peak := func(b int) uint64 {
		v := r
		v.BatchSize = b
		return estimate(t, v).PeakBytes
	}
	tests := []struct {
		name    string
		avail   uint64
		want    int
		wantErr bool
	}{
		{"H200 takes the whole effective batch", 139 << 30, 32, false},
		{"just enough for 16", uint64(float64(peak(16))/AutoBatchShare) + 1, 16, false},
		{"just short of 16", uint64(float64(peak(16))/AutoBatchShare) - (1 << 20), 8, false},
		{"nothing fits", 1 << 30, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, e, err := AutoBatch(r, tt.avail, 32, cands)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if got.BatchSize != tt.want || got.BatchSize*got.GradAccum != 32 {
				t.Errorf("micro-batch %d × %d, want %d × %d", got.BatchSize, got.GradAccum, tt.want, 32/tt.want)
			}
			if !tt.wantErr && float64(e.PeakBytes) > AutoBatchShare*float64(tt.avail) {
				t.Errorf("estimate %d over 90%% of %d", e.PeakBytes, tt.avail)
			}
		})
	}
}
