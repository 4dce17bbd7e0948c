package config

// ResolvedVersion is the version of the resolved.json schema the trainer reads.
const ResolvedVersion = 1

// Resolved is the trainer's complete input: every default applied, every path absolute.
// It marshals to resolved.json (docs/trainer-contract.md) and is what run ids hash.
type Resolved struct {
	Version      int         `json:"version"`
	Name         string      `json:"name"`
	Model        ModelConfig `json:"model"`
	Data         DataConfig  `json:"data"`
	LoRA         LoRAConfig  `json:"lora"`
	Quantization QuantConfig `json:"quantization"`
	Train        TrainConfig `json:"train"`
	// Eval is the task evaluation: generations, metrics and the adoption verdict.
	Eval EvalConfig `json:"eval"`
	// Distributed is absent for a single-process run, so existing configs keep their
	// resolved.json and run ids.
	Distributed *DistributedConfig `json:"distributed,omitempty"`
}

// ModelConfig names the base model.
type ModelConfig struct {
	NameOrPath      string `json:"name_or_path"`
	Revision        string `json:"revision"`
	TrustRemoteCode bool   `json:"trust_remote_code"`
}

// DataConfig names the data files (absolute paths).
type DataConfig struct {
	Train     string  `json:"train"`
	Eval      string  `json:"eval"`
	EvalSplit float64 `json:"eval_split"`
}

// LoRAConfig is the adapter configuration the trainer turns into a peft.LoraConfig.
type LoRAConfig struct {
	R             int     `json:"r"`
	Alpha         float64 `json:"alpha"`
	Dropout       float64 `json:"dropout"`
	TargetModules any     `json:"target_modules"` // []string or "all-linear"
	Bias          string  `json:"bias"`
	UseRSLoRA     bool    `json:"use_rslora"`
	UseDoRA       bool    `json:"use_dora"`
}

// QuantConfig is the base model's quantization.
type QuantConfig struct {
	Mode        string `json:"mode"`
	QuantType   string `json:"quant_type"`
	DoubleQuant bool   `json:"double_quant"`
}

// TrainConfig is the trainer's hyperparameters.
type TrainConfig struct {
	Epochs                float64 `json:"epochs"`
	MaxSteps              int     `json:"max_steps"`
	LearningRate          float64 `json:"learning_rate"`
	BatchSize             int     `json:"batch_size"`
	EvalBatchSize         int     `json:"eval_batch_size"`
	GradAccum             int     `json:"grad_accum"`
	MaxLength             int     `json:"max_length"`
	Warmup                float64 `json:"warmup"`
	Scheduler             string  `json:"scheduler"`
	Seed                  int     `json:"seed"`
	GradientCheckpointing bool    `json:"gradient_checkpointing"`
	Packing               bool    `json:"packing"`
	AssistantOnlyLoss     any     `json:"assistant_only_loss"` // "auto", true, false
	LoggingSteps          int     `json:"logging_steps"`
	EvalSteps             int     `json:"eval_steps"`
	SaveSteps             int     `json:"save_steps"`
	SaveTotalLimit        int     `json:"save_total_limit"`
	Precision             string  `json:"precision"`
	WeightDecay           float64 `json:"weight_decay"`
	MaxGradNorm           float64 `json:"max_grad_norm"`
	Optim                 string  `json:"optim"`
	LossType              string  `json:"loss_type"`
	// ReportTo: tensorboard (events under RUN_DIR/tensorboard), mlflow, wandb. Left out
	// of resolved.json when empty, so configs that track nothing keep their run ids.
	ReportTo []string `json:"report_to,omitempty"`
	// Select is which checkpoint becomes adapter/: "last" or "best".
	Select string `json:"select"`
	// EarlyStoppingPatience is how many evaluations without improvement stop training (0: never).
	EarlyStoppingPatience int `json:"early_stopping_patience"`

	// Throughput (docs/performance.md). With BatchSizeAuto the pre-flight may
	// replace BatchSize and GradAccum (their product stays EffectiveBatchSize);
	// here they hold the choice made without a GPU to measure.
	BatchSizeAuto      bool `json:"batch_size_auto"`
	EffectiveBatchSize int  `json:"effective_batch_size"`
	// EffectiveBatchSizeSet: the config set it, so a launch that learns the process count
	// only then (distributed.nproc_per_node auto) re-derives grad_accum from it.
	EffectiveBatchSizeSet bool   `json:"effective_batch_size_set,omitempty"`
	AttnImplementation    string `json:"attn_implementation"`
	PaddingFree           any    `json:"padding_free"` // "auto", true, false
	Liger                 any    `json:"liger"`        // "auto", true, false
}

// TargetModuleList returns the adapted module names, or nil for "all-linear".
func (l LoRAConfig) TargetModuleList() []string {
	if mods, ok := l.TargetModules.([]string); ok {
		return mods
	}
	return nil
}

// AllLinear reports whether every Linear layer (but the head) is adapted.
func (l LoRAConfig) AllLinear() bool {
	s, ok := l.TargetModules.(string)
	return ok && s == AllLinear
}
