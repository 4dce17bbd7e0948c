// Package render implements `loractl render`: show exactly what would run, write
// nothing.
package render

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/pyenv"
	"github.com/loractl/loractl/runner"
)

// Options are render's flags and dependencies.
type Options struct {
	Factory *cmdutil.Factory
	Config  string
	Sets    []string
	Driver  string
	// Resolved prints resolved.json whatever the config's driver is.
	Resolved bool
}

// NewCmdRender builds the render command; runF replaces the work in tests.
func NewCmdRender(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f}
	cmd := &cobra.Command{
		Use:   "render CONFIG",
		Short: "Print the resolved trainer config (or a driver's launch) without writing anything",
		Long: `Print what the config's driver would launch, writing nothing: the Slurm batch
script, the docker/podman argv, or, for the local driver, resolved.json exactly as
the trainer will read it (every default applied, every path absolute).
--driver NAME renders another driver's launch of the same config; --resolved prints
resolved.json whatever the driver.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Config = args[0]
			if runF != nil {
				return runF(opts)
			}
			return renderRun(opts)
		},
	}
	cmdutil.SetFlag(cmd.Flags(), &opts.Sets, "train.learning_rate=1e-4")
	cmd.Flags().StringVar(&opts.Driver, "driver", "", "render the launch of this driver instead of the config's (slurm, docker, podman, ...)")
	cmd.Flags().BoolVar(&opts.Resolved, "resolved", false, "print resolved.json, whatever the config's driver")
	return cmd
}

func renderRun(o *Options) error {
	f := o.Factory
	cfg, err := cmdutil.LoadConfig(f, o.Config, o.Sets, o.Driver)
	if err != nil {
		return err
	}
	p, err := runner.Prepare(cfg)
	if err != nil {
		return cmdutil.Invalid(err)
	}
	// What the config's driver launches is what a user checks before a submission; the
	// local driver launches the trainer on resolved.json itself.
	if o.Resolved || (o.Driver == "" && cfg.DriverName == "local") {
		_, err = f.IO.Out.Write(p.ResolvedJSON)
		return err
	}
	d, err := f.Driver(cfg.DriverName)
	if err != nil {
		return cmdutil.Invalid(err)
	}
	r, ok := d.(driver.Renderer)
	if !ok {
		if o.Driver == "" {
			// An external driver that renders nothing: its launch is resolved.json.
			_, err = f.IO.Out.Write(p.ResolvedJSON)
			return err
		}
		return cmdutil.Invalidf("driver %s has nothing to render beyond resolved.json", cfg.DriverName)
	}
	py := cfg.Spec.Python
	if py == "" {
		if found, _, err := pyenv.Find(""); err == nil {
			py = found
		} else {
			py = "python3"
		}
	}
	store, err := f.Store()
	if err != nil {
		return err
	}
	lo := runner.LaunchOptions{Python: py, Env: cfg.Spec.Env.Set, PassEnv: cfg.Spec.Env.Pass}
	if cfg.GPU >= 0 {
		// What train launches on the config's GPU (train's pre-flight may pick
		// another when gpu: is not set).
		lo.GPUs = []int{cfg.GPU}
	}
	task := runner.TaskFor(store.Dir(p.RunID), p, lo, "")
	out, err := r.Render(task)
	if err != nil {
		return cmdutil.Invalid(fmt.Errorf("render %s: %w", cfg.DriverName, err))
	}
	_, err = f.IO.Out.Write(out)
	return err
}
