package plan

import (
	"strings"
	"testing"
)

func TestJudge(t *testing.T) {
	tests := []struct {
		peak, avail uint64
		want        Verdict
	}{
		{80, 100, Fits},
		{90, 100, Fits},
		{91, 100, Tight},
		{100, 100, Tight},
		{101, 100, DoesNotFit},
	}
	for _, tt := range tests {
		if got := Judge(tt.peak, tt.avail); got != tt.want {
			t.Errorf("Judge(%d, %d) = %s, want %s", tt.peak, tt.avail, got, tt.want)
		}
	}
}

func TestAdviseEachWithItsEstimate(t *testing.T) {
	// Qwen 0.5B, batch 8 × 2048, no checkpointing, against a 12 GiB card.
	r := run(t, "Qwen2.5-0.5B", func(r *Run) { r.GradientCheckpointing, r.BatchSize, r.GradAccum = false, 8, 2 })
	avail := uint64(12 << 30)
	base := estimate(t, r)
	if Judge(base.PeakBytes, avail) != DoesNotFit {
		t.Fatalf("setup: %.1f GiB should not fit 12 GiB", float64(base.PeakBytes)/gib)
	}
	advice, err := Advise(r, avail)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Advice{}
	for _, a := range advice {
		got[a.Changes[0].Setting] = a
		if a.PeakBytes >= base.PeakBytes {
			t.Errorf("%q does not lower the peak", a.Summary)
		}
		// Each advice's estimate is the estimate of the run with its changes.
		v := r
		for _, c := range a.Changes {
			switch c.Setting {
			case "train.gradient_checkpointing":
				v.GradientCheckpointing = c.Value.(bool)
			case "train.batch_size":
				v.BatchSize = c.Value.(int)
			case "train.grad_accum":
				v.GradAccum = c.Value.(int)
			case "quantization.mode":
				v.Quantization = c.Value.(string)
			case "quantization.double_quant":
				v.DoubleQuant = c.Value.(bool)
			case "train.max_length":
				v.MaxLength = c.Value.(int)
			}
		}
		if e := estimate(t, v); e.PeakBytes != a.PeakBytes {
			t.Errorf("%q: advice says %d, the run estimates %d", a.Summary, a.PeakBytes, e.PeakBytes)
		}
	}
	if a, ok := got["train.gradient_checkpointing"]; !ok || a.Verdict != Fits {
		t.Errorf("checkpointing advice: %+v", a)
	}
	mb, ok := got["train.batch_size"]
	if !ok {
		t.Fatal("no micro-batch advice")
	}
	// The effective batch (8 × 2) is kept.
	if b, ga := mb.Changes[0].Value.(int), mb.Changes[1].Value.(int); b*ga != 16 || b >= 8 {
		t.Errorf("micro-batch advice %+v", mb.Changes)
	}
	if _, ok := got["train.max_length"]; !ok {
		t.Error("no max_length advice")
	}
	if _, ok := got["quantization.mode"]; !ok {
		t.Error("no 4-bit advice")
	}
	if _, ok := got["train.eval_batch_size"]; ok {
		t.Error("eval batch advice offered although training peaks")
	}
}

func TestAutoFit(t *testing.T) {
	tests := []struct {
		name        string
		run         Run
		avail       uint64
		wantChanges []string
		wantErr     string
	}{
		{"already fits", run(t, "Qwen2.5-0.5B", nil), 80 << 30, nil, ""},
		{"checkpointing is enough", run(t, "Qwen2.5-0.5B", func(r *Run) { r.GradientCheckpointing = false }), 10 << 30,
			[]string{"train.gradient_checkpointing"}, ""},
		{"then a smaller micro-batch", run(t, "Llama-3.2-3B", func(r *Run) { r.GradientCheckpointing, r.BatchSize = false, 16 }), 16 << 30,
			[]string{"train.gradient_checkpointing", "train.batch_size", "train.grad_accum"}, ""},
		{"8B on 12 GiB needs 4-bit", run(t, "Llama-3.1-8B", nil), 12 << 30,
			[]string{"train.batch_size", "train.grad_accum", "quantization.mode", "quantization.double_quant"}, ""},
		{"70B on 24 GiB is hopeless", run(t, "Llama-3.3-70B", nil), 24 << 30, nil, "even with every change"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fitted, changes, e, err := AutoFit(tt.run, tt.avail)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, c := range changes {
				names = append(names, c.Setting)
			}
			if strings.Join(names, ",") != strings.Join(tt.wantChanges, ",") {
				t.Errorf("changes %v, want %v", changes, tt.wantChanges)
			}
			if Judge(e.PeakBytes, tt.avail) != Fits {
				t.Errorf("auto-fit result %.1f GiB does not fit %.1f GiB", float64(e.PeakBytes)/gib, float64(tt.avail)/gib)
			}
			if fitted.BatchSize*fitted.GradAccum != tt.run.BatchSize*tt.run.GradAccum {
				t.Errorf("effective batch changed: %d×%d", fitted.BatchSize, fitted.GradAccum)
			}
		})
	}
}
