package plan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/plan"
)

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
