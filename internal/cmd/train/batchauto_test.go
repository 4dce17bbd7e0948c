package train

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/gputest"
	"github.com/loractl/loractl/run"
)

// train.batch_size auto: the pre-flight picks the largest divisor of the effective
// batch whose data-basis estimate fits in 90% of the GPU's free memory, hands it to
// the trainer and records it with the estimate; a smaller GPU gets a smaller
// micro-batch and more accumulation, the effective batch unchanged.
func TestBatchAutoPicksAndRecordsTheMicroBatch(t *testing.T) {
	tests := []struct {
		name      string
		free      uint64
		wantBatch int
	}{
		{"H200", 139 << 30, 32},
		{"a small card", 3 << 30, 0}, // some divisor below 32
		{"no GPU: the largest divisor up to 8", 0, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, fake, runs := setup(t)
			data, _ := filepath.Abs(filepath.Join("..", "..", "..", "examples", "data"))
			yaml := "name: auto\nmodel: Qwen/Qwen2.5-0.5B-Instruct\ndata:\n  train: " + filepath.Join(data, "train.jsonl") +
				"\n  eval: " + filepath.Join(data, "eval.jsonl") +
				"\ntrain:\n  batch_size: auto\n  effective_batch_size: 32\n  max_length: 2048\n  gradient_checkpointing: false\ndriver:\n  name: local\n"
			if err := os.WriteFile(o.Config, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			o.GPUManager = func() gpu.Manager { return gputest.New(gputest.GPU("NVIDIA GPU", 141<<30, tt.free)) }
			if tt.free == 0 {
				o.GPUManager = func() gpu.Manager { return &gputest.Manager{InitErr: gpu.ErrNoDriver} }
			}
			if err := trainRun(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			var rec struct {
				BatchSize int    `json:"batch_size"`
				GradAccum int    `json:"grad_accum"`
				Basis     string `json:"basis"`
				Choice    string `json:"batch_choice"`
			}
			ms, _ := (&run.Store{Base: runs}).List()
			if len(ms) != 1 || json.Unmarshal(ms[0].Estimate, &rec) != nil {
				t.Fatalf("manifests: %+v", ms)
			}
			if rec.BatchSize*rec.GradAccum != 32 || rec.Basis != "data" || rec.Choice == "" {
				t.Errorf("recorded %+v, want a micro-batch × grad_accum of 32 on the data basis", rec)
			}
			if tt.wantBatch > 0 && rec.BatchSize != tt.wantBatch {
				t.Errorf("micro-batch %d, want %d", rec.BatchSize, tt.wantBatch)
			}
			if tt.wantBatch == 0 && rec.BatchSize >= 32 {
				t.Errorf("micro-batch %d on %d GiB free", rec.BatchSize, tt.free>>30)
			}
			if got := fake.task.Env["LORACTL_MICRO_BATCH"]; got != itoa(rec.BatchSize) {
				t.Errorf("LORACTL_MICRO_BATCH = %q, want %d", got, rec.BatchSize)
			}
		})
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
