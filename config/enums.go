package config

// Enums lists, per dotted key, the values a key accepts from a fixed set: shell
// completion offers them after `--set KEY=`. TestEnumsAgreeWithValidation keeps the
// lists in step with the validation in resolve.go.
var Enums = map[string][]string{
	"quantization":                 {"none", "4bit", "8bit"},
	"quantization.mode":            {"none", "4bit", "8bit"},
	"quantization.quant_type":      {"nf4", "fp4"},
	"quantization.double_quant":    {"true", "false"},
	"lora.bias":                    {"none", "all", "lora_only"},
	"lora.use_rslora":              {"true", "false"},
	"lora.use_dora":                {"true", "false"},
	"lora.target_modules":          {AllLinear, "[q_proj, v_proj]", "[q_proj, k_proj, v_proj, o_proj]"},
	"train.scheduler":              schedulers,
	"train.optim":                  optimizers,
	"train.precision":              {"auto", "bf16", "fp16", "fp32"},
	"train.loss_type":              {"nll", "dft"},
	"train.assistant_only_loss":    {"auto", "true", "false"},
	"train.gradient_checkpointing": {"true", "false"},
	"train.packing":                {"true", "false"},
	"trust_remote_code":            {"true", "false"},
	"train.report_to":              {"[tensorboard]", "[mlflow]", "[wandb]"},
	"driver.name":                  {"local", "docker", "podman", "slurm"},
}
