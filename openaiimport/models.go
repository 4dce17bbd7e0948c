package openaiimport

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/loractl/loractl/plan"
)

// SizeClass is the range of open-model sizes (billions of parameters) suggested as a
// starting point for an OpenAI base model. It is a suggestion of where to start
// measuring, never a claim that a model of that size is equivalent: a narrow fine-tuned
// task often needs far less than the base's general ability, and `loractl eval` decides.
type SizeClass struct {
	Label string  `json:"label"`
	MinB  float64 `json:"min_b"`
	MaxB  float64 `json:"max_b"`
}

// sizeClasses maps OpenAI base model names (by prefix, longest first) to size classes.
var sizeClasses = []struct {
	prefix string
	class  SizeClass
}{
	{"gpt-4.1-nano", SizeClass{"small (1-4B)", 1, 4.5}},
	{"gpt-4.1-mini", SizeClass{"medium (7-14B)", 7, 15}},
	{"gpt-4.1", SizeClass{"large (14-72B)", 14, 75}},
	{"gpt-4o-mini", SizeClass{"medium (7-14B)", 7, 15}},
	{"gpt-4o", SizeClass{"large (14-72B)", 14, 75}},
	{"gpt-4", SizeClass{"large (14-72B)", 14, 75}},
	{"gpt-3.5-turbo", SizeClass{"small-medium (3-8B)", 3, 8.5}},
	{"davinci-002", SizeClass{"small (1-4B)", 1, 4.5}},
	{"babbage-002", SizeClass{"tiny (0.5-2B)", 0.4, 2}},
	{"o4-mini", SizeClass{"medium (7-14B)", 7, 15}},
}

// defaultClass is used for a base the table does not know (or no job at all).
var defaultClass = SizeClass{"medium (7-14B)", 7, 15}

// ClassFor returns the size class for an OpenAI base model name. A fine-tuned model
// ("ft:gpt-4o-mini-2024-07-18:org:suffix:id") is classed by its base.
func ClassFor(model string) (SizeClass, bool) {
	m := strings.ToLower(strings.TrimSpace(model))
	if rest, ok := strings.CutPrefix(m, "ft:"); ok {
		m, _, _ = strings.Cut(rest, ":")
	}
	for _, c := range sizeClasses {
		if strings.HasPrefix(m, c.prefix) {
			return c.class, true
		}
	}
	return defaultClass, false
}

// Candidates are the open instruct models the import proposes, by hub id. Each resolves
// through plan's architecture lookup (local directory, Hugging Face cache, then the
// built-in table), so its memory estimate needs no download.
var Candidates = []string{
	"Qwen/Qwen2.5-0.5B-Instruct",
	"Qwen/Qwen2.5-1.5B-Instruct",
	"Qwen/Qwen2.5-3B-Instruct",
	"Qwen/Qwen2.5-7B-Instruct",
	"Qwen/Qwen2.5-14B-Instruct",
	"Qwen/Qwen2.5-32B-Instruct",
	"Qwen/Qwen3-0.6B",
	"Qwen/Qwen3-1.7B",
	"Qwen/Qwen3-4B",
	"Qwen/Qwen3-8B",
	"Qwen/Qwen3-14B",
	"meta-llama/Llama-3.2-1B-Instruct",
	"meta-llama/Llama-3.2-3B-Instruct",
	"meta-llama/Llama-3.1-8B-Instruct",
	"meta-llama/Llama-3.3-70B-Instruct",
	"google/gemma-2-2b-it",
	"google/gemma-2-9b-it",
	"google/gemma-2-27b-it",
	"microsoft/Phi-3.5-mini-instruct",
}

// Proposal is one base model with its estimated peak memory for this data.
type Proposal struct {
	Model string `json:"model"`
	// Params is the model's parameter count, in billions.
	Params float64 `json:"params_b"`
	// Quantization is "none" (16-bit base) or "4bit" (QLoRA), whichever fits first.
	Quantization string       `json:"quantization"`
	PeakBytes    uint64       `json:"peak_bytes"`
	Verdict      plan.Verdict `json:"verdict,omitempty"`
	InClass      bool         `json:"in_class"`
}

// RunShape is what the estimate needs besides the model: the training shape the import
// chose.
type RunShape struct {
	MicroBatch, GradAccum, MaxLength int
	Eval                             bool
}

// planRun builds the estimator's input for model with the import's LoRA settings.
func planRun(model string, arch *plan.Arch, s RunShape, quant string) plan.Run {
	return plan.Run{
		Model: model, Arch: arch,
		LoRA:         plan.LoRA{R: LoRARank, Targets: []string{"all-linear"}, Dropout: 0.05},
		Quantization: quant, DoubleQuant: quant == "4bit",
		BatchSize: s.MicroBatch, EvalBatchSize: s.MicroBatch, GradAccum: s.GradAccum,
		MaxLength: s.MaxLength, GradientCheckpointing: true, Precision: "auto",
		LossType: "nll", Optimizer: "adamw_torch", Eval: s.Eval,
	}
}

// LoRARank is the adapter rank the import writes (lora.r; alpha is twice it).
const LoRARank = 16

// Estimate is the peak-memory estimate of training model with the import's settings.
func Estimate(model string, s RunShape, quant string) (*plan.Estimate, *plan.Arch, error) {
	arch, err := plan.ResolveArch(model, "")
	if err != nil {
		return nil, nil, err
	}
	est, err := planRun(model, arch, s, quant).Estimate()
	return est, arch, err
}

// Propose ranks the candidates for a size class and the memory available (0: unknown,
// no GPU and no --gpu-memory). With memory known, models that fit come first (16-bit,
// else 4-bit QLoRA, which needs CUDA), those in the class before the others, larger
// before smaller in the class and nearer to it outside; models that do not fit even in
// 4 bits are left out. Without it, the class's models come first, smallest first.
func Propose(class SizeClass, s RunShape, available uint64) ([]Proposal, error) {
	var out []Proposal
	for _, m := range Candidates {
		est, _, err := Estimate(m, s, "none")
		if err != nil {
			return nil, fmt.Errorf("estimating %s: %w", m, err)
		}
		p := Proposal{Model: m, Params: float64(est.TotalParams) / 1e9, Quantization: "none", PeakBytes: est.PeakBytes}
		p.InClass = p.Params >= class.MinB && p.Params <= class.MaxB
		if available > 0 {
			p.Verdict = plan.Judge(est.PeakBytes, available)
			if p.Verdict != plan.Fits {
				q, _, err := Estimate(m, s, "4bit")
				if err != nil {
					return nil, fmt.Errorf("estimating %s in 4 bits: %w", m, err)
				}
				if v := plan.Judge(q.PeakBytes, available); v == plan.Fits {
					p.Quantization, p.PeakBytes, p.Verdict = "4bit", q.PeakBytes, v
				}
			}
			if p.Verdict == plan.DoesNotFit {
				continue
			}
		}
		out = append(out, p)
	}
	mid := math.Sqrt(class.MinB * class.MaxB)
	sort.SliceStable(out, func(i, k int) bool {
		a, b := out[i], out[k]
		if available > 0 && (a.Verdict == plan.Fits) != (b.Verdict == plan.Fits) {
			return a.Verdict == plan.Fits
		}
		if a.InClass != b.InClass {
			return a.InClass
		}
		if a.InClass {
			if available == 0 {
				return a.Params < b.Params
			}
			if a.Quantization != b.Quantization && math.Abs(a.Params-b.Params) < 0.5 {
				return a.Quantization == "none"
			}
			return a.Params > b.Params
		}
		return math.Abs(math.Log(a.Params/mid)) < math.Abs(math.Log(b.Params/mid))
	})
	return out, nil
}
