package cmdutil

import (
	"errors"
	"fmt"
	"testing"

	"github.com/loractl/loractl/dataset"
	"github.com/loractl/loractl/gpu/preflight"
	"github.com/loractl/loractl/launch"
)

// Exit codes are decided here, at the CLI edge, from what the packages below return.
func TestExitCode(t *testing.T) {
	noFit := &preflight.NoFitError{Need: 1 << 30}
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, ExitOK},
		{"plain error", errors.New("boom"), ExitFailed},
		{"invalid", Invalidf("bad flag"), ExitInvalid},
		{"silent", SilentExit(ExitInterrupted), ExitInterrupted},
		{"no fit", noFit, ExitNoFit},
		{"no fit wrapped", fmt.Errorf("pre-flight: %w", noFit), ExitNoFit},
		{"unusable GPU", &preflight.UnusableError{Err: errors.New("MIG enabled but no MIG instance")}, ExitNoFit},
		{"a GPU this machine lacks", &preflight.RequestError{Msg: "GPU 7 was requested"}, ExitInvalid},
		{"QLoRA without CUDA", &launch.InputError{Err: errors.New("quantization: 4bit needs an NVIDIA GPU")}, ExitInvalid},
		{"data errors", &launch.DataCheckError{Report: &dataset.Report{ErrorsTotal: 2}}, ExitInvalid},
		// An explicit decision wins over the type it wraps.
		{"decided", Failed(noFit), ExitFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExitCode(tt.err); got != tt.want {
				t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}
