// Package chat implements `loractl chat RUN`: talk to a run's adapter (or its base
// model) in a streaming REPL, or answer one prompt (the work is in package export).
package chat

import (
	"errors"
	"fmt"
	"os"
	"os/signal"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/export"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/pyenv"
)

// Options are chat's flags and dependencies.
type Options struct {
	Factory      *cmdutil.Factory
	RunID        string
	Chat         export.ChatOptions
	systemPrompt string
}

// NewCmdChat builds the chat command.
func NewCmdChat(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f}
	c := &opts.Chat
	cmd := &cobra.Command{
		Use:   "chat RUN",
		Short: "Chat with a run's adapter (or base model), streaming; -p answers once",
		Long: `Talk to a run's model in a multi-turn conversation whose replies stream as they
are generated. The prompt is the chat template's rendering, as in training; a reply
ends at eos or the template's end-of-turn token, and special tokens are never printed.
The system prompt is the run's data.system_prompt unless --system-prompt is given.

In the conversation:
  /base          answer with the base model (adapter off), same conversation
  /adapter       adapter on again
  /reset         forget the conversation
  /system TEXT   set the system prompt (and start over); /system alone removes it
  /quit          leave (Ctrl-D too)

-p PROMPT answers once and exits; with --json it prints
{"reply": ..., "stopped": "eos"|"max_tokens", "tokens": N}.`,
		Example: `  loractl chat quickstart-1a2b3c4d5e
  loractl chat quickstart-1a2b3c4d5e -p "How do I reset my password?" --json
  loractl chat quickstart-1a2b3c4d5e --checkpoint 40 --system-prompt @prompt.txt`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.RunID = args[0]
			if cmd.Flags().Changed("system-prompt") {
				c.SystemPrompt = &opts.systemPrompt
			}
			if runF != nil {
				return runF(opts)
			}
			return chatRun(cmd, opts)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&c.Checkpoint, "checkpoint", 0, "chat with checkpoint STEP instead of the final adapter")
	fl.StringVarP(&c.Prompt, "prompt", "p", "", "answer this prompt once and exit")
	fl.StringVar(&opts.systemPrompt, "system-prompt", "", "system prompt TEXT or @FILE (default: the run's data.system_prompt)")
	fl.BoolVar(&c.Base, "base", false, "start with the base model (adapter off)")
	fl.IntVar(&c.MaxNewTokens, "max-new-tokens", 256, "most tokens per reply")
	fl.BoolVar(&c.JSON, "json", false, "with -p: print {\"reply\",\"stopped\",\"tokens\"}")
	return cmd
}

func chatRun(cmd *cobra.Command, o *Options) error {
	f := o.Factory
	if o.Chat.Checkpoint < 0 {
		return cmdutil.Invalidf("--checkpoint %d: must be a step > 0", o.Chat.Checkpoint)
	}
	store, err := f.Store()
	if err != nil {
		return err
	}
	m, err := cmdutil.RunManifest(store, o.RunID)
	if err != nil {
		return err
	}
	c := o.Chat
	c.RunDir, c.Manifest = store.Dir(m.RunID), m
	info, _ := export.ReadRunInfo(c.RunDir, m)
	py, _, err := pyenv.Find(info.Python)
	if err != nil {
		return cmdutil.Invalid(fmt.Errorf("%w (see `loractl doctor`)", err))
	}
	c.Python = py
	c.Stdin, c.Stdout, c.Stderr = f.IO.In, f.IO.Out, f.IO.ErrOut
	// Ctrl-C belongs to the chat process (same terminal, same signal): loractl waits for
	// it to leave rather than dying first and leaving its files behind.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt)
	defer signal.Stop(sigs)
	err = export.Chat(cmd.Context(), c)
	switch {
	case errors.Is(err, export.ErrInterrupted):
		return cmdutil.SilentExit(cmdutil.ExitInterrupted)
	case errors.Is(err, export.ErrInvalid):
		return cmdutil.Invalid(err)
	case err != nil:
		return cmdutil.Failed(err)
	}
	return nil
}
