package config

import (
	"fmt"
	"slices"
	"strings"
)

// FieldError is one problem with one key, located in the file (or on the command line,
// for --set overrides).
type FieldError struct {
	File string // config path, or "--set" for an override
	Line int    // 0 when unknown
	Col  int
	Key  string // dotted key, e.g. "lora.r"
	Msg  string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one config; Load reports them all at once so a
// user fixes a file in one pass.
type Errors []*FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	if len(lines) == 1 {
		return lines[0]
	}
	return fmt.Sprintf("%d problems in config:\n  %s", len(lines), strings.Join(lines, "\n  "))
}

// has reports whether one of the errors is about key.
func (es Errors) has(key string) bool {
	for _, e := range es {
		if e.Key == key {
			return true
		}
	}
	return false
}

// DidYouMean returns the closest candidate to key, or "" when none is close; sweeps
// use it for their own keys so suggestions read the same everywhere.
func DidYouMean(key string, candidates []string) string { return didYouMean(key, candidates) }

// aliases are the names users bring from Hugging Face's TrainingArguments, PEFT's
// LoraConfig and common shorthand, with the loractl key each means. Spelling distance
// cannot find these ("lr" is nothing like "learning_rate").
var aliases = map[string]string{
	"lr":                          "learning_rate",
	"learning-rate":               "learning_rate",
	"bs":                          "batch_size",
	"batch":                       "batch_size",
	"per_device_train_batch_size": "batch_size",
	"per_device_eval_batch_size":  "eval_batch_size",
	"gradient_accumulation_steps": "grad_accum",
	"gradient_accumulation":       "grad_accum",
	"num_train_epochs":            "epochs",
	"num_epochs":                  "epochs",
	"max_seq_length":              "max_length",
	"max_seq_len":                 "max_length",
	"seq_len":                     "max_length",
	"warmup_ratio":                "warmup",
	"warmup_steps":                "warmup",
	"lr_scheduler_type":           "scheduler",
	"lr_scheduler":                "scheduler",
	"rank":                        "r",
	"lora_r":                      "r",
	"lora_alpha":                  "alpha",
	"lora_dropout":                "dropout",
	"target":                      "target_modules",
	"targets":                     "target_modules",
	"bf16":                        "precision",
	"fp16":                        "precision",
	"save_total":                  "save_total_limit",
}

// didYouMean returns the closest candidate to key, or "" when none is close.
func didYouMean(key string, candidates []string) string {
	if a, ok := aliases[strings.ToLower(key)]; ok && slices.Contains(candidates, a) {
		return a
	}
	best, bestDist := "", 3
	for _, c := range candidates {
		d := levenshtein(key, c)
		if strings.HasPrefix(c, key) || strings.HasPrefix(key, c) {
			d = min(d, 2)
		}
		if d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
