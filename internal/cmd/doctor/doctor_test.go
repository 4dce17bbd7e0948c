package doctor

import (
	"context"
	"strings"
	"testing"

	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/gputest"
	"github.com/loractl/loractl/internal/cmdtest"
	"github.com/loractl/loractl/internal/cmdutil"
)

func TestDoctor(t *testing.T) {
	t.Setenv("LORACTL_PYTHON", "/bin/true")
	all := map[string]string{"torch": "2.15.0", "transformers": "5.23.0", "peft": "0.21.2", "trl": "1.16.0",
		"accelerate": "1.15.0", "datasets": "5.2.0", "safetensors": "0.8.0"}
	cases := []struct {
		name     string
		versions map[string]string
		code     int
		want     string
	}{
		{"complete", all, 0, "ok  NVIDIA GPU    driver 550.54.15 (CUDA 12.4), 1 GPU(s)"},
		{"missing trl", without(all, "trl"), cmdutil.ExitFailed, "XX  trl           not importable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, out, _ := cmdtest.Factory(t, nil)
			probe := func(context.Context, string) (map[string]string, error) { return tc.versions, nil }
			m := gputest.New(gputest.GPU("NVIDIA H100 80GB HBM3", 80<<30, 79<<30))
			m.Sys = gpu.System{DriverVersion: "550.54.15", CUDADriverVersion: "12.4"}
			err := doctorRun(context.Background(), &Options{Factory: f, Probe: probe, GPU: func() gpu.Manager { return m }})
			if cmdutil.ExitCode(err) != tc.code || !strings.Contains(out.String(), tc.want) {
				t.Fatalf("exit %d, output:\n%s", cmdutil.ExitCode(err), out)
			}
			if tc.code != 0 && !strings.Contains(out.String(), "fix: /bin/true -m pip install -r python/requirements.txt") {
				t.Errorf("no fix shown:\n%s", out)
			}
		})
	}
}

func TestDoctorWithoutPython(t *testing.T) {
	t.Setenv("LORACTL_PYTHON", "")
	t.Setenv("LORACTL_CACHE", t.TempDir())
	f, out, _ := cmdtest.Factory(t, nil)
	noDriver := &gputest.Manager{InitErr: gpu.ErrNoDriver}
	err := doctorRun(context.Background(), &Options{Factory: f, Probe: probePython, GPU: func() gpu.Manager { return noDriver }})
	if cmdutil.ExitCode(err) != cmdutil.ExitFailed || !strings.Contains(out.String(), "scripts/setup-python.sh") ||
		!strings.Contains(out.String(), "no NVIDIA driver") {
		t.Fatalf("exit %d:\n%s", cmdutil.ExitCode(err), out)
	}
}

func without(m map[string]string, key string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if k != key {
			out[k] = v
		}
	}
	return out
}
