// Package export implements `loractl export RUN -o DIR`: the adapter, the merged model
// or a GGUF, with the model card and serving commands (the work is in package export).
package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/export"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/pyenv"
	"github.com/loractl/loractl/version"
)

// Options are export's flags and dependencies.
type Options struct {
	Factory *cmdutil.Factory
	RunID   string
	Export  export.Options
	JSON    bool
}

// NewCmdExport builds the export command.
func NewCmdExport(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f}
	e := &opts.Export
	cmd := &cobra.Command{
		Use:   "export RUN -o DIR",
		Short: "Export a run's adapter, merged model or GGUF for serving, verified",
		Long: `Write a run's adapter for serving into DIR:

  (default)        adapter_config.json, adapter_model.safetensors, the tokenizer and the
                   chat template it was trained with
  --merge          the full model, the adapter merged into the base in the base's dtype
                   (a QLoRA run's base is loaded in 16 bit and merged there); it loads
                   alone with from_pretrained, and generation_config.json lists every
                   token that ends an assistant turn as eos_token_id
  --format gguf    merged, then converted to GGUF (--gguf-quant f16, q8_0, q4_k_m) with an
                   Ollama Modelfile whose TEMPLATE and stop tokens come from the same
                   chat template (needs the export extras: LORACTL_EXPORT_EXTRAS=1
                   scripts/setup-python.sh)

Every export has README.md (a model card: base model, data hashes, eval figures and
verdict, the reproduce command) and SERVING.md (the exact vLLM / Ollama / llama.cpp
commands and an OpenAI-client snippet). Before it reports success the export checks
that its chat template renders probe conversations from the eval set to exactly the
token ids training used, and a merged model's logits against base + adapter (the max
abs difference is printed; over the tolerance fails).

The export is built in a temp dir beside DIR and renamed into place: a refusal (exit 2:
no adapter, DIR exists without --force, too little disk, an incomplete checkpoint) or a
failed check (exit 1) leaves nothing behind.`,
		Example: `  loractl export quickstart-1a2b3c4d5e -o ./my-adapter
  loractl export quickstart-1a2b3c4d5e -o ./my-model --merge
  loractl export quickstart-1a2b3c4d5e -o ./my-gguf --format gguf --gguf-quant q8_0
  loractl export quickstart-1a2b3c4d5e -o ./step-40 --checkpoint 40 --force`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.RunID = args[0]
			if runF != nil {
				return runF(opts)
			}
			return exportRun(cmd, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&e.Out, "output", "o", "", "directory to write (must not exist, unless --force)")
	fl.BoolVar(&e.Merge, "merge", false, "merge the adapter into the base model")
	fl.StringVar(&e.Format, "format", "safetensors", "safetensors or gguf (gguf implies --merge)")
	fl.StringVar(&e.GGUFQuant, "gguf-quant", "", "GGUF tensor type: f16 (default), q8_0, q4_k_m (needs llama-quantize)")
	fl.IntVar(&e.Checkpoint, "checkpoint", 0, "export checkpoint STEP instead of the final adapter")
	fl.BoolVar(&e.Force, "force", false, "replace DIR if it exists")
	fl.Float64Var(&e.Tolerance, "tolerance", 0, "max abs logit difference the merge check allows (default by dtype: fp32 1e-4, fp16 0.05, bf16 0.25)")
	fl.BoolVar(&opts.JSON, "json", false, "print the result as JSON")
	return cmd
}

func exportRun(cmd *cobra.Command, o *Options) error {
	f := o.Factory
	if o.Export.Checkpoint < 0 {
		return cmdutil.Invalidf("--checkpoint %d: must be a step > 0", o.Export.Checkpoint)
	}
	store, err := f.Store()
	if err != nil {
		return err
	}
	m, err := cmdutil.RunManifest(store, o.RunID)
	if err != nil {
		return err
	}
	e := o.Export
	e.RunDir, e.Manifest, e.Version, e.Stderr = store.Dir(m.RunID), m, version.String(), f.IO.ErrOut
	info, err := export.ReadRunInfo(e.RunDir, m)
	if err != nil {
		f.Log.Warn().Err(err).Msg("the run's config no longer parses: exporting without its system prompt")
	}
	e.SystemPrompt = info.SystemPrompt
	py, _, err := pyenv.Find(info.Python)
	if err != nil {
		return cmdutil.Invalid(fmt.Errorf("%w (see `loractl doctor`)", err))
	}
	e.Python = py
	// Ctrl-C stops the helper and removes the temp dir before loractl exits.
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := export.Run(ctx, e)
	switch {
	case ctx.Err() != nil && cmd.Context().Err() == nil:
		f.Log.Warn().Msg("export interrupted: nothing was written")
		return cmdutil.SilentExit(cmdutil.ExitInterrupted)
	case errors.Is(err, export.ErrInvalid):
		return cmdutil.Invalid(err)
	case err != nil:
		return cmdutil.Failed(err)
	}
	out := f.IO.Out
	if o.JSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(out, "exported %s (%s) to %s\n", m.RunID, res.Mode, res.Dir)
	fmt.Fprintf(out, "  template  %d probe(s) render to the token ids training used\n", res.Probes)
	if v := res.Verify; v != nil {
		fmt.Fprintf(out, "  merge     %s, logits vs base+adapter: max abs difference %.3g (tolerance %g)\n", v.DType, v.MaxAbsDiff, v.Tolerance)
	}
	if g := res.GGUF; g != nil {
		fmt.Fprintf(out, "  gguf      %s: %d tensors, %d tokens read back\n", g.File, g.Tensors, g.Tokens)
	}
	fmt.Fprintf(out, "  stops at  %v\n", res.StopTokens)
	fmt.Fprintf(out, "  serve     see %s/SERVING.md\n", res.Dir)
	return nil
}
