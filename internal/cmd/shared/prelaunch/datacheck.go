package prelaunch

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/dataset"
	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/internal/pyenv"
	"github.com/loractl/loractl/runner"
)

// CheckData lints the run's data with the real tokenizer when the model is a local
// directory. Errors stop the run (exit 2); warnings are printed and recorded in
// lo.DataCheck. Sweeps call it once per distinct DataCheckKey of their points.
func CheckData(ctx context.Context, f *cmdutil.Factory, cfg *config.Config, lo *runner.LaunchOptions, skip bool) error {
	log := f.Log
	if skip {
		log.Warn().Msg("data check skipped (--skip-data-check)")
		lo.DataCheck = json.RawMessage(`{"skipped":true}`)
		return nil
	}
	r := cfg.Resolved
	opts := dataset.Options{
		Train:        r.Data.Train,
		Eval:         r.Data.Eval,
		EvalSplit:    r.Data.EvalSplit,
		SystemPrompt: cfg.SystemPrompt,
		MaxLength:    r.Train.MaxLength,
		Epochs:       r.Train.Epochs,
	}
	if filepath.IsAbs(r.Model.NameOrPath) {
		opts.Tokenizer = &dataset.PythonTokenCounter{Python: lo.Python, Dir: r.Model.NameOrPath, CacheDir: pyenv.TokenCacheDir()}
	}
	rep, err := dataset.Check(ctx, opts)
	if err != nil {
		return cmdutil.Invalid(fmt.Errorf("data check: %w", err))
	}
	if rep.HasErrors() {
		w := f.IO.ErrOut
		fmt.Fprintf(w, "data check found %d error(s); nothing was launched:\n", rep.ErrorsTotal)
		for _, e := range rep.Errors {
			file := e.File
			if file == "" {
				file = rep.File
			}
			where := file // an error about the whole file has no line: never "file:0"
			if e.Line > 0 {
				where = fmt.Sprintf("%s:%d", file, e.Line)
			}
			if e.Path != "" {
				where += ": " + e.Path
			}
			fmt.Fprintf(w, "  %s: %s (%s)\n", where, e.Message, e.Code)
		}
		if more := rep.ErrorsTotal - len(rep.Errors); more > 0 {
			fmt.Fprintf(w, "  ... and %d more (loractl data check %s)\n", more, rep.File)
		}
		return cmdutil.SilentExit(cmdutil.ExitInvalid)
	}
	for _, wn := range rep.Warnings {
		ev := log.Warn().Str("code", wn.Code).Int("count", wn.Count)
		if len(wn.Lines) > 0 {
			ev = ev.Ints("lines", wn.Lines)
		}
		ev.Msg(wn.Message)
	}
	rec := struct {
		Warnings []dataset.Warning `json:"warnings"`
		Stats    dataset.Stats     `json:"stats"`
	}{rep.Warnings, rep.Stats}
	lo.DataCheck, err = json.Marshal(rec)
	return err
}

// DataCheckKey is what CheckData's verdict depends on: two configs with the same key
// get the same report. Sweeps check the data once per key, so a point that sweeps
// max_length or data.train is checked with its own values. Keep it in step with the
// options CheckData builds.
func DataCheckKey(cfg *config.Config) string {
	r := cfg.Resolved
	b, _ := json.Marshal([]any{r.Data.Train, r.Data.Eval, r.Data.EvalSplit, cfg.SystemPrompt,
		r.Train.MaxLength, r.Train.Epochs, r.Model.NameOrPath, cfg.Spec.Python})
	return string(b)
}
