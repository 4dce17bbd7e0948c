package openaiimport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
)

// Job is the part of an OpenAI fine-tuning job object (what the fine-tuning jobs API
// returns for `GET /v1/fine_tuning/jobs/{id}`) that carries over to a local run.
type Job struct {
	ID             string `json:"id"`
	Object         string `json:"object"`
	Model          string `json:"model"`
	FineTunedModel string `json:"fine_tuned_model"`
	Status         string `json:"status"`
	TrainingFile   string `json:"training_file"`
	ValidationFile string `json:"validation_file"`
	Seed           *int64 `json:"seed"`
	Suffix         string `json:"suffix"`
	// Method is "supervised" (also when the job predates `method`).
	Method string `json:"-"`
	// Hyper are the hyperparameters, from method.supervised.hyperparameters or the
	// older top-level hyperparameters; "auto" values are nil.
	Hyper Hyperparameters `json:"-"`
	// HyperSource is the JSON path the hyperparameters came from, for comments.
	HyperSource string `json:"-"`
}

// Hyperparameters are OpenAI's supervised hyperparameters; nil means "auto" (or absent).
type Hyperparameters struct {
	NEpochs                *int     `json:"n_epochs"`
	BatchSize              *int     `json:"batch_size"`
	LearningRateMultiplier *float64 `json:"learning_rate_multiplier"`
}

// jobObject is the JSON "object" of a fine-tuning job.
const jobObject = "fine_tuning.job"

// ReadJob reads and checks a fine-tuning job JSON file. Anything else (another API
// object, a list of jobs, a DPO or reinforcement job) is an input error naming the key.
func ReadJob(path string) (*Job, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, inputf("--job %s: %v", path, err)
	}
	return parseJob(path, b)
}

func parseJob(path string, b []byte) (*Job, error) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	o, err := parseObject(b)
	if err != nil {
		return nil, inputf("%s: not a fine-tuning job: want the JSON object the fine-tuning jobs API returns "+
			"(`GET /v1/fine_tuning/jobs/{id}`, \"object\": %q): %v", path, jobObject, err)
	}
	var obj string
	if v, ok := o.get("object"); ok {
		_ = json.Unmarshal(v, &obj)
	}
	switch {
	case obj == "list":
		return nil, inputf("%s: a list of fine-tuning jobs, not one job: save the one to import "+
			"(`GET /v1/fine_tuning/jobs/ftjob-...`) and pass that", path)
	case obj != "" && obj != jobObject:
		return nil, inputf("%s: object: %q is not a fine-tuning job (want %q, the object `GET /v1/fine_tuning/jobs/{id}` returns)", path, obj, jobObject)
	case obj == "" && !(o.has("training_file") && o.has("model")):
		return nil, inputf("%s: not a fine-tuning job: no \"object\": %q and no training_file/model keys "+
			"(save the object `GET /v1/fine_tuning/jobs/{id}` returns)", path, jobObject)
	}
	j := &Job{Method: "supervised"}
	str := func(key string, dst *string) error {
		v, ok := o.get(key)
		if !ok || isNull(v) {
			return nil
		}
		if json.Unmarshal(v, dst) != nil {
			return inputf("%s: %s: want a string, got %s", path, key, kind(v))
		}
		return nil
	}
	for key, dst := range map[string]*string{"id": &j.ID, "object": &j.Object, "model": &j.Model,
		"fine_tuned_model": &j.FineTunedModel, "status": &j.Status, "training_file": &j.TrainingFile,
		"validation_file": &j.ValidationFile, "suffix": &j.Suffix} {
		if err := str(key, dst); err != nil {
			return nil, err
		}
	}
	if v, ok := o.get("seed"); ok && !isNull(v) {
		n, err := intValue(v)
		if err != nil || n < 0 || n > math.MaxUint32 {
			return nil, inputf("%s: seed: want an integer between 0 and %d, got %s", path, uint32(math.MaxUint32), clip(v))
		}
		j.Seed = &n
	}
	hyper, hyperPath := json.RawMessage(nil), ""
	if v, ok := o.get("method"); ok && !isNull(v) {
		mo, err := parseObject(v)
		if err != nil {
			return nil, inputf("%s: method: want an object, got %s", path, kind(v))
		}
		if t, ok := mo.get("type"); ok {
			_ = json.Unmarshal(t, &j.Method)
		}
		switch j.Method {
		case "supervised":
		case "dpo":
			return nil, inputf("%s: method.type: \"dpo\": this is a preference (DPO) fine-tuning job; loractl trains "+
				"supervised (SFT) LoRA adapters and cannot train DPO yet (see docs/migrate-from-openai.md)", path)
		case "reinforcement":
			return nil, inputf("%s: method.type: \"reinforcement\": reinforcement fine-tuning (graders) does not carry over "+
				"to loractl, which trains supervised (SFT) LoRA adapters", path)
		default:
			return nil, inputf("%s: method.type: %q is not a fine-tuning method loractl knows (supervised, dpo, reinforcement)", path, j.Method)
		}
		if sv, ok := mo.get("supervised"); ok && !isNull(sv) {
			if so, err := parseObject(sv); err == nil {
				hyper, _ = so.get("hyperparameters")
				hyperPath = "method.supervised.hyperparameters"
			}
		}
	}
	if hyper == nil {
		if v, ok := o.get("hyperparameters"); ok {
			hyper, hyperPath = v, "hyperparameters"
		}
	}
	j.HyperSource = hyperPath
	if hyper != nil && !isNull(hyper) {
		h, err := parseHyper(hyper)
		if err != nil {
			return nil, inputf("%s: %s%v", path, hyperPath, err)
		}
		j.Hyper = h
	}
	return j, nil
}

// parseHyper reads n_epochs (1-50), batch_size (1-256) and learning_rate_multiplier (> 0),
// each a number or "auto" — the ranges OpenAI accepts.
func parseHyper(v json.RawMessage) (Hyperparameters, error) {
	var h Hyperparameters
	o, err := parseObject(v)
	if err != nil {
		return h, fmt.Errorf(": want an object, got %s", kind(v))
	}
	intIn := func(key string, lo, hi int64) (*int, error) {
		raw, ok := o.get(key)
		if !ok || isNull(raw) || isAuto(raw) {
			return nil, nil
		}
		n, err := intValue(raw)
		if err != nil || n < lo || n > hi {
			return nil, fmt.Errorf(".%s: want \"auto\" or an integer from %d to %d, got %s", key, lo, hi, clip(raw))
		}
		i := int(n)
		return &i, nil
	}
	if h.NEpochs, err = intIn("n_epochs", 1, 50); err != nil {
		return h, err
	}
	if h.BatchSize, err = intIn("batch_size", 1, 256); err != nil {
		return h, err
	}
	if raw, ok := o.get("learning_rate_multiplier"); ok && !isNull(raw) && !isAuto(raw) {
		var f float64
		if json.Unmarshal(raw, &f) != nil || !(f > 0) || math.IsInf(f, 0) || f > 100 {
			return h, fmt.Errorf(".learning_rate_multiplier: want \"auto\" or a number in (0, 100], got %s", clip(raw))
		}
		h.LearningRateMultiplier = &f
	}
	return h, nil
}

func isAuto(v json.RawMessage) bool {
	var s string
	return json.Unmarshal(v, &s) == nil && s == "auto"
}

// intValue reads an integral JSON number (3 or 3.0).
func intValue(v json.RawMessage) (int64, error) {
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		return 0, err
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, fmt.Errorf("not an integer")
	}
	return int64(f), nil
}

// clip shows a user value in a message, shortened.
func clip(v json.RawMessage) string {
	r := []rune(strings.TrimSpace(string(v)))
	if len(r) > 40 {
		return string(r[:40]) + "…"
	}
	return string(r)
}
