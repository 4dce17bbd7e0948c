package openaiimport

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/loractl/loractl/gpu"
)

// renderConfig writes the commented loractl.yaml: every value says which OpenAI field
// (or which documented rule) it came from.
func renderConfig(r *Result, opts Options) ([]byte, error) {
	var b bytes.Buffer
	line := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	s := r.Settings
	line("# Imported from OpenAI fine-tuning by `loractl import openai`.")
	line("# Each value says which OpenAI field or rule it came from: docs/migrate-from-openai.md.")
	if j := r.Job; j != nil {
		line("#   job              %s", comment(orDash(j.ID)+" ("+orDash(j.Status)+", method "+j.Method+")"))
		if j.FineTunedModel != "" {
			line("#   fine-tuned model %s (compare against it: docs/migrate-from-openai.md)", comment(j.FineTunedModel))
		}
		line("#   OpenAI base      %s", comment(orDash(j.Model)))
	}
	line("name: %s  # %s", yamlString(s.Name), comment(s.NameFrom))
	line("model: %s  # %s", yamlString(r.Model), comment(r.ModelFrom))
	if r.Estimate != nil {
		fit := ""
		if r.AvailableBytes > 0 {
			fit = fmt.Sprintf(" against %s (%s)", gpu.FormatBytes(r.AvailableBytes), r.AvailableSource)
		}
		line("#   estimated peak GPU memory %s%s", gpu.FormatBytes(r.Estimate.PeakBytes), comment(fit))
	}
	if len(r.Proposals) > 1 {
		line("#   other proposals (estimated peak GPU memory):")
		for _, p := range r.Proposals[1:min(len(r.Proposals), 6)] {
			q := ""
			if p.Quantization == "4bit" {
				q = ", 4-bit QLoRA"
			}
			line("#     %s (%.1fB%s): %s", comment(p.Model), p.Params, q, gpu.FormatBytes(p.PeakBytes))
		}
	}
	line("data:")
	from := "--training-file " + opts.TrainingFile
	if r.Job != nil && r.Job.TrainingFile != "" {
		from += " (job training_file " + r.Job.TrainingFile + ")"
	}
	line("  train: %s  # %s", TrainFile, comment(from))
	if r.Eval != nil {
		line("  eval: %s  # %s", EvalFile, comment(r.ValidationFrom))
	} else {
		line("  # no validation file: without an eval set there is no before/after verdict;")
		line("  # hold some rows out with `loractl data split` or set eval_split: 0.1")
	}
	if r.Quantization == "4bit" {
		line("quantization: 4bit  # the proposed base fits this GPU only as QLoRA (needs CUDA)")
	}
	line("lora:")
	line("  r: %d", LoRARank)
	line("  alpha: %d", 2*LoRARank)
	line("  target_modules: all-linear  # OpenAI does not say how it fine-tunes; LoRA on every linear layer is the closest LoRA gets to a full fine-tune")
	line("train:")
	line("  epochs: %d  # %s", s.Epochs, comment(s.EpochsFrom))
	line("  batch_size: %d  # effective batch %d = batch_size × grad_accum; %s", s.BatchSize, s.Effective, comment(s.BatchFrom))
	line("  grad_accum: %d", s.GradAccum)
	line("  learning_rate: %s  # %s", floatYAML(s.LearningRate), comment(s.LRFrom))
	if s.Seed != nil {
		line("  seed: %d  # %s", *s.Seed, comment(s.SeedFrom))
	}
	line("  max_length: %d  # %s", s.MaxLength, comment(s.MaxLengthFrom))
	return b.Bytes(), nil
}

// yamlString quotes a value for YAML: a double-quoted scalar (Go's escapes are a subset
// of YAML's), so a hostile suffix or path cannot add keys.
func yamlString(s string) string { return strconv.Quote(s) }

// comment makes text safe inside a YAML comment: one line, no control characters.
func comment(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0x2028 || r == 0x2029 || r == 0x85 {
			return ' '
		}
		return r
	}, s)
}

// floatYAML writes a float that YAML 1.1 and 1.2 loaders both read as a float (2.0e-04).
func floatYAML(f float64) string {
	s := strconv.FormatFloat(f, 'e', -1, 64)
	if mant, exp, ok := strings.Cut(s, "e"); ok && !strings.Contains(mant, ".") {
		s = mant + ".0e" + exp
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
