package plan

import (
	"context"
	"errors"
	"testing"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/gputest"
	"github.com/loractl/loractl/gpu/preflight"
	"github.com/loractl/loractl/internal/cmdutil"
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
	tests := []struct {
		name        string
		mgr         *gputest.Manager
		opts        preflight.Options
		wantCode    int
		wantVisible string
	}{
		{"fits on the most free GPU", gputest.New(gputest.GPU("A", 24*gib, 3*gib), gputest.GPU("B", 24*gib, 23*gib)),
			preflight.Options{GPU: preflight.AnyGPU}, 0, "1"},
		{"refused on a busy card", gputest.New(gputest.GPU("A", 24*gib, 3*gib)),
			preflight.Options{GPU: preflight.AnyGPU}, cmdutil.ExitNoFit, ""},
		{"forced on a busy card", gputest.New(gputest.GPU("A", 24*gib, 3*gib)),
			preflight.Options{GPU: preflight.AnyGPU, Force: true}, 0, "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			est, d, err := Preflight(context.Background(), r, tt.mgr, tt.opts)
			if est == nil || est.PeakBytes == 0 {
				t.Fatalf("no estimate: %v", err)
			}
			if tt.mgr.Open() {
				t.Error("manager left open")
			}
			if code := cmdutil.ExitCode(err); code != tt.wantCode {
				t.Fatalf("exit %d (%v), want %d", code, err, tt.wantCode)
			}
			if tt.wantCode == 0 && d.Visible != tt.wantVisible {
				t.Errorf("decision %+v", d)
			}
			var nf *preflight.NoFitError
			if tt.wantCode == cmdutil.ExitNoFit && (!errors.As(err, &nf) || nf.Need != est.PeakBytes) {
				t.Errorf("refusal %v does not carry the estimate", err)
			}
		})
	}
}

func TestPreflightWithoutDriverOrArchitecture(t *testing.T) {
	noDriver := gputest.New()
	noDriver.InitErr = gpu.ErrNoDriver
	est, d, err := Preflight(context.Background(), resolvedFor(t, ""), noDriver, preflight.Options{GPU: preflight.AnyGPU})
	if err != nil || !d.CPU || est == nil {
		t.Fatalf("no driver: %+v, %v", d, err)
	}
	r := resolvedFor(t, "")
	r.Model.NameOrPath = "acme/not-downloaded-yet"
	est, d, err = Preflight(context.Background(), r, gputest.New(gputest.GPU("A", 24*gib, 20*gib)), preflight.Options{GPU: preflight.AnyGPU})
	if err != nil || est != nil || d.Visible != "0" {
		t.Fatalf("unknown architecture: est %v, decision %+v, %v", est, d, err)
	}
}
