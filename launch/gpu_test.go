package launch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/gputest"
	"github.com/loractl/loractl/gpu/preflight"
	"github.com/loractl/loractl/plan"
)

func resolvedFor(t *testing.T, yaml string) *config.Resolved {
	t.Helper()
	cfg, err := config.Load(fixture(t, yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	return &cfg.Resolved
}

func TestPreflight(t *testing.T) {
	r := resolvedFor(t, "train:\n  batch_size: 4\n  max_length: 2048\n")
	est, err := TrainEstimate(r)
	if err != nil || est == nil || est.PeakBytes == 0 {
		t.Fatalf("no estimate: %v", err)
	}
	tests := []struct {
		name        string
		mgr         *gputest.Manager
		opts        preflight.Options
		refused     bool
		wantVisible string
	}{
		{"fits on the most free GPU", gputest.New(gputest.GPU("A", 24*gib, 3*gib), gputest.GPU("B", 24*gib, 23*gib)),
			preflight.Options{GPU: preflight.AnyGPU}, false, "1"},
		{"refused on a busy card", gputest.New(gputest.GPU("A", 24*gib, 3*gib)),
			preflight.Options{GPU: preflight.AnyGPU}, true, ""},
		{"forced on a busy card", gputest.New(gputest.GPU("A", 24*gib, 3*gib)),
			preflight.Options{GPU: preflight.AnyGPU, Force: true}, false, "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Preflight(context.Background(), est, tt.mgr, tt.opts)
			if tt.mgr.Open() {
				t.Error("manager left open")
			}
			var nf *preflight.NoFitError
			if refused := errors.As(err, &nf); refused != tt.refused || (!refused && err != nil) {
				t.Fatalf("err %v, want refused=%v", err, tt.refused)
			}
			if !tt.refused && d.Visible != tt.wantVisible {
				t.Errorf("decision %+v", d)
			}
			if tt.refused && (nf.Need != plan.Need(est) || nf.Need <= est.PeakBytes) {
				t.Errorf("refusal %v does not carry the estimate plus the margin", err)
			}
		})
	}
}

func TestPreflightWithoutDriverOrEstimate(t *testing.T) {
	noDriver := gputest.New()
	noDriver.InitErr = gpu.ErrNoDriver
	est, err := TrainEstimate(resolvedFor(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	d, err := Preflight(context.Background(), est, noDriver, preflight.Options{GPU: preflight.AnyGPU})
	if err != nil || !d.CPU {
		t.Fatalf("no driver: %+v, %v", d, err)
	}
	d, err = Preflight(context.Background(), nil, gputest.New(gputest.GPU("A", 24*gib, 20*gib)), preflight.Options{GPU: preflight.AnyGPU})
	if err != nil || d.Visible != "0" {
		t.Fatalf("no estimate: decision %+v, %v", d, err)
	}
}

// Whatever the estimator cannot handle gives train no estimate and a reason, never
// a refusal: an architecture it does not know (gpt_neox, mixtral), a model whose
// config.json is not here yet, or target modules it cannot place.
func TestTrainEstimateReasons(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(t *testing.T, r *config.Resolved)
		wantErr string
	}{
		{"not downloaded yet", func(t *testing.T, r *config.Resolved) { r.Model.NameOrPath = "acme/not-downloaded-yet" }, "unknown model"},
		{"gpt_neox", func(t *testing.T, r *config.Resolved) { r.Model.NameOrPath = modelDir(t, "gpt_neox") }, `model_type "gpt_neox"`},
		{"mixtral", func(t *testing.T, r *config.Resolved) { r.Model.NameOrPath = modelDir(t, "mixtral") }, `model_type "mixtral"`},
		{"unknown target", func(t *testing.T, r *config.Resolved) { r.LoRA.TargetModules = []string{"query_key_value"} }, "query_key_value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := resolvedFor(t, "")
			tt.edit(t, r)
			est, err := TrainEstimate(r)
			if est != nil || err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("estimate %v, err %v; want none, saying %q", est, err, tt.wantErr)
			}
		})
	}
	// A PEFT-style suffix is a known target.
	r := resolvedFor(t, "")
	r.LoRA.TargetModules = []string{"self_attn.q_proj", "self_attn.v_proj"}
	if est, err := TrainEstimate(r); err != nil || est == nil {
		t.Fatalf("self_attn.q_proj: %v", err)
	}
}

// modelDir writes a model directory whose config.json has model_type mt.
func modelDir(t *testing.T, mt string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := `{"model_type": "` + mt + `", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
 "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 50304}`
	must(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644))
	return dir
}
