// Package initcmd implements `loractl init`: a commented starter config.
package initcmd

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/internal/cmdutil"
)

//go:embed starter.yaml
var starter []byte

// Options are init's flags and dependencies.
type Options struct {
	Factory *cmdutil.Factory
	Path    string
	Force   bool
}

// NewCmdInit builds the init command.
func NewCmdInit(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f}
	cmd := &cobra.Command{
		Use:   "init [PATH]",
		Short: "Write a commented starter config (default loractl.yaml; - for stdout)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Path = "loractl.yaml"
			if len(args) == 1 {
				opts.Path = args[0]
			}
			if runF != nil {
				return runF(opts)
			}
			return initRun(opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Force, "force", false, "overwrite an existing file")
	return cmd
}

func initRun(o *Options) error {
	if o.Path == "-" {
		_, err := o.Factory.IO.Out.Write(starter)
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if o.Force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	fh, err := os.OpenFile(o.Path, flags, 0o644)
	if errors.Is(err, os.ErrExist) {
		return cmdutil.Invalidf("%s exists; use --force to overwrite it", o.Path)
	}
	if err != nil {
		return cmdutil.Invalid(err)
	}
	if _, err := fh.Write(starter); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	fmt.Fprintf(o.Factory.IO.Out, "wrote %s: edit model and data, then `loractl render %s`\n", o.Path, o.Path)
	return o.writeSchema()
}

// SchemaFile is the schema the starter's modeline names, beside the config.
const SchemaFile = "loractl.schema.json"

// writeSchema writes the config's JSON Schema beside it, for the editor the modeline
// points at. An existing schema file is kept unless --force (`loractl schema -o` also
// refreshes it).
func (o *Options) writeSchema() error {
	path := filepath.Join(filepath.Dir(o.Path), SchemaFile)
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if o.Force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	fh, err := os.OpenFile(path, flags, 0o644)
	if errors.Is(err, os.ErrExist) {
		fmt.Fprintf(o.Factory.IO.Out, "kept %s (refresh it with `loractl schema -o %s`)\n", path, path)
		return nil
	}
	if err != nil {
		return cmdutil.Invalid(err)
	}
	if _, err := fh.Write(config.SchemaJSON(false)); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	fmt.Fprintf(o.Factory.IO.Out, "wrote %s: editors with the YAML language server complete and check the config with it\n", path)
	return nil
}
