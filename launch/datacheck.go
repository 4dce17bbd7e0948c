package launch

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/dataset"
	"github.com/loractl/loractl/runner"
)

// CheckData lints the run's data, with the real tokenizer when the model is a local
// directory (token counts cached in tokenCacheDir). Errors are a *DataCheckError and
// nothing may be launched; warnings are logged and, with the data's statistics,
// recorded in lo.DataCheck for the manifest and the estimate. Sweeps call it once per
// distinct DataCheckKey of their points.
func CheckData(ctx context.Context, log *zerolog.Logger, cfg *config.Config, lo *runner.LaunchOptions, skip bool, tokenCacheDir string) error {
	return checkData(ctx, log, cfg, lo, skip, tokenCacheDir, nil)
}

// checkData is CheckData calling counting (when set) as the token count starts, once
// the structural checks have passed, and counting in the runner it returns.
func checkData(ctx context.Context, log *zerolog.Logger, cfg *config.Config, lo *runner.LaunchOptions, skip bool, tokenCacheDir string, counting func() dataset.PythonRunner) error {
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
	var counter *dataset.PythonTokenCounter
	if filepath.IsAbs(r.Model.NameOrPath) {
		counter = &dataset.PythonTokenCounter{Python: lo.Python, Dir: r.Model.NameOrPath, CacheDir: tokenCacheDir}
		opts.Tokenizer = counter
		if counting != nil {
			opts.Counting = func() { counter.Runner = counting() }
		}
	}
	began := time.Now()
	rep, err := dataset.Check(ctx, opts)
	if err != nil {
		return &InputError{Err: fmt.Errorf("data check: %w", err)}
	}
	if counter != nil {
		log.Debug().Bool("cached", counter.Cached).Bool("in_trainer_process", counter.Warm).
			Dur("check_took", time.Since(began)).Msg("tokens counted")
	}
	if rep.HasErrors() {
		return &DataCheckError{Report: rep}
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
