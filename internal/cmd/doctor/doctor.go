// Package doctor implements `loractl doctor`: what loractl needs, what is missing,
// and the command that fixes it.
package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/pyenv"
)

// Options are doctor's flags and dependencies.
type Options struct {
	Factory *cmdutil.Factory
	JSON    bool
	// Probe runs the interpreter's version probe; tests replace it.
	Probe func(ctx context.Context, python string) (map[string]string, error)
	// GPU opens NVML; tests give a fake.
	GPU func() gpu.Manager
}

// Check is one line of the report.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
	// Required checks fail the command; the others are optional tools.
	Required bool `json:"required"`
}

// NewCmdDoctor builds the doctor command.
func NewCmdDoctor(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f, Probe: probePython, GPU: func() gpu.Manager { return gpu.NewNVML() }}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the trainer's Python environment and the optional tools (GPU, Slurm, containers)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return doctorRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the checks as JSON")
	return cmd
}

// requiredPackages are the trainer's imports; their versions go into every manifest.
var requiredPackages = []string{"torch", "transformers", "peft", "trl", "accelerate", "datasets", "safetensors"}

func doctorRun(ctx context.Context, o *Options) error {
	var checks []Check
	py, src, err := pyenv.Find("")
	if err != nil {
		checks = append(checks, Check{Name: "python", Required: true, Detail: err.Error(),
			Fix: "scripts/setup-python.sh   (or export " + pyenv.EnvPython + "=/path/to/python)"})
	} else {
		checks = append(checks, Check{Name: "python", OK: true, Required: true, Detail: fmt.Sprintf("%s (from %s)", py, src)})
		versions, err := o.Probe(ctx, py)
		for _, pkg := range requiredPackages {
			v, ok := versions[pkg]
			c := Check{Name: pkg, OK: ok && err == nil, Required: true, Detail: v}
			if !c.OK {
				c.Detail = "not importable"
				if err != nil {
					c.Detail = err.Error()
				}
				c.Fix = py + " -m pip install -r python/requirements.txt"
			}
			checks = append(checks, c)
		}
		bnb, ok := versions["bitsandbytes"]
		checks = append(checks, Check{Name: "bitsandbytes", OK: ok, Detail: orNot(bnb, ok, "absent: 4-bit/8-bit (QLoRA) runs need it on a CUDA machine"),
			Fix: fixIf(!ok, "LORACTL_GPU_EXTRAS=1 scripts/setup-python.sh")})
	}
	checks = append(checks, gpuCheck(o.GPU()))
	checks = append(checks, tool("sbatch", "Slurm", "needed by driver: slurm"))
	checks = append(checks, tool("docker", "Docker", "needed by driver: docker"))
	checks = append(checks, tool("podman", "podman", "needed by driver: podman"))
	if store, err := o.Factory.Store(); err == nil {
		checks = append(checks, writable(store.Base))
	}

	out := o.Factory.IO.Out
	failed := false
	for _, c := range checks {
		if c.Required && !c.OK {
			failed = true
		}
	}
	if o.JSON {
		b, _ := json.MarshalIndent(checks, "", "  ")
		fmt.Fprintf(out, "%s\n", b)
	} else {
		for _, c := range checks {
			mark := "ok "
			if !c.OK {
				mark = "-- "
				if c.Required {
					mark = "XX "
				}
			}
			fmt.Fprintf(out, "%s %-13s %s\n", mark, c.Name, c.Detail)
			if c.Fix != "" && !c.OK {
				fmt.Fprintf(out, "    fix: %s\n", c.Fix)
			}
		}
	}
	if failed {
		return cmdutil.SilentExit(cmdutil.ExitFailed)
	}
	return nil
}

// probePython imports each package in the trainer's interpreter and reports versions.
func probePython(ctx context.Context, python string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	script := `import importlib, json, sys
out = {"python": sys.version.split()[0]}
for name in sys.argv[1:]:
    try:
        m = importlib.import_module(name)
        out[name] = getattr(m, "__version__", "?")
    except Exception:
        pass
print(json.dumps(out))`
	args := append([]string{"-c", script}, append(requiredPackages, "bitsandbytes")...)
	b, err := exec.CommandContext(ctx, python, args...).Output()
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", python, err)
	}
	var v map[string]string
	return v, json.Unmarshal(b, &v)
}

// gpuCheck asks NVML, as the pre-flight will: the driver's versions and GPU count.
func gpuCheck(m gpu.Manager) Check {
	c := Check{Name: "NVIDIA GPU"}
	mgr, err := gpu.Open(m)
	if err != nil || gpu.IsNone(mgr) {
		c.Detail = "no NVIDIA driver: loractl trains on the CPU (QLoRA and bf16 need a GPU)"
		return c
	}
	defer func() { _ = mgr.Shutdown() }()
	sys, _ := mgr.System()
	devs, _ := mgr.Devices()
	c.OK = true
	c.Detail = fmt.Sprintf("driver %s (CUDA %s), %d GPU(s); see loractl gpu", sys.DriverVersion, sys.CUDADriverVersion, len(devs))
	return c
}

func tool(bin, name, why string) Check {
	p, err := exec.LookPath(bin)
	if err != nil {
		return Check{Name: name, Detail: bin + " not found: " + why}
	}
	return Check{Name: name, OK: true, Detail: p}
}

func writable(dir string) Check {
	c := Check{Name: "runs dir", Required: true, Detail: dir}
	// The store may not exist yet: probe the nearest existing ancestor.
	probe := dir
	for {
		if _, err := os.Stat(probe); err == nil || filepath.Dir(probe) == probe {
			break
		}
		probe = filepath.Dir(probe)
	}
	f, err := os.CreateTemp(probe, ".loractl-doctor-*")
	if err != nil {
		c.Detail += ": not writable (" + err.Error() + ")"
		c.Fix = "choose another with --runs-dir or LORACTL_RUNS_DIR"
		return c
	}
	f.Close()
	os.Remove(f.Name())
	c.OK = true
	return c
}

func orNot(v string, ok bool, otherwise string) string {
	if ok {
		return v
	}
	return otherwise
}

func fixIf(cond bool, fix string) string {
	if cond {
		return fix
	}
	return ""
}
