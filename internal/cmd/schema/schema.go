// Package schema implements `loractl schema`: the JSON Schema of the run config (or of
// resolved.json), generated from the Go types the controller reads them into.
package schema

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/internal/cmdutil"
)

// Options are schema's flags and dependencies.
type Options struct {
	Factory  *cmdutil.Factory
	Resolved bool
	Output   string
}

// NewCmdSchema builds the schema command.
func NewCmdSchema(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f}
	cmd := &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of the run config (--resolved: of resolved.json)",
		Long: `Print the JSON Schema (draft 2020-12) of the YAML run config, generated from the
types loractl reads it into: unknown keys are refused, enums and the keys that take
several forms ("auto" or a count, a list or all-linear) are described. Editors with
the YAML language server (VS Code's YAML extension, Neovim, Helix) complete and check
a config that starts with the modeline ` + "`loractl init`" + ` writes:

  # yaml-language-server: $schema=loractl.schema.json

--resolved prints the schema of resolved.json, the trainer's input.`,
		Example: `  loractl schema -o loractl.schema.json
  loractl schema --resolved`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return schemaRun(opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Resolved, "resolved", false, "the schema of resolved.json instead of the YAML config")
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "", "write the schema to FILE instead of stdout")
	return cmd
}

func schemaRun(o *Options) error {
	b := config.SchemaJSON(o.Resolved)
	if o.Output == "" {
		_, err := o.Factory.IO.Out.Write(b)
		return err
	}
	if err := os.WriteFile(o.Output, b, 0o644); err != nil {
		return cmdutil.Invalid(err)
	}
	fmt.Fprintf(o.Factory.IO.ErrOut, "wrote %s\n", o.Output)
	return nil
}
