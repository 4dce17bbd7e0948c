package launch

import (
	"fmt"

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
