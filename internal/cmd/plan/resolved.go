package plan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/plan"
)

// RunFromResolved builds the estimator's input from a resolved config, resolving the
// model's architecture (local config.json, HF cache, built-in table).
func RunFromResolved(r *config.Resolved) (plan.Run, error) {
	arch, err := plan.ResolveArch(r.Model.NameOrPath, r.Model.Revision)
	if err != nil {
		return plan.Run{}, err
	}
	targets := r.LoRA.TargetModuleList()
	if r.LoRA.AllLinear() {
		targets = []string{config.AllLinear}
	}
	t := r.Train
	run := plan.Run{
		Model:                 r.Model.NameOrPath,
		Arch:                  arch,
		LoRA:                  plan.LoRA{R: r.LoRA.R, Targets: targets, Dropout: r.LoRA.Dropout, DoRA: r.LoRA.UseDoRA},
		Quantization:          r.Quantization.Mode,
		DoubleQuant:           r.Quantization.DoubleQuant,
		BatchSize:             t.BatchSize,
		EvalBatchSize:         t.EvalBatchSize,
		GradAccum:             t.GradAccum,
		MaxLength:             t.MaxLength,
		GradientCheckpointing: t.GradientCheckpointing,
		Precision:             t.Precision,
		LossType:              t.LossType,
		Optimizer:             t.Optim,
		Packing:               t.Packing,
		Eval:                  r.Data.Eval != "" || r.Data.EvalSplit > 0,
	}
	applyKernels(&run, t)
	return run, nil
}

// ApplyChanges writes advice or auto-fit changes into a resolved config.
func ApplyChanges(r *config.Resolved, changes []plan.Change) error {
	for _, c := range changes {
		switch v := c.Value.(type) {
		case int:
			switch c.Setting {
			case "train.batch_size":
				r.Train.BatchSize = v
			case "train.grad_accum":
				r.Train.GradAccum = v
			case "train.eval_batch_size":
				r.Train.EvalBatchSize = v
			case "train.max_length":
				r.Train.MaxLength = v
			default:
				return fmt.Errorf("cannot apply %s=%v", c.Setting, v)
			}
		case bool:
			switch c.Setting {
			case "train.gradient_checkpointing":
				r.Train.GradientCheckpointing = v
			case "quantization.double_quant":
				r.Quantization.DoubleQuant = v
			default:
				return fmt.Errorf("cannot apply %s=%v", c.Setting, v)
			}
		case string:
			if c.Setting != "quantization.mode" {
				return fmt.Errorf("cannot apply %s=%v", c.Setting, v)
			}
			r.Quantization.Mode = v
			if v == "4bit" && r.Quantization.QuantType == "" {
				r.Quantization.QuantType = "nf4"
			}
		default:
			return fmt.Errorf("cannot apply %s=%v", c.Setting, c.Value)
		}
	}
	return nil
}

// isResolvedJSON reports whether data is a resolved.json (what `loractl render`
// prints and every run directory holds) rather than a YAML run config.
func isResolvedJSON(data []byte) bool {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return false
	}
	var probe struct {
		Version *int `json:"version"`
	}
	return json.Unmarshal(data, &probe) == nil && probe.Version != nil
}

// readResolvedJSON decodes a resolved.json, normalising target_modules to the
// []string or "all-linear" that config.Resolved holds.
func readResolvedJSON(path string, data []byte) (*config.Resolved, error) {
	var r config.Resolved
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Version != config.ResolvedVersion {
		return nil, fmt.Errorf("%s: resolved.json version %d, this loractl reads version %d", path, r.Version, config.ResolvedVersion)
	}
	if r.Train.EffectiveBatchSize == 0 { // written before the key existed
		r.Train.EffectiveBatchSize = r.Train.BatchSize * max(r.Train.GradAccum, 1)
	}
	switch v := r.LoRA.TargetModules.(type) {
	case string:
		if v != config.AllLinear {
			return nil, fmt.Errorf("%s: lora.target_modules: %q is not a list or %q", path, v, config.AllLinear)
		}
	case []any:
		mods := make([]string, len(v))
		for i, m := range v {
			s, ok := m.(string)
			if !ok {
				return nil, fmt.Errorf("%s: lora.target_modules[%d] is not a string", path, i)
			}
			mods[i] = s
		}
		r.LoRA.TargetModules = mods
	default:
		return nil, fmt.Errorf("%s: lora.target_modules must be a list of names or %q", path, config.AllLinear)
	}
	return &r, nil
}

// readFileIfJSON returns the resolved config at path when it is a resolved.json.
func readFileIfJSON(path string) (*config.Resolved, bool, error) {
	if !strings.HasSuffix(strings.ToLower(path), ".json") {
		return nil, false, nil
	}
	data, err := config.ReadFile(path) // a regular file of at most 1 MiB
	if err != nil {
		return nil, true, err
	}
	if !isResolvedJSON(data) {
		return nil, true, fmt.Errorf("%s: not a resolved.json (no \"version\" key); give the YAML run config instead", path)
	}
	r, err := readResolvedJSON(path, data)
	return r, true, err
}

// ParseBytes reads a memory size ("24GiB", "80GB"); see plan.ParseBytes.
func ParseBytes(s string) (uint64, error) { return plan.ParseBytes(s) }
