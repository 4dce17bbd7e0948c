package config

import (
	"strings"
	"testing"
)

// The effective-batch rule: unset, micro-batch × grad_accum × processes; set,
// grad_accum = effective ÷ (micro-batch × processes). With auto the micro-batch is
// the pre-flight's; the resolved config holds the no-GPU choice (at most 8).
func TestBatchSizeAutoAndEffectiveBatch(t *testing.T) {
	base := "name: demo\nmodel: Qwen/Qwen2.5-0.5B-Instruct\ndata:\n  train: train.jsonl\n"
	tests := []struct {
		name            string
		train           string
		batch, ga, eff  int
		auto            bool
		attn            string
		paddingFree, lg any
	}{
		{"defaults", "", 4, 1, 4, false, "auto", "auto", "auto"},
		{"batch and accum", "  batch_size: 2\n  grad_accum: 8\n", 2, 8, 16, false, "auto", "auto", "auto"},
		{"effective derives accum", "  batch_size: 4\n  effective_batch_size: 32\n", 4, 8, 32, false, "auto", "auto", "auto"},
		{"auto keeps the default effective batch", "  batch_size: auto\n", 4, 1, 4, true, "auto", "auto", "auto"},
		{"auto with accum", "  batch_size: auto\n  grad_accum: 8\n", 8, 4, 32, true, "auto", "auto", "auto"},
		{"auto with effective", "  batch_size: auto\n  effective_batch_size: 64\n", 8, 8, 64, true, "auto", "auto", "auto"},
		{"auto with odd effective", "  batch_size: auto\n  effective_batch_size: 14\n", 7, 2, 14, true, "auto", "auto", "auto"},
		{"kernels", "  attn_implementation: sdpa\n  padding_free: true\n  liger: false\n", 4, 1, 4, false, "sdpa", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := base
			if tt.train != "" {
				yaml += "train:\n" + tt.train
			}
			c, err := Load(writeConfig(t, yaml), nil)
			if err != nil {
				t.Fatal(err)
			}
			tr := c.Resolved.Train
			if tr.BatchSize != tt.batch || tr.GradAccum != tt.ga || tr.EffectiveBatchSize != tt.eff || tr.BatchSizeAuto != tt.auto {
				t.Errorf("batch %d accum %d effective %d auto %v, want %d %d %d %v", tr.BatchSize, tr.GradAccum, tr.EffectiveBatchSize, tr.BatchSizeAuto,
					tt.batch, tt.ga, tt.eff, tt.auto)
			}
			if tr.AttnImplementation != tt.attn || tr.PaddingFree != tt.paddingFree || tr.Liger != tt.lg {
				t.Errorf("attn %v padding_free %v liger %v", tr.AttnImplementation, tr.PaddingFree, tr.Liger)
			}
		})
	}
}

func TestThroughputKeysRefused(t *testing.T) {
	base := "name: demo\nmodel: Qwen/Qwen2.5-0.5B-Instruct\ndata:\n  train: train.jsonl\ntrain:\n"
	tests := []struct{ name, train, want string }{
		{"batch word", "  batch_size: many\n", ":6:3: train.batch_size: must be a positive integer or auto, got \"many\""},
		{"batch list", "  batch_size: [1]\n", "train.batch_size: must be an integer"},
		{"effective zero", "  effective_batch_size: 0\n", "train.effective_batch_size: must be > 0"},
		{"effective not a multiple", "  batch_size: 3\n  effective_batch_size: 8\n", "train.effective_batch_size: effective batch 8 is not a multiple of micro-batch 3"},
		{"accum disagrees", "  batch_size: 2\n  grad_accum: 3\n  effective_batch_size: 8\n", "train.grad_accum: is 3 but train.effective_batch_size 8"},
		{"auto with both", "  batch_size: auto\n  grad_accum: 2\n  effective_batch_size: 8\n", "train.grad_accum: is derived from train.effective_batch_size"},
		{"attn", "  attn_implementation: flash3\n", "train.attn_implementation: must be auto, sdpa, flash_attention_2 or eager"},
		{"padding_free word", "  padding_free: sometimes\n", "train.padding_free: must be auto, true or false"},
		{"liger number", "  liger: 1\n", "train.liger: must be auto, true or false"},
		{"padding-free eager", "  padding_free: true\n  attn_implementation: eager\n", "train.padding_free: needs attention that reads position_ids"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, base+tt.train), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestMicroBatchCandidates(t *testing.T) {
	got := MicroBatchCandidates(32, 1)
	if len(got) != 6 || got[0] != 32 || got[5] != 1 {
		t.Errorf("candidates of 32: %v", got)
	}
	if got := MicroBatchCandidates(32, 2); got[0] != 16 {
		t.Errorf("32 over 2 processes: %v", got)
	}
	if ga, err := GradAccumFor(32, 4, 2); err != nil || ga != 4 {
		t.Errorf("GradAccumFor(32, 4, 2) = %d, %v", ga, err)
	}
	if _, err := GradAccumFor(30, 4, 1); err == nil {
		t.Error("30 over micro-batch 4 accepted")
	}
	if b := FallbackBatch(14, 1); b != 7 {
		t.Errorf("fallback of 14 = %d, want 7", b)
	}
}
