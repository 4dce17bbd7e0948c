// Package root assembles the loractl command tree.
package root

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/version"
)

// NewCmdRoot builds the root command. Global flags are applied to f before any
// subcommand runs.
func NewCmdRoot(f *cmdutil.Factory) *cobra.Command {
	var (
		runsDir    string
		pluginsDir string
		logFormat  string
		logLevel   string
	)
	cmd := &cobra.Command{
		Use:   "loractl <command>",
		Short: "Local LoRA fine-tuning of open LLMs, from data check to adopted adapter",
		Long: `loractl checks your chat data, plans GPU memory, and runs the PEFT/TRL trainer
locally, in a container or on Slurm, with live progress, verified resume and a
before/after evaluation that tells you whether to adopt the adapter.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.String(),
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if runsDir != "" {
				f.RunsDir = func() string { return runsDir }
			}
			if pluginsDir != "" {
				f.PluginsDir = pluginsDir
			}
			return configureLog(f, logFormat, logLevel)
		},
	}
	cmd.PersistentFlags().StringVar(&runsDir, "runs-dir", "", "base directory of the run store (default $LORACTL_RUNS_DIR or ./runs)")
	cmd.PersistentFlags().StringVar(&pluginsDir, "plugins-dir", "", "where external drivers (loractl-driver-<name>) are looked up first (default $LORACTL_PLUGINS_DIR or ~/.config/loractl/plugins)")
	cmd.PersistentFlags().StringVar(&logFormat, "log-format", "console", "controller log format: console or json")
	cmd.PersistentFlags().StringVar(&logLevel, "log-level", "info", "controller log level: debug, info, warn, error")
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return cmdutil.Invalid(err)
	})

	cmd.SetVersionTemplate("loractl {{.Version}}\n")
	for _, add := range commands {
		cmd.AddCommand(add(f))
	}
	cmd.AddCommand(newHelpTopic("exit-codes", "Exit codes of loractl commands", exitCodesHelp))
	cmd.AddCommand(newHelpTopic("environment", "Environment variables loractl reads", environmentHelp))
	cmd.AddCommand(newHelpTopic("reliability", "What a checkpoint, a resume and the run store guarantee", reliabilityHelp))
	usageArgs(cmd)
	wireCompletion(cmd, f)
	return cmd
}

// unknownCommand is the Args of a command group ("loractl", "loractl data"): a word
// that is none of its subcommands is a usage error (exit 2) with cobra's suggestions;
// the bare group prints its help.
func unknownCommand(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
	if sug := c.SuggestionsFor(args[0]); len(sug) > 0 {
		msg += "; did you mean " + strings.Join(sug, " or ") + "?"
	}
	return cmdutil.Invalidf("%s (see %s --help)", msg, c.CommandPath())
}

// usageArgs makes a wrong argument count, or an unknown subcommand of a group, a
// usage error (exit 2) in every command: cobra reports them before any of loractl's
// code runs, as plain errors (exit 1), or prints the help and exits 0.
func usageArgs(c *cobra.Command) {
	if c.HasSubCommands() && c.Args == nil && !c.Runnable() {
		c.SuggestionsMinimumDistance = 2
		c.Args = unknownCommand
		c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
		for _, sub := range c.Commands() {
			usageArgs(sub)
		}
		return
	}
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				var ee *cmdutil.ExitError
				if errors.As(err, &ee) {
					return err
				}
				return cmdutil.Invalid(fmt.Errorf("%w (see %s --help)", err, cmd.CommandPath()))
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		usageArgs(sub)
	}
}

// configureLog points the controller's own log at stderr: a human console by
// default, JSON lines with --log-format json.
func configureLog(f *cmdutil.Factory, format, level string) error {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		return cmdutil.Invalidf("--log-level: %v", err)
	}
	out := f.IO.ErrOut
	if f.LogOut != nil {
		out = f.LogOut
	}
	var l zerolog.Logger
	switch format {
	case "json":
		l = zerolog.New(out).With().Timestamp().Logger()
	case "console":
		l = zerolog.New(zerolog.ConsoleWriter{Out: out, NoColor: !f.IO.IsStderrTTY() || os.Getenv("NO_COLOR") != "", TimeFormat: "15:04:05"}).With().Timestamp().Logger()
	default:
		return cmdutil.Invalidf("--log-format: want console or json, got %q", format)
	}
	l = l.Level(lvl)
	*f.Log = l
	return nil
}

func newHelpTopic(name, short, long string) *cobra.Command {
	return &cobra.Command{
		Use:   name,
		Short: short,
		Long:  long,
	}
}

const reliabilityHelp = `What loractl guarantees (docs/reliability.md has the details and the tests):

  checkpoint  complete only when its loractl-complete.json (written last) lists every
              file with its size and sha256 and every file still matches
  resume      continues from the newest checkpoint that verifies, naming each newer one
              passed over and why; refuses (exit 2) when none verifies; ends exactly
              where the uninterrupted run ends (same eval loss, same adapter bytes on CPU)
  run store   run files are never followed through links; the trainer copy in
              runs/.trainer/ is checked against the binary's before every launch
  plugins     an unpinned external driver others could replace is refused
  inputs      config and sweep files: regular, at most 1 MiB, 64 levels, 100,000 values;
              text from run files is printed with control characters escaped
`

const exitCodesHelp = `loractl exit codes:

  0    success
  1    something failed that your input did not cause: the trainer, a driver, a
       missing tool (sbatch, docker), the disk; fix the environment, or retry
  2    invalid input: config, data, flags, run ids; the message names file, line
       and key. Every command that finds errors in what you gave it exits 2
       (data check, split and convert included); fix the input
  3    GPU pre-flight refused: the run would not fit in free GPU memory (override: --force)
  130  interrupted by SIGINT/SIGTERM; once training started the trainer saved a
       checkpoint (continue: --resume RUN)
       loractl distill: the requests in flight were written; the same command continues
`

const environmentHelp = `Environment variables:

  LORACTL_RUNS_DIR     base directory of the run store (default ./runs)
  LORACTL_PYTHON       interpreter that runs the trainer (default: the setup venv)
  LORACTL_CACHE        where scripts/setup-python.sh keeps venvs and the data check its
                       token counts (default ~/.cache/loractl; tokens/ may be deleted)
  LORACTL_PLUGINS_DIR  where external drivers (loractl-driver-<name>) are looked up
  HF_HOME, HF_HUB_OFFLINE, HF_TOKEN
                       passed to the trainer; HF_TOKEN only by name, never written down
  NO_COLOR             plain console output
  (judge api_key_env)  the variable an eval.metrics judge names holds its API key; read by
                       loractl, which makes the judge's calls, never written down
`
