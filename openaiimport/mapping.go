package openaiimport

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// The learning-rate mapping. OpenAI does not publish the base learning rate its
// learning_rate_multiplier scales, so no local value reproduces it. loractl anchors the
// multiplier on its own LoRA default instead: completed chat fine-tuning jobs usually
// resolve "auto" to a multiplier near 2, so 1e-4 per unit puts a job that kept OpenAI's
// default on loractl's tested default (2e-4, the common LoRA rate), and keeps the ratio a
// user chose (a job run at half the default trains at half the rate here). The result is
// clamped to the range where LoRA fine-tunes usually converge without diverging.
const (
	// LRPerMultiplier is the learning rate per unit of learning_rate_multiplier.
	LRPerMultiplier = 1e-4
	// DefaultLearningRate is loractl's default, used for "auto".
	DefaultLearningRate = 2e-4
	// MinLearningRate and MaxLearningRate clamp the mapped rate.
	MinLearningRate = 1e-5
	MaxLearningRate = 1e-3
	// DefaultMicroBatch is loractl's default per-step batch; an effective batch is split
	// into micro-batches of at most this many examples and gradient accumulation.
	DefaultMicroBatch = 4
)

// AutoEpochs is OpenAI's published rule for n_epochs "auto" (the fine-tuning data
// preparation cookbook): 3 epochs, raised so that small sets see at least 100 examples
// in all (at most 25 epochs), lowered so that large sets see at most 25,000 (at least 1).
func AutoEpochs(examples int) int {
	const target, minExamples, maxExamples, minEpochs, maxEpochs = 3, 100, 25000, 1, 25
	switch {
	case examples <= 0:
		return target
	case examples*target < minExamples:
		return min(maxEpochs, minExamples/examples)
	case examples*target > maxExamples:
		return max(minEpochs, maxExamples/examples)
	}
	return target
}

// AutoBatchSize is the effective batch for batch_size "auto": OpenAI's published rule
// for its original fine-tuning API (about 0.2% of the training examples, at most 256),
// but never under loractl's default batch of 4, below which a LoRA run at loractl's
// learning rate gets noisy.
func AutoBatchSize(examples int) int {
	n := int(math.Round(0.002 * float64(examples)))
	return max(DefaultMicroBatch, min(256, n))
}

// MappedLearningRate is the learning rate for a learning_rate_multiplier (nil: "auto").
func MappedLearningRate(multiplier *float64) float64 {
	if multiplier == nil {
		return DefaultLearningRate
	}
	lr := math.Max(MinLearningRate, math.Min(MaxLearningRate, LRPerMultiplier**multiplier))
	// Three significant digits: 1.5e-4, not 1.5000000000000001e-4, in the config.
	r, _ := strconv.ParseFloat(strconv.FormatFloat(lr, 'g', 3, 64), 64)
	return r
}

// SplitBatch splits an effective batch into a micro-batch of at most DefaultMicroBatch
// examples and the gradient accumulation that makes up the rest exactly
// (batch_size × grad_accum = effective).
func SplitBatch(effective int) (micro, accum int) {
	for m := min(DefaultMicroBatch, effective); m >= 1; m-- {
		if effective%m == 0 {
			return m, effective / m
		}
	}
	return 1, effective
}

// Train is what the import writes into the config's train: section, each value with the
// OpenAI field (or rule) it came from.
type Train struct {
	// Epochs is train.epochs.
	Epochs     int    `json:"epochs"`
	EpochsFrom string `json:"epochs_from"`
	// Effective is OpenAI's batch size: BatchSize × GradAccum.
	Effective int    `json:"effective_batch"`
	BatchSize int    `json:"batch_size"`
	GradAccum int    `json:"grad_accum"`
	BatchFrom string `json:"batch_from"`
	// LearningRate is train.learning_rate.
	LearningRate float64 `json:"learning_rate"`
	LRFrom       string  `json:"learning_rate_from"`
	// Seed is train.seed; nil keeps loractl's default.
	Seed     *int64 `json:"seed"`
	SeedFrom string `json:"seed_from"`
	// MaxLength is train.max_length, sized from the data.
	MaxLength     int    `json:"max_length"`
	MaxLengthFrom string `json:"max_length_from"`
	// Name is the run name.
	Name     string `json:"name"`
	NameFrom string `json:"name_from"`
}

// mapJob turns the job's hyperparameters (nil job: all "auto") into train settings for a
// training set of n examples.
func mapJob(j *Job, n int) Train {
	if j == nil {
		j = &Job{}
	}
	src := j.HyperSource
	if src == "" {
		src = "hyperparameters"
	}
	var t Train
	h := j.Hyper
	if h.NEpochs != nil {
		t.Epochs, t.EpochsFrom = *h.NEpochs, fmt.Sprintf("job %s.n_epochs = %d", src, *h.NEpochs)
	} else {
		t.Epochs = AutoEpochs(n)
		t.EpochsFrom = fmt.Sprintf("n_epochs auto: OpenAI's rule for %d examples (3, so that 100-25,000 examples are seen)", n)
	}
	if h.BatchSize != nil {
		t.Effective, t.BatchFrom = *h.BatchSize, fmt.Sprintf("job %s.batch_size = %d", src, *h.BatchSize)
	} else {
		t.Effective = AutoBatchSize(n)
		t.BatchFrom = fmt.Sprintf("batch_size auto: 0.2%% of %d examples, 4 to 256", n)
	}
	t.BatchSize, t.GradAccum = SplitBatch(t.Effective)
	t.LearningRate = MappedLearningRate(h.LearningRateMultiplier)
	if m := h.LearningRateMultiplier; m != nil {
		t.LRFrom = fmt.Sprintf("job %s.learning_rate_multiplier = %g, × %g", src, *m, LRPerMultiplier)
		if raw := LRPerMultiplier * *m; raw < MinLearningRate || raw > MaxLearningRate {
			t.LRFrom += fmt.Sprintf(" = %.3g, clamped to [%g, %g]", raw, MinLearningRate, MaxLearningRate)
		}
	} else {
		t.LRFrom = "learning_rate_multiplier auto: loractl's default LoRA rate"
	}
	if j.Seed != nil {
		t.Seed, t.SeedFrom = j.Seed, "job seed"
	}
	switch {
	case j.Suffix != "":
		t.Name, t.NameFrom = RunName(j.Suffix), "job suffix"
	case j.ID != "":
		t.Name, t.NameFrom = RunName(j.ID), "job id"
	default:
		t.Name, t.NameFrom = "openai-import", "no job suffix"
	}
	return t
}

var badNameChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// RunName makes a valid loractl run name (1-64 letters, digits, '.', '_', '-', starting
// with a letter or digit) from an OpenAI suffix or job id.
func RunName(s string) string {
	s = badNameChars.ReplaceAllString(s, "-")
	s = strings.TrimLeft(s, "._-")
	if len(s) > 64 {
		s = s[:64]
	}
	if s == "" {
		return "openai-import"
	}
	return s
}

// MaxLengthFor is the train.max_length that keeps every example whole: the longest
// example's token count with a 10% margin (token counts without the model's tokenizer are
// estimates), rounded up to a multiple of 256, at least 512. Past MaxLengthCap the cap is
// used and the data check reports what gets truncated.
func MaxLengthFor(longest int) int {
	n := int(math.Ceil(float64(longest)*1.1/256)) * 256
	return max(512, min(MaxLengthCap, n))
}

// MaxLengthCap is the longest sequence the import proposes (OpenAI trains up to 64k
// tokens per example on some bases; few local GPUs fit that).
const MaxLengthCap = 32768
