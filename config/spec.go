// Package config turns one YAML run config into a validated, defaulted Resolved spec:
// the exact JSON the trainer reads (resolved.json). Every error names the key and the
// file:line it came from.
package config

// Spec is the YAML run config as the user writes it. Pointer fields tell "unset" from
// a zero value so defaults apply only where the user said nothing.
type Spec struct {
	Name         string     `json:"name"`
	Model        string     `json:"model"`
	Revision     string     `json:"revision,omitempty"`
	TrustRemote  *bool      `json:"trust_remote_code,omitempty"`
	Python       string     `json:"python,omitempty"`
	GPU          any        `json:"gpu,omitempty"` // one device index, or a list of them (distributed)
	Env          EnvSpec    `json:"env"`
	Data         DataSpec   `json:"data"`
	LoRA         LoRASpec   `json:"lora"`
	Quantization QuantSpec  `json:"quantization"`
	Train        TrainSpec  `json:"train"`
	Driver       DriverSpec `json:"driver"`
	// Eval is the task evaluation after training (docs/evaluation.md).
	Eval EvalSpec `json:"eval"`

	// Distributed spreads the run over several processes (GPUs, nodes).
	Distributed *DistributedSpec `json:"distributed,omitempty"`
}

// EnvSpec is the trainer's environment: values to set and names to pass through from
// the controller's environment (secrets such as HF_TOKEN are only ever passed by name).
type EnvSpec struct {
	Set  map[string]string `json:"set,omitempty"`
	Pass []string          `json:"pass,omitempty"`
}

// DataSpec names the chat JSONL files.
type DataSpec struct {
	Train     string `json:"train"`
	Eval      string `json:"eval,omitempty"`
	EvalSplit *Float `json:"eval_split,omitempty"`
	// SystemPrompt is the system prompt used in production (text, or @FILE); the data
	// check warns when the training data's differs.
	SystemPrompt string `json:"system_prompt,omitempty"`
}

// LoRASpec is the adapter configuration.
type LoRASpec struct {
	R             *int   `json:"r,omitempty"`
	Alpha         *Float `json:"alpha,omitempty"`
	Dropout       *Float `json:"dropout,omitempty"`
	TargetModules any    `json:"target_modules,omitempty"` // []string or "all-linear"
	Bias          string `json:"bias,omitempty"`
	UseRSLoRA     *bool  `json:"use_rslora,omitempty"`
	UseDoRA       *bool  `json:"use_dora,omitempty"`
}

// QuantSpec chooses the base model's precision: none, 4bit (QLoRA, NF4) or 8bit. In
// YAML it may be the bare mode string ("quantization: 4bit").
type QuantSpec struct {
	Mode        string `json:"mode,omitempty"`
	QuantType   string `json:"quant_type,omitempty"`
	DoubleQuant *bool  `json:"double_quant,omitempty"`
}

// TrainSpec holds the trainer's hyperparameters.
type TrainSpec struct {
	Epochs                *Float     `json:"epochs,omitempty"`
	MaxSteps              *int       `json:"max_steps,omitempty"`
	LearningRate          *Float     `json:"learning_rate,omitempty"`
	BatchSize             *BatchSize `json:"batch_size,omitempty"` // a count or "auto"
	EvalBatchSize         *int       `json:"eval_batch_size,omitempty"`
	GradAccum             *int       `json:"grad_accum,omitempty"`
	MaxLength             *int       `json:"max_length,omitempty"`
	Warmup                *Float     `json:"warmup,omitempty"`
	Scheduler             string     `json:"scheduler,omitempty"`
	Seed                  *int       `json:"seed,omitempty"`
	GradientCheckpointing *bool      `json:"gradient_checkpointing,omitempty"`
	Packing               *bool      `json:"packing,omitempty"`
	AssistantOnlyLoss     any        `json:"assistant_only_loss,omitempty"` // "auto", true, false
	LoggingSteps          *int       `json:"logging_steps,omitempty"`
	EvalSteps             *int       `json:"eval_steps,omitempty"`
	SaveSteps             *int       `json:"save_steps,omitempty"`
	SaveTotalLimit        *int       `json:"save_total_limit,omitempty"`
	Precision             string     `json:"precision,omitempty"`
	WeightDecay           *Float     `json:"weight_decay,omitempty"`
	MaxGradNorm           *Float     `json:"max_grad_norm,omitempty"`
	Optim                 string     `json:"optim,omitempty"`
	LossType              string     `json:"loss_type,omitempty"`

	// Throughput (docs/performance.md).
	EffectiveBatchSize *int   `json:"effective_batch_size,omitempty"`
	AttnImplementation string `json:"attn_implementation,omitempty"`
	PaddingFree        any    `json:"padding_free,omitempty"` // "auto", true, false
	Liger              any    `json:"liger,omitempty"`        // "auto", true, false
	// ReportTo names the experiment trackers that also get the metrics.
	ReportTo []string `json:"report_to,omitempty"`
	// Select picks the checkpoint that becomes adapter/: last or best.
	Select string `json:"select,omitempty"`
	// EarlyStoppingPatience stops after this many evaluations without improvement (0: never).
	EarlyStoppingPatience *int `json:"early_stopping_patience,omitempty"`
}

// DriverSpec picks where the trainer runs. Each driver's own options live in a section
// named after it ("slurm:", "docker:"); they are validated by that driver.
type DriverSpec struct {
	Name     string                    `json:"name,omitempty"`
	Sections map[string]map[string]any `json:"-"`
}
