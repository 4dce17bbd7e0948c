package cmdutil

import (
	"strings"

	"github.com/spf13/pflag"

	"github.com/loractl/loractl/config"
)

// SetFlag registers the repeatable --set KEY=VALUE flag of the commands that load a
// config. A relative path given for a path key (data.train, model, ...) is taken
// relative to the working directory, as the shell completed it, and stored absolute.
func SetFlag(fs *pflag.FlagSet, p *[]string, example string) {
	fs.Var(&setsValue{p: p}, "set", "override a config key: --set "+example+" (repeatable; relative paths are relative to the working directory)")
}

type setsValue struct{ p *[]string }

func (v *setsValue) Set(s string) error {
	*v.p = append(*v.p, config.AbsolutePathSets([]string{s})...)
	return nil
}

func (v *setsValue) String() string {
	if v.p == nil {
		return "[]"
	}
	return "[" + strings.Join(*v.p, ",") + "]"
}

func (v *setsValue) Type() string { return "stringArray" }
