package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/loractl/loractl/driver"
)

// AllLinear is the target_modules value that adapts every Linear but the output head.
const AllLinear = "all-linear"

// Defaults follow the design note's LoRA recipe: r 16, alpha 32, dropout 0.05 on
// q_proj/v_proj, 3 epochs at 2e-4 with batch 4 and 2048-token sequences.
const (
	DefaultR            = 16
	DefaultAlpha        = 32.0
	DefaultDropout      = 0.05
	DefaultEpochs       = 3.0
	DefaultLearningRate = 2e-4
	DefaultBatchSize    = 4
	DefaultMaxLength    = 2048
	DefaultDriver       = "local"
)

// DefaultTargetModules are the attention projections the design note adapts.
var DefaultTargetModules = []string{"q_proj", "v_proj"}

var (
	nameRE       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	moduleRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)
	envNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	driverNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	// Trackers are the experiment trackers train.report_to may name (the trainer passes
	// them to the HF Trainer; each needs its package, python/requirements-tracking.txt).
	Trackers   = []string{"tensorboard", "mlflow", "wandb"}
	schedulers = []string{"linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt"}
	optimizers = []string{"adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "adafactor", "sgd"}
)

// resolve applies defaults and validates every value, collecting all problems.
func (c *Config) resolve() Errors {
	s := &c.Spec
	var errs Errors
	bad := func(key, format string, a ...any) { errs = append(errs, c.at(key, format, a...)) }

	r := Resolved{Version: ResolvedVersion}

	r.Name = s.Name
	if r.Name == "" {
		// Taken from the file name, cleaned into a valid name rather than refused: the
		// user never wrote a name: key to fix.
		r.Name = nameFromFile(c.Path)
	}
	if !nameRE.MatchString(r.Name) {
		bad("name", "%q must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", r.Name)
	}

	// Model: a local directory (resolved against the config's dir) or a hub id.
	switch {
	case s.Model == "":
		bad("model", "is required: a local model directory or a hub id such as Qwen/Qwen2.5-0.5B-Instruct")
	case looksLikePath(s.Model):
		p := c.abs(s.Model)
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			bad("model", "local model directory %s does not exist", p)
		}
		r.Model.NameOrPath = p
	default:
		if p := c.abs(s.Model); isDir(p) {
			r.Model.NameOrPath = p
		} else {
			r.Model.NameOrPath = s.Model
		}
	}
	r.Model.Revision = s.Revision
	r.Model.TrustRemoteCode = deref(s.TrustRemote, false)

	// Data.
	if s.Data.Train == "" {
		bad("data.train", "is required: a chat JSONL file")
	} else {
		r.Data.Train = c.abs(s.Data.Train)
		if msg := fileProblem(r.Data.Train); msg != "" {
			bad("data.train", "%s", msg)
		}
	}
	if s.Data.Eval != "" {
		r.Data.Eval = c.abs(s.Data.Eval)
		if msg := fileProblem(r.Data.Eval); msg != "" {
			bad("data.eval", "%s", msg)
		}
	}
	if s.Data.EvalSplit != nil {
		r.Data.EvalSplit = float64(*s.Data.EvalSplit)
		switch {
		case r.Data.EvalSplit <= 0 || r.Data.EvalSplit >= 1:
			bad("data.eval_split", "must be between 0 and 1 (exclusive), got %v", r.Data.EvalSplit)
		case s.Data.Eval != "":
			bad("data.eval_split", "give data.eval or data.eval_split, not both")
		}
	}
	if strings.HasPrefix(s.Data.SystemPrompt, "@") {
		b, err := readPromptFile(c.abs(s.Data.SystemPrompt[1:]))
		if err != nil {
			bad("data.system_prompt", "cannot read %s: %v", s.Data.SystemPrompt[1:], err)
		}
		c.SystemPrompt = strings.TrimRight(string(b), "\r\n")
	} else {
		c.SystemPrompt = s.Data.SystemPrompt
	}

	// LoRA.
	l := s.LoRA
	r.LoRA.R = deref(l.R, DefaultR)
	if r.LoRA.R <= 0 || r.LoRA.R > maxRank {
		bad("lora.r", "must be between 1 and %d, got %d", maxRank, r.LoRA.R)
	}
	r.LoRA.Alpha = fl(l.Alpha, DefaultAlpha)
	if r.LoRA.Alpha <= 0 {
		bad("lora.alpha", "must be > 0, got %v", r.LoRA.Alpha)
	}
	r.LoRA.Dropout = fl(l.Dropout, DefaultDropout)
	if r.LoRA.Dropout < 0 || r.LoRA.Dropout >= 1 {
		bad("lora.dropout", "must be in [0, 1), got %v", r.LoRA.Dropout)
	}
	r.LoRA.TargetModules = c.targetModules(l.TargetModules, &errs)
	r.LoRA.Bias = orDefault(l.Bias, "none")
	if !slices.Contains([]string{"none", "all", "lora_only"}, r.LoRA.Bias) {
		bad("lora.bias", "must be none, all or lora_only, got %q", r.LoRA.Bias)
	}
	r.LoRA.UseRSLoRA = deref(l.UseRSLoRA, false)
	r.LoRA.UseDoRA = deref(l.UseDoRA, false)

	// Quantization.
	q := s.Quantization
	r.Quantization.Mode = orDefault(q.Mode, "none")
	if !slices.Contains([]string{"none", "4bit", "8bit"}, r.Quantization.Mode) {
		bad("quantization.mode", "must be none, 4bit or 8bit, got %q", r.Quantization.Mode)
	}
	r.Quantization.QuantType = orDefault(q.QuantType, "nf4")
	if !slices.Contains([]string{"nf4", "fp4"}, r.Quantization.QuantType) {
		bad("quantization.quant_type", "must be nf4 or fp4, got %q", r.Quantization.QuantType)
	}
	r.Quantization.DoubleQuant = deref(q.DoubleQuant, true)

	// gpu: and distributed: first: the effective batch is shared over the processes.
	c.resolveGPU(&errs)
	c.resolveDistributed(&r, &errs)
	c.resolveTrain(&r.Train, &errs)
	c.resolveSelect(&r.Train, &errs)
	r.Eval = c.resolveEval(r.Train, r.Data.Eval != "" || r.Data.EvalSplit > 0, &errs)

	// Driver and environment.
	c.DriverName = orDefault(s.Driver.Name, DefaultDriver)
	if !driverNameRE.MatchString(c.DriverName) {
		bad("driver.name", "%q is not a driver name (lowercase letters, digits, '-')", c.DriverName)
	}
	if sec, ok := s.Driver.Sections[c.DriverName]; ok && sec != nil {
		b, err := json.Marshal(sec)
		if err != nil {
			bad("driver."+c.DriverName, "unsupported value: %v", err)
		}
		c.DriverOptions = b
	}
	c.checkSlurmGPUs(&errs)
	for k := range s.Env.Set {
		if !envNameRE.MatchString(k) {
			bad("env.set."+k, "is not a valid environment variable name")
		}
	}
	for i, k := range s.Env.Pass {
		if !envNameRE.MatchString(k) {
			bad(fmt.Sprintf("env.pass[%d]", i), "%q is not a valid environment variable name", k)
		}
	}
	if s.Python != "" {
		if looksLikePath(s.Python) || strings.Contains(s.Python, "/") {
			s.Python = c.abs(s.Python)
		}
	}
	c.Resolved = r
	return errs
}

func (c *Config) resolveTrain(t *TrainConfig, errs *Errors) {
	s := c.Spec.Train
	bad := func(key, format string, a ...any) { *errs = append(*errs, c.at(key, format, a...)) }
	positive := func(key string, v int) {
		switch {
		case v <= 0:
			bad(key, "must be > 0, got %d", v)
		case v > maxCount:
			bad(key, "must be at most %d, got %d", maxCount, v)
		}
	}
	nonNegative := func(key string, v int) {
		if v < 0 {
			bad(key, "must be >= 0, got %d", v)
		}
	}

	t.Epochs = fl(s.Epochs, DefaultEpochs)
	if t.Epochs <= 0 {
		bad("train.epochs", "must be > 0, got %v", t.Epochs)
	}
	t.MaxSteps = deref(s.MaxSteps, -1)
	if s.MaxSteps != nil && t.MaxSteps <= 0 {
		bad("train.max_steps", "must be > 0 when set, got %d", t.MaxSteps)
	}
	t.LearningRate = fl(s.LearningRate, DefaultLearningRate)
	if t.LearningRate <= 0 {
		bad("train.learning_rate", "must be > 0, got %v", t.LearningRate)
	} else if t.LearningRate >= 1 {
		bad("train.learning_rate", "%v is far too large for LoRA (typical: 1e-5 to 5e-4)", t.LearningRate)
	}
	if s.GradAccum != nil {
		positive("train.grad_accum", *s.GradAccum)
	}
	c.resolveThroughput(t, errs) // batch_size, grad_accum, effective_batch_size, kernels
	t.EvalBatchSize = deref(s.EvalBatchSize, t.BatchSize)
	if s.EvalBatchSize != nil { // the default follows batch_size and is reported there
		positive("train.eval_batch_size", t.EvalBatchSize)
	}
	t.MaxLength = deref(s.MaxLength, DefaultMaxLength)
	positive("train.max_length", t.MaxLength)
	t.Warmup = fl(s.Warmup, 0.03)
	if t.Warmup < 0 {
		bad("train.warmup", "must be >= 0 (a ratio below 1, a step count from 1), got %v", t.Warmup)
	}
	t.Scheduler = orDefault(s.Scheduler, "cosine")
	if !slices.Contains(schedulers, t.Scheduler) {
		bad("train.scheduler", "must be one of %s, got %q", strings.Join(schedulers, ", "), t.Scheduler)
	}
	t.Seed = deref(s.Seed, 42)
	if t.Seed < 0 || t.Seed > math.MaxUint32 {
		bad("train.seed", "must be between 0 and %d, got %d", uint32(math.MaxUint32), t.Seed)
	}
	t.GradientCheckpointing = deref(s.GradientCheckpointing, true)
	t.Packing = deref(s.Packing, false)
	switch v := s.AssistantOnlyLoss.(type) {
	case nil:
		t.AssistantOnlyLoss = "auto"
	case bool:
		t.AssistantOnlyLoss = v
	case string:
		t.AssistantOnlyLoss = v
		if v != "auto" {
			bad("train.assistant_only_loss", "must be auto, true or false, got %q", v)
		}
	default:
		bad("train.assistant_only_loss", "must be auto, true or false")
	}
	t.LoggingSteps = deref(s.LoggingSteps, 10)
	positive("train.logging_steps", t.LoggingSteps)
	t.EvalSteps = deref(s.EvalSteps, 0)
	nonNegative("train.eval_steps", t.EvalSteps)
	t.SaveSteps = deref(s.SaveSteps, 100)
	nonNegative("train.save_steps", t.SaveSteps)
	t.SaveTotalLimit = deref(s.SaveTotalLimit, 3)
	nonNegative("train.save_total_limit", t.SaveTotalLimit)
	t.Precision = orDefault(s.Precision, "auto")
	if !slices.Contains([]string{"auto", "bf16", "fp16", "fp32"}, t.Precision) {
		bad("train.precision", "must be auto, bf16, fp16 or fp32, got %q", t.Precision)
	}
	t.WeightDecay = fl(s.WeightDecay, 0)
	if t.WeightDecay < 0 {
		bad("train.weight_decay", "must be >= 0, got %v", t.WeightDecay)
	}
	t.MaxGradNorm = fl(s.MaxGradNorm, 1.0)
	if t.MaxGradNorm < 0 {
		bad("train.max_grad_norm", "must be >= 0, got %v", t.MaxGradNorm)
	}
	t.Optim = orDefault(s.Optim, "adamw_torch")
	if !slices.Contains(optimizers, t.Optim) {
		bad("train.optim", "must be one of %s, got %q", strings.Join(optimizers, ", "), t.Optim)
	}
	t.LossType = orDefault(s.LossType, "nll")
	if !slices.Contains([]string{"nll", "dft"}, t.LossType) {
		bad("train.loss_type", "must be nll or dft, got %q", t.LossType)
	}
	for i, tracker := range s.ReportTo {
		switch {
		case !slices.Contains(Trackers, tracker):
			bad(fmt.Sprintf("train.report_to[%d]", i), "must be one of %s, got %q", strings.Join(Trackers, ", "), tracker)
		case slices.Contains(s.ReportTo[:i], tracker):
			bad(fmt.Sprintf("train.report_to[%d]", i), "%s is listed twice", tracker)
		default:
			t.ReportTo = append(t.ReportTo, tracker)
		}
	}
}

// targetModules normalises lora.target_modules to a []string or "all-linear".
func (c *Config) targetModules(v any, errs *Errors) any {
	switch v := v.(type) {
	case nil:
		return slices.Clone(DefaultTargetModules)
	case string:
		if v == AllLinear {
			return AllLinear
		}
		// A single module name is a common shorthand.
		if moduleRE.MatchString(v) {
			return []string{v}
		}
		*errs = append(*errs, c.at("lora.target_modules", "must be a list of module names or %q, got %q", AllLinear, v))
	case []any:
		if len(v) == 0 {
			*errs = append(*errs, c.at("lora.target_modules", "must not be empty"))
			return nil
		}
		out := make([]string, 0, len(v))
		for i, m := range v {
			s, ok := m.(string)
			if !ok || !moduleRE.MatchString(s) {
				*errs = append(*errs, c.at(fmt.Sprintf("lora.target_modules[%d]", i), "%v is not a module name", m))
				continue
			}
			out = append(out, s)
		}
		return out
	default:
		*errs = append(*errs, c.at("lora.target_modules", "must be a list of module names or %q", AllLinear))
	}
	return nil
}

// ValidateDriver runs the selected driver's own option validation and reports its
// problems against the config's lines.
func (c *Config) ValidateDriver(validate func(raw json.RawMessage) error) error {
	if validate == nil {
		return nil
	}
	err := validate(c.DriverOptions)
	if err == nil {
		return nil
	}
	// errors.Join'ed problems are reported one by one.
	list := []error{err}
	if multi, ok := err.(interface{ Unwrap() []error }); ok {
		list = multi.Unwrap()
	}
	var errs Errors
	for _, e := range list {
		var opt *driver.OptionError
		if errors.As(e, &opt) {
			errs = append(errs, c.at("driver."+c.DriverName+"."+opt.Key, "%s", opt.Message))
		} else {
			errs = append(errs, c.at("driver."+c.DriverName, "%v", e))
		}
	}
	return errs
}

func (c *Config) abs(p string) string {
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, p[2:])
		}
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(c.Dir, p)
}

func looksLikePath(s string) bool {
	return strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") || strings.HasPrefix(s, "~/") || s == "."
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func fileProblem(p string) string {
	fi, err := os.Stat(p)
	switch {
	case os.IsNotExist(err):
		return fmt.Sprintf("file %s does not exist", p)
	case err != nil:
		return err.Error()
	case fi.IsDir():
		return fmt.Sprintf("%s is a directory, not a JSONL file", p)
	case !fi.Mode().IsRegular():
		// The data check, the run id's hash and the trainer each read it: a pipe would
		// give each of them different data, or hang.
		return fmt.Sprintf("%s is not a regular file (a pipe or device cannot be read more than once)", p)
	}
	return ""
}

// Upper bounds that catch a typo or an overflow long before a GPU would.
const (
	maxRank  = 4096
	maxCount = 1 << 20 // batch sizes, accumulation, max_length, step counts
)

// nameFromFile makes a run name from a config file name: characters a name cannot
// hold become '-', and a name that starts badly gets "run-" in front.
func nameFromFile(path string) string {
	base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	b := []byte(base)
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '.' || ch == '_' || ch == '-') {
			b[i] = '-'
		}
	}
	name := strings.Trim(string(b), "-.")
	for strings.Contains(name, "--") {
		name = strings.ReplaceAll(name, "--", "-")
	}
	if name == "" || !nameRE.MatchString(name) {
		name = "run-" + name
	}
	if len(name) > 64 {
		name = strings.TrimRight(name[:64], "-.")
	}
	return name
}

// maxPromptBytes bounds a system prompt file: a prompt, not a corpus.
const maxPromptBytes = 1 << 20

// readPromptFile reads a system prompt file of at most maxPromptBytes.
func readPromptFile(p string) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPromptBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPromptBytes {
		return nil, fmt.Errorf("larger than %d bytes: a system prompt, not a corpus", maxPromptBytes)
	}
	return b, nil
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
