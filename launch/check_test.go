package launch

import (
	"testing"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/container"
	"github.com/loractl/loractl/driver/local"
	"github.com/loractl/loractl/driver/slurm"
	"github.com/loractl/loractl/runner"
)

// The pre-flight applies where the built-in driver says the trainer runs here.
func TestRunsHere(t *testing.T) {
	docker, _ := container.New(container.Docker)
	podman, _ := container.New(container.Podman)
	for _, tc := range []struct {
		d    driver.Driver
		want bool
	}{{local.New(), true}, {docker, true}, {podman, true}, {slurm.New(), false}, {nil, false}} {
		if got := RunsHere(&runner.LaunchOptions{Driver: tc.d}); got != tc.want {
			t.Errorf("RunsHere(%v) = %v", tc.d, got)
		}
	}
}
