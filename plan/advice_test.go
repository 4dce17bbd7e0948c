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
		if a.PeakBytes >= base.PeakBytes || a.Verdict == DoesNotFit {
			t.Errorf("%q does not improve the verdict (%s)", a.Summary, a.Verdict)
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
	if a, ok := got["quantization.mode"]; ok {
		t.Errorf("4-bit advice offered although it leaves the run not fitting: %+v", a)
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
		// A smaller micro-batch alone leaves it not fitting and 4-bit alone fits:
		// only 4-bit is applied.
		{"8B on 13 GiB needs 4-bit", run(t, "Llama-3.1-8B", nil), 13 << 30,
			[]string{"quantization.mode", "quantization.double_quant"}, ""},
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

// A tight run is only changed when the change makes it fit: Llama-3.3-70B in 4-bit
// at 1024 tokens (43.9 GiB) on 44 GiB stays tight down to max_length 128, so
// neither advice nor auto-fit may cut max_length, and auto-fit changes nothing.
func TestTightRunOnlyChangedToFit(t *testing.T) {
	r := run(t, "Llama-3.3-70B", func(r *Run) { r.Quantization, r.DoubleQuant, r.BatchSize, r.MaxLength = "4bit", true, 1, 1024 })
	avail := uint64(44) << 30
	if v := Judge(estimate(t, r).PeakBytes, avail); v != Tight {
		t.Fatalf("setup: %s, want tight", v)
	}
	advice, err := Advise(r, avail)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range advice {
		if a.Verdict != Fits {
			t.Errorf("advice %q leaves the run %s", a.Summary, a.Verdict)
		}
	}
	fitted, changes, e, err := AutoFit(r, avail)
	if len(changes) != 0 || fitted.MaxLength != 1024 || e.PeakBytes != estimate(t, r).PeakBytes {
		t.Errorf("auto-fit changed a tight run without making it fit: %v (max_length %d)", changes, fitted.MaxLength)
	}
	if err == nil || !strings.Contains(err.Error(), "stays tight") {
		t.Errorf("err = %v, want it to say the run stays tight", err)
	}
}

// Each advice improves the verdict or cuts the peak by PartialCut; a max_length cut
// only appears when it fits.
func TestAdviceImprovesTheVerdict(t *testing.T) {
	tests := []struct {
		name  string
		run   Run
		avail uint64
	}{
		{"8B 16-bit on 24 GiB", run(t, "Llama-3.1-8B", nil), 24 << 30},
		{"8B 16-bit on 18 GiB", run(t, "Llama-3.1-8B", nil), 18 << 30},
		{"0.5B no checkpointing on 12 GiB", run(t, "Qwen2.5-0.5B", func(r *Run) { r.GradientCheckpointing, r.BatchSize = false, 8 }), 12 << 30},
		{"70B 4-bit on 40 GiB", run(t, "Llama-3.3-70B", func(r *Run) { r.Quantization, r.DoubleQuant = "4bit", true }), 40 << 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			was := Judge(estimate(t, tt.run).PeakBytes, tt.avail)
			advice, err := Advise(tt.run, tt.avail)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range advice {
				if !better(a.Verdict, was) && !(a.Partial && float64(a.PeakBytes) <= (1-PartialCut)*float64(estimate(t, tt.run).PeakBytes)) {
					t.Errorf("%q: %s → %s does not improve", a.Summary, was, a.Verdict)
				}
				if a.Changes[0].Setting == "train.max_length" && a.Verdict != Fits {
					t.Errorf("%q cuts max_length and is only %s", a.Summary, a.Verdict)
				}
			}
			_, changes, e, err := AutoFit(tt.run, tt.avail)
			if got := Judge(e.PeakBytes, tt.avail); len(changes) > 0 && !better(got, was) {
				t.Errorf("auto-fit applied %v and the run is still %s", changes, got)
			}
			if len(changes) == 0 && err == nil && was != Fits {
				t.Errorf("auto-fit changed nothing and said nothing")
			}
		})
	}
}

// Gradient checkpointing that cuts the peak by most of it is advised even when the
// run still does not fit, so that the report never says no change helps while one
// does most of the work.
func TestPartialAdviceNamesCheckpointing(t *testing.T) {
	r := run(t, "Llama-3.1-8B", func(r *Run) { r.GradientCheckpointing, r.BatchSize, r.MaxLength = false, 8, 4096 })
	before := estimate(t, r).PeakBytes
	advice, err := Advise(r, 12<<30)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range advice {
		if a.Changes[0].Setting == "train.gradient_checkpointing" {
			found = true
			if !a.Partial || a.Verdict != DoesNotFit || a.PeakBytes >= before/2 {
				t.Errorf("checkpointing advice %+v (before %.1f GiB)", a, float64(before)/gib)
			}
		}
	}
	if !found {
		t.Errorf("checkpointing not advised: %+v", advice)
	}
}
