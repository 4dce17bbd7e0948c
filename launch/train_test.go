package launch

import (
	"errors"
	"testing"

	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/runner"
)

func TestWaitErrorPutsTheTrainersAccountFirst(t *testing.T) {
	noSpace := errors.New("write runs/x/.manifest.json.123: no space left on device")
	tests := []struct {
		name string
		out  *runner.Outcome
		want string
	}{
		{"no outcome", nil, noSpace.Error()},
		{"no trainer error", &runner.Outcome{State: run.StateFailed}, noSpace.Error()},
		{"trainer error", &runner.Outcome{State: run.StateFailed, Err: &run.Event{ErrorType: "DiskFull", Message: "the disk holding runs/x is full (0 B free)"}},
			"DiskFull: the disk holding runs/x is full (0 B free); the outcome could not be recorded in the manifest: " + noSpace.Error()},
	}
	for _, tt := range tests {
		err := waitError(tt.out, noSpace)
		if err.Error() != tt.want || !errors.Is(err, noSpace) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}
