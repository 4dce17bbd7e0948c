package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
)

// Throughput settings (docs/performance.md): the micro-batch chosen to fill the GPU,
// the effective batch that keeps the optimisation the same whatever it picks, and
// the kernels and batch layout the trainer uses.

// BatchAuto is train.batch_size's value that lets the pre-flight pick the micro-batch.
const BatchAuto = "auto"

// FallbackMicroBatch caps the micro-batch `auto` uses where no GPU is measured (a CPU
// run, a driver that runs the trainer elsewhere).
const FallbackMicroBatch = 8

// Attention implementations train.attn_implementation accepts.
var attnImplementations = []string{"auto", "sdpa", "flash_attention_2", "eager"}

// BatchSize is train.batch_size as written: a positive count or "auto". It keeps
// the text so that resolve can name the key in its error.
type BatchSize string

// UnmarshalJSON accepts a number or a string; resolve validates it.
func (b *BatchSize) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		*b = BatchSize(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(data, &n); err != nil {
		return &json.UnmarshalTypeError{Value: string(data), Type: reflect.TypeOf(0)}
	}
	*b = BatchSize(n.String())
	return nil
}

// GradAccumFor applies the effective-batch rule: grad_accum = effective ÷
// (micro-batch × processes), which must divide exactly.
func GradAccumFor(effective, micro, processes int) (int, error) {
	per := micro * processes
	if micro <= 0 || processes <= 0 || effective <= 0 {
		return 0, fmt.Errorf("effective batch %d, micro-batch %d and %d process(es) must all be positive", effective, micro, processes)
	}
	if effective%per != 0 {
		return 0, fmt.Errorf("effective batch %d is not a multiple of micro-batch %d × %d process(es)", effective, micro, processes)
	}
	return effective / per, nil
}

// MicroBatchCandidates are the micro-batches that keep an effective batch exactly
// (divisors of effective ÷ processes), largest first.
func MicroBatchCandidates(effective, processes int) []int {
	var out []int
	if processes <= 0 || effective%processes != 0 {
		return nil
	}
	per := effective / processes
	for b := per; b >= 1; b-- {
		if per%b == 0 {
			out = append(out, b)
		}
	}
	return out
}

// FallbackBatch is the micro-batch `auto` takes without a GPU to measure: the
// largest candidate of at most FallbackMicroBatch.
func FallbackBatch(effective, processes int) int {
	for _, b := range MicroBatchCandidates(effective, processes) {
		if b <= FallbackMicroBatch {
			return b
		}
	}
	return 1
}

// resolveThroughput fills the batch and kernel settings: batch_size (or auto),
// effective_batch_size, grad_accum, attn_implementation, padding_free and liger.
func (c *Config) resolveThroughput(t *TrainConfig, errs *Errors) {
	s := c.Spec.Train
	bad := func(key, format string, a ...any) { *errs = append(*errs, c.at(key, format, a...)) }
	// grad_accum as given (validated by resolveTrain), 0 when unset.
	ga := 0
	if s.GradAccum != nil {
		ga = *s.GradAccum
	}
	switch {
	case s.BatchSize == nil:
		t.BatchSize = DefaultBatchSize
	case *s.BatchSize == BatchAuto:
		t.BatchSizeAuto = true
	default:
		n, err := strconv.Atoi(string(*s.BatchSize))
		switch {
		case err != nil:
			bad("train.batch_size", "must be a positive integer or auto, got %q", string(*s.BatchSize))
			n = DefaultBatchSize
		case n <= 0:
			bad("train.batch_size", "must be > 0 or auto, got %d", n)
			n = DefaultBatchSize
		case n > maxCount:
			bad("train.batch_size", "must be at most %d, got %d", maxCount, n)
			n = DefaultBatchSize
		}
		t.BatchSize = n
	}
	if s.EffectiveBatchSize != nil {
		t.EffectiveBatchSizeSet = true
		t.EffectiveBatchSize = *s.EffectiveBatchSize
		if t.EffectiveBatchSize <= 0 || t.EffectiveBatchSize > maxCount {
			bad("train.effective_batch_size", "must be > 0 and at most %d, got %d", maxCount, t.EffectiveBatchSize)
			t.EffectiveBatchSize = 0
		}
	}
	// The effective batch: as set, else micro-batch × grad_accum × processes (with
	// auto, the default micro-batch's: the optimisation must not depend on the GPU).
	if t.EffectiveBatchSize == 0 {
		micro := t.BatchSize
		if t.BatchSizeAuto {
			micro = DefaultBatchSize
		}
		t.EffectiveBatchSize = micro * max(ga, 1) * c.Processes()
	}
	switch {
	case t.BatchSizeAuto:
		if ga > 0 && s.EffectiveBatchSize != nil {
			bad("train.grad_accum", "is derived from train.effective_batch_size when train.batch_size is auto; leave it out")
		}
		t.BatchSize = FallbackBatch(t.EffectiveBatchSize, c.Processes())
		t.GradAccum, _ = GradAccumFor(t.EffectiveBatchSize, t.BatchSize, c.Processes())
	case s.EffectiveBatchSize != nil:
		derived, err := GradAccumFor(t.EffectiveBatchSize, t.BatchSize, c.Processes())
		if err != nil {
			bad("train.effective_batch_size", "%v: choose a multiple of train.batch_size", err)
			derived = max(ga, 1)
		} else if ga > 0 && ga != derived {
			bad("train.grad_accum", "is %d but train.effective_batch_size %d ÷ train.batch_size %d gives %d; set one of them", ga, t.EffectiveBatchSize, t.BatchSize, derived)
		}
		t.GradAccum = derived
	default:
		t.GradAccum = max(ga, 1)
	}

	t.AttnImplementation = orDefault(s.AttnImplementation, "auto")
	if !slices.Contains(attnImplementations, t.AttnImplementation) {
		bad("train.attn_implementation", "must be auto, sdpa, flash_attention_2 or eager, got %q", t.AttnImplementation)
	}
	t.PaddingFree = autoBool(s.PaddingFree, "train.padding_free", bad)
	t.Liger = autoBool(s.Liger, "train.liger", bad)
	if t.PaddingFree == true && t.AttnImplementation == "eager" {
		bad("train.padding_free", "needs attention that reads position_ids (sdpa or flash_attention_2), not eager")
	}
}

// autoBool reads a key that is auto, true or false.
func autoBool(v any, key string, bad func(key, format string, a ...any)) any {
	switch v := v.(type) {
	case nil:
		return "auto"
	case bool:
		return v
	case string:
		if v != "auto" {
			bad(key, "must be auto, true or false, got %q", v)
		}
		return v
	}
	bad(key, "must be auto, true or false")
	return "auto"
}
