package root

import (
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/sweep"
)

// runArgCommands take a RUN as their first argument; sweepArgCommands a SWEEP. Shell
// completion offers the ids in the store (with their state) for them.
var (
	runArgCommands = []string{"loractl logs", "loractl stop", "loractl reproduce", "loractl report", "loractl eval", "loractl export", "loractl chat"}
	// runArgsCommands take up to two runs.
	runArgsCommands  = []string{"loractl compare"}
	sweepArgCommands = []string{"loractl sweep status", "loractl sweep results"}
)

// wireCompletion attaches dynamic completion: run ids, sweep ids, config keys and
// enum values for --set, run ids for --resume.
func wireCompletion(root *cobra.Command, f *cmdutil.Factory) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := c.CommandPath()
		for _, p := range runArgCommands {
			if p == path && c.ValidArgsFunction == nil {
				c.ValidArgsFunction = firstArg(func() []string { return runIDs(f) })
			}
		}
		for _, p := range runArgsCommands {
			if p == path && c.ValidArgsFunction == nil {
				c.ValidArgsFunction = upTo(2, func() []string { return runIDs(f) })
			}
		}
		for _, p := range sweepArgCommands {
			if p == path && c.ValidArgsFunction == nil {
				c.ValidArgsFunction = firstArg(func() []string { return sweepIDs(f) })
			}
		}
		if c.Flags().Lookup("set") != nil {
			_ = c.RegisterFlagCompletionFunc("set", func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				return SetCompletions(toComplete), cobra.ShellCompDirectiveNoSpace | cobra.ShellCompDirectiveNoFileComp
			})
		}
		if c.Flags().Lookup("resume") != nil {
			_ = c.RegisterFlagCompletionFunc("resume", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
				return runIDs(f), cobra.ShellCompDirectiveNoFileComp
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

func firstArg(list func() []string) cobra.CompletionFunc { return upTo(1, list) }

// upTo completes the first n positional arguments from list.
func upTo(n int, list func() []string) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) >= n {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return list(), cobra.ShellCompDirectiveNoFileComp
	}
}

// runIDs lists the store's runs as "id\tstate", newest first; an unreadable store
// completes nothing rather than failing the shell.
func runIDs(f *cmdutil.Factory) []string {
	store, err := f.Store()
	if err != nil {
		return nil
	}
	ms, err := store.List()
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.RunID+"\t"+string(m.State))
	}
	return out
}

func sweepIDs(f *cmdutil.Factory) []string {
	entries, err := os.ReadDir(sweep.DefaultBase(f.RunsDir()))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// SetCompletions completes a --set argument: config keys (with "=") until the key is
// typed, then the key's allowed values when it has a fixed set.
func SetCompletions(toComplete string) []string {
	key, _, typedValue := strings.Cut(toComplete, "=")
	if typedValue {
		var out []string
		for _, v := range config.Enums[key] {
			out = append(out, key+"="+v)
		}
		return out
	}
	var out []string
	for _, k := range config.KnownKeys() {
		if k == "driver" {
			k = "driver.name"
		}
		out = append(out, k+"=")
	}
	return out
}
