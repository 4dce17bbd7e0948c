package launch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/dataset"
	"github.com/loractl/loractl/plan"
)

// LengthsFromStats turns the data check's statistics into the estimator's lengths.
func LengthsFromStats(st *dataset.Stats) *plan.Lengths {
	if st == nil || len(st.Tokens.Longest) == 0 {
		return nil
	}
	l := &plan.Lengths{Train: st.Tokens.Longest, TrainCount: st.ValidExamples, Approximate: st.Tokens.Estimated}
	if st.Eval != nil {
		l.Eval, l.EvalCount = st.Eval.Tokens.Longest, st.Eval.ValidExamples
	}
	return l
}

// DataLengths counts the token lengths of the run's data the way the data check does:
// with the model's tokenizer and chat template when the model is a local directory and
// python (the trainer's interpreter) is given, cached; else estimated from bytes and
// words (Lengths.Approximate). A tokenizer that fails falls back to the estimate.
func DataLengths(ctx context.Context, r *config.Resolved, python, tokenCacheDir string) (*plan.Lengths, error) {
	opts := dataset.Options{Train: r.Data.Train, Eval: r.Data.Eval, EvalSplit: r.Data.EvalSplit,
		MaxLength: r.Train.MaxLength, Epochs: r.Train.Epochs}
	if opts.Train == "" {
		return nil, fmt.Errorf("no data.train to measure")
	}
	if python != "" && filepath.IsAbs(r.Model.NameOrPath) && hasTokenizer(r.Model.NameOrPath) {
		withTok := opts
		withTok.Tokenizer = &dataset.PythonTokenCounter{Python: python, Dir: r.Model.NameOrPath, CacheDir: tokenCacheDir}
		if rep, err := dataset.Check(ctx, withTok); err == nil {
			return LengthsFromStats(&rep.Stats), nil
		}
	}
	rep, err := dataset.Check(ctx, opts)
	if err != nil {
		return nil, err
	}
	return LengthsFromStats(&rep.Stats), nil
}

// hasTokenizer reports whether a model directory holds a tokenizer to count with
// (a directory with config.json alone would only fail after Python's imports).
func hasTokenizer(dir string) bool {
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "tokenizer.model"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

// applyKernels sets the estimator's view of the trainer's kernel settings. On a GPU
// the trainer's auto turns padding-free on (without packing or eager attention) and
// flash attention and Liger only when installed, which the controller cannot see: the
// estimate counts them off, the larger figure.
func applyKernels(run *plan.Run, t config.TrainConfig) {
	run.FlashAttention = t.AttnImplementation == "flash_attention_2"
	switch v := t.PaddingFree.(type) {
	case bool:
		run.PaddingFree = v
	case string:
		run.PaddingFree = v == "auto" && !t.Packing && t.AttnImplementation != "eager"
	}
	if v, ok := t.Liger.(bool); ok {
		run.Liger = v
	}
}

// ChooseBatch applies train.batch_size auto to run: with available memory, the
// largest micro-batch dividing the effective batch whose estimate fits in 90% of it;
// without, the resolved config's (at most config.FallbackMicroBatch). It returns the
// run and a note saying how the micro-batch was chosen.
func ChooseBatch(run plan.Run, t config.TrainConfig, available uint64, processes int) (plan.Run, string, error) {
	if !t.BatchSizeAuto {
		return run, "", nil
	}
	if available == 0 {
		return run, fmt.Sprintf("auto without a GPU to measure: micro-batch %d (the largest divisor of the effective batch %d up to %d)",
			run.BatchSize, t.EffectiveBatchSize, config.FallbackMicroBatch), nil
	}
	got, e, err := plan.AutoBatch(run, available, t.EffectiveBatchSize, config.MicroBatchCandidates(t.EffectiveBatchSize, processes))
	if err != nil {
		return got, "", err
	}
	return got, fmt.Sprintf("auto: micro-batch %d × grad_accum %d (effective %d), the largest whose estimate (%.2f GiB) fits in %.0f%% of %.2f GiB",
		got.BatchSize, got.GradAccum, t.EffectiveBatchSize, float64(e.PeakBytes)/(1<<30), plan.AutoBatchShare*100, float64(available)/(1<<30)), nil
}
