// Package render implements `loractl render`: show exactly what would run, write
// nothing.
package render

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/pyenv"
	"github.com/loractl/loractl/internal/runner"
)

// Options are render's flags and dependencies.
type Options struct {
	Factory *cmdutil.Factory
	Config  string
	Sets    []string
	Driver  string
}

// NewCmdRender builds the render command; runF replaces the work in tests.
func NewCmdRender(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f}
	cmd := &cobra.Command{
		Use:   "render CONFIG",
		Short: "Print the resolved trainer config (or a driver's launch) without writing anything",
		Long: `Print resolved.json exactly as the trainer will read it: every default applied,
every path absolute. With --driver NAME, print what that driver would launch
instead (the Slurm batch script, the docker argv).`,
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
	cmd.Flags().StringVar(&opts.Driver, "driver", "", "render the launch of this driver (slurm, docker, podman, ...)")
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
	if o.Driver == "" {
		_, err = f.IO.Out.Write(p.ResolvedJSON)
		return err
	}
	d, err := f.Driver(cfg.DriverName)
	if err != nil {
		return cmdutil.Invalid(err)
	}
	r, ok := d.(driver.Renderer)
	if !ok {
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
