// Package plan estimates the peak GPU memory of a LoRA/QLoRA training run before it
// starts, term by term, judges whether it fits a GPU, and says what would make it fit.
//
// The estimate follows what PyTorch actually keeps alive during a step of the trainer
// loractl runs (transformers + PEFT + TRL's SFTTrainer): the base weights, the adapter
// with its gradients and optimizer states, the activations autograd saves for the
// backward pass, the loss buffers, the working memory of the backward pass, and the CUDA
// context and allocator slack on top. docs/memory.md derives every term and records how
// the figures compare with measurements.
//
// The package imports nothing from the CLI or the config loader: callers build a Run.
package plan

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Arch is the shape of a decoder-only transformer, as far as memory is concerned.
type Arch struct {
	// Family is the transformers model_type: llama, qwen2, qwen3, mistral, gemma2,
	// gemma3_text, phi3.
	Family       string `json:"family"`
	Hidden       int    `json:"hidden_size"`
	Intermediate int    `json:"intermediate_size"`
	Layers       int    `json:"num_hidden_layers"`
	Heads        int    `json:"num_attention_heads"`
	KVHeads      int    `json:"num_key_value_heads"`
	HeadDim      int    `json:"head_dim"`
	Vocab        int    `json:"vocab_size"`
	Tied         bool   `json:"tie_word_embeddings"`
	// AttnBias: q/k/v projections carry a bias (Qwen2).
	AttnBias bool `json:"attention_bias"`
	// QKNorm: per-head RMSNorm on queries and keys (Qwen3, Gemma 3).
	QKNorm bool `json:"qk_norm"`
	// Fused: one qkv_proj and one gate_up_proj per layer (Phi-3).
	Fused bool `json:"fused_projections"`
	// NormsPerLayer is 2 for most families, 4 for Gemma 2/3 (pre and post norms).
	NormsPerLayer int `json:"norms_per_layer"`
	// EagerAttention: the family trains with eager attention, which stores the
	// s×s attention probabilities (Gemma 2: SDPA cannot soft-cap).
	EagerAttention bool `json:"eager_attention"`
	// ExtraParams counts weights outside the text decoder that are loaded anyway
	// (a vision tower), kept in 16 bits.
	ExtraParams int64 `json:"extra_params,omitempty"`
	// Source says where the shape came from, for the report.
	Source string `json:"source"`
}

// familyTraits fills the per-family switches that config.json does not spell out.
func (a *Arch) familyTraits() {
	a.NormsPerLayer = 2
	switch a.Family {
	case "qwen3":
		a.QKNorm = true
	case "qwen2":
		a.AttnBias = true
	case "gemma2":
		a.NormsPerLayer = 4
		a.EagerAttention = true
	case "gemma3", "gemma3_text":
		a.NormsPerLayer = 4
		a.QKNorm = true
	case "phi3":
		a.Fused = true
	}
}

// SupportedFamilies are the model_type values the estimator knows the layout of.
var SupportedFamilies = []string{"llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "gemma3_text", "phi3"}

func (a *Arch) validate() error {
	supported := false
	for _, f := range SupportedFamilies {
		supported = supported || f == a.Family
	}
	if !supported {
		return fmt.Errorf("model_type %q is not one the estimator knows (known: %s)", a.Family, strings.Join(SupportedFamilies, ", "))
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"hidden_size", a.Hidden}, {"intermediate_size", a.Intermediate}, {"num_hidden_layers", a.Layers},
		{"num_attention_heads", a.Heads}, {"num_key_value_heads", a.KVHeads}, {"head_dim", a.HeadDim}, {"vocab_size", a.Vocab}} {
		if f.v <= 0 {
			return fmt.Errorf("%s must be positive, got %d", f.name, f.v)
		}
	}
	if a.Heads%a.KVHeads != 0 {
		return fmt.Errorf("num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)", a.Heads, a.KVHeads)
	}
	return nil
}

// hfConfig is the subset of a transformers config.json the estimator reads.
type hfConfig struct {
	ModelType         string    `json:"model_type"`
	HiddenSize        int       `json:"hidden_size"`
	IntermediateSize  int       `json:"intermediate_size"`
	NumHiddenLayers   int       `json:"num_hidden_layers"`
	NumAttentionHeads int       `json:"num_attention_heads"`
	NumKeyValueHeads  *int      `json:"num_key_value_heads"`
	HeadDim           *int      `json:"head_dim"`
	VocabSize         int       `json:"vocab_size"`
	TieWordEmbeddings *bool     `json:"tie_word_embeddings"`
	AttentionBias     *bool     `json:"attention_bias"`
	TextConfig        *hfConfig `json:"text_config"`
	VisionConfig      *struct {
		HiddenSize        int `json:"hidden_size"`
		IntermediateSize  int `json:"intermediate_size"`
		NumHiddenLayers   int `json:"num_hidden_layers"`
		NumAttentionHeads int `json:"num_attention_heads"`
	} `json:"vision_config"`
}

// ArchFromConfigJSON reads a transformers config.json. Multimodal configs (Gemma 3
// 4B and up) are read through their text_config; the vision tower is counted as
// extra 16-bit weights.
func ArchFromConfigJSON(data []byte, source string) (*Arch, error) {
	var c hfConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	top := c
	if c.TextConfig != nil {
		c = *c.TextConfig
		if c.ModelType == "" {
			c.ModelType = top.ModelType + "_text"
		}
		if c.VocabSize == 0 {
			c.VocabSize = top.VocabSize
		}
		if c.TieWordEmbeddings == nil {
			c.TieWordEmbeddings = top.TieWordEmbeddings
		}
	}
	a := &Arch{Family: c.ModelType, Hidden: c.HiddenSize, Intermediate: c.IntermediateSize, Layers: c.NumHiddenLayers,
		Heads: c.NumAttentionHeads, Vocab: c.VocabSize, Source: source}
	a.KVHeads = a.Heads
	if c.NumKeyValueHeads != nil {
		a.KVHeads = *c.NumKeyValueHeads
	}
	if c.HeadDim != nil && *c.HeadDim > 0 {
		a.HeadDim = *c.HeadDim
	} else if a.Heads > 0 {
		a.HeadDim = a.Hidden / a.Heads
	}
	// Released config.json files spell the key out; when one does not, the family's
	// config class default applies (only Gemma ties by default).
	if c.TieWordEmbeddings != nil {
		a.Tied = *c.TieWordEmbeddings
	} else {
		a.Tied = strings.HasPrefix(a.Family, "gemma")
	}
	a.familyTraits()
	if c.AttentionBias != nil {
		a.AttnBias = *c.AttentionBias
	}
	if v := top.VisionConfig; v != nil && c.ModelType != top.ModelType {
		// A ViT block: 4h² attention + 2·h·i MLP.
		a.ExtraParams = int64(v.NumHiddenLayers) * (4*int64(v.HiddenSize)*int64(v.HiddenSize) + 2*int64(v.HiddenSize)*int64(v.IntermediateSize))
	}
	if err := a.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return a, nil
}

// ErrUnknownModel means the model's architecture could not be found anywhere.
var ErrUnknownModel = errors.New("unknown model")

// ResolveArch finds the architecture of nameOrPath: a local directory's config.json,
// then the Hugging Face cache (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub),
// then the built-in table of common families.
func ResolveArch(nameOrPath, revision string) (*Arch, error) {
	if st, err := os.Stat(nameOrPath); err == nil && st.IsDir() {
		p := filepath.Join(nameOrPath, "config.json")
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("model directory %s: %w", nameOrPath, err)
		}
		return ArchFromConfigJSON(data, p)
	}
	if p := findInHFCache(nameOrPath, revision); p != "" {
		data, err := os.ReadFile(p)
		if err == nil {
			return ArchFromConfigJSON(data, p)
		}
	}
	if a := builtin(nameOrPath); a != nil {
		return a, nil
	}
	return nil, fmt.Errorf("%w %q: no local config.json, nothing in the Hugging Face cache, and not in the built-in table "+
		"(Llama 3.x, Qwen 2.5/3, Mistral 7B v0.1/v0.3, Gemma 2/3, Phi-3); set the config's model: to a local directory holding its config.json, "+
		"or download the model first (huggingface-cli download %[2]s config.json) so that it is in the Hugging Face cache",
		ErrUnknownModel, nameOrPath)
}

// hfCacheDirs lists the hub cache directories in the order huggingface_hub uses them.
func hfCacheDirs() []string {
	if d := os.Getenv("HF_HUB_CACHE"); d != "" {
		return []string{d}
	}
	if d := os.Getenv("HF_HOME"); d != "" {
		return []string{filepath.Join(d, "hub")}
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return []string{filepath.Join(d, "huggingface", "hub")}
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return nil
	}
	return []string{filepath.Join(home, ".cache", "huggingface", "hub")}
}

// findInHFCache returns the cached config.json of repo id "org/name" at revision
// (a branch, tag or commit; "" means main), or "" when it is not cached.
func findInHFCache(repo, revision string) string {
	if !strings.Contains(repo, "/") || strings.HasPrefix(repo, "/") || strings.HasPrefix(repo, ".") {
		return ""
	}
	if revision == "" {
		revision = "main"
	}
	for _, dir := range hfCacheDirs() {
		base := filepath.Join(dir, "models--"+strings.ReplaceAll(repo, "/", "--"))
		commit := revision
		if ref, err := os.ReadFile(filepath.Join(base, "refs", revision)); err == nil {
			commit = strings.TrimSpace(string(ref))
		}
		p := filepath.Join(base, "snapshots", commit, "config.json")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}
