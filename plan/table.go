package plan

import "strings"

// builtinArchs are the shapes of common models, from their released config.json files,
// used when a model is named by hub id and is neither local nor cached. Keys are the
// lower-cased repo names without the organisation; "-instruct", "-it" and similar
// suffixes are stripped before the lookup, since fine-tunes share the base's shape.
var builtinArchs = map[string]Arch{
	// Llama 3.x (meta-llama). 3.2 1B/3B tie the head to the embeddings.
	"llama-3.2-1b":      {Family: "llama", Hidden: 2048, Intermediate: 8192, Layers: 16, Heads: 32, KVHeads: 8, HeadDim: 64, Vocab: 128256, Tied: true},
	"llama-3.2-3b":      {Family: "llama", Hidden: 3072, Intermediate: 8192, Layers: 28, Heads: 24, KVHeads: 8, HeadDim: 128, Vocab: 128256, Tied: true},
	"llama-3.1-8b":      {Family: "llama", Hidden: 4096, Intermediate: 14336, Layers: 32, Heads: 32, KVHeads: 8, HeadDim: 128, Vocab: 128256},
	"meta-llama-3.1-8b": {Family: "llama", Hidden: 4096, Intermediate: 14336, Layers: 32, Heads: 32, KVHeads: 8, HeadDim: 128, Vocab: 128256},
	"meta-llama-3-8b":   {Family: "llama", Hidden: 4096, Intermediate: 14336, Layers: 32, Heads: 32, KVHeads: 8, HeadDim: 128, Vocab: 128256},
	"llama-3.1-70b":     {Family: "llama", Hidden: 8192, Intermediate: 28672, Layers: 80, Heads: 64, KVHeads: 8, HeadDim: 128, Vocab: 128256},
	"llama-3.3-70b":     {Family: "llama", Hidden: 8192, Intermediate: 28672, Layers: 80, Heads: 64, KVHeads: 8, HeadDim: 128, Vocab: 128256},
	// Qwen 2.5 (Qwen). Biases on q/k/v; the small ones tie the head.
	"qwen2.5-0.5b": {Family: "qwen2", Hidden: 896, Intermediate: 4864, Layers: 24, Heads: 14, KVHeads: 2, HeadDim: 64, Vocab: 151936, Tied: true},
	"qwen2.5-1.5b": {Family: "qwen2", Hidden: 1536, Intermediate: 8960, Layers: 28, Heads: 12, KVHeads: 2, HeadDim: 128, Vocab: 151936, Tied: true},
	"qwen2.5-3b":   {Family: "qwen2", Hidden: 2048, Intermediate: 11008, Layers: 36, Heads: 16, KVHeads: 2, HeadDim: 128, Vocab: 151936, Tied: true},
	"qwen2.5-7b":   {Family: "qwen2", Hidden: 3584, Intermediate: 18944, Layers: 28, Heads: 28, KVHeads: 4, HeadDim: 128, Vocab: 152064},
	"qwen2.5-14b":  {Family: "qwen2", Hidden: 5120, Intermediate: 13824, Layers: 48, Heads: 40, KVHeads: 8, HeadDim: 128, Vocab: 152064},
	"qwen2.5-32b":  {Family: "qwen2", Hidden: 5120, Intermediate: 27648, Layers: 64, Heads: 40, KVHeads: 8, HeadDim: 128, Vocab: 152064},
	// Qwen 3 (Qwen). Per-head q/k norms, head_dim 128 regardless of width.
	"qwen3-0.6b": {Family: "qwen3", Hidden: 1024, Intermediate: 3072, Layers: 28, Heads: 16, KVHeads: 8, HeadDim: 128, Vocab: 151936, Tied: true},
	"qwen3-1.7b": {Family: "qwen3", Hidden: 2048, Intermediate: 6144, Layers: 28, Heads: 16, KVHeads: 8, HeadDim: 128, Vocab: 151936, Tied: true},
	"qwen3-4b":   {Family: "qwen3", Hidden: 2560, Intermediate: 9728, Layers: 36, Heads: 32, KVHeads: 8, HeadDim: 128, Vocab: 151936, Tied: true},
	"qwen3-8b":   {Family: "qwen3", Hidden: 4096, Intermediate: 12288, Layers: 36, Heads: 32, KVHeads: 8, HeadDim: 128, Vocab: 151936},
	"qwen3-14b":  {Family: "qwen3", Hidden: 5120, Intermediate: 17408, Layers: 40, Heads: 40, KVHeads: 8, HeadDim: 128, Vocab: 151936},
	// Mistral (mistralai). v0.3 extended the vocabulary to 32768.
	"mistral-7b-v0.3": {Family: "mistral", Hidden: 4096, Intermediate: 14336, Layers: 32, Heads: 32, KVHeads: 8, HeadDim: 128, Vocab: 32768},
	"mistral-7b-v0.1": {Family: "mistral", Hidden: 4096, Intermediate: 14336, Layers: 32, Heads: 32, KVHeads: 8, HeadDim: 128, Vocab: 32000},
	// Gemma 2 (google). Head dim 256 on 2B/9B; tied head; 256k vocabulary.
	"gemma-2-2b":  {Family: "gemma2", Hidden: 2304, Intermediate: 9216, Layers: 26, Heads: 8, KVHeads: 4, HeadDim: 256, Vocab: 256000, Tied: true},
	"gemma-2-9b":  {Family: "gemma2", Hidden: 3584, Intermediate: 14336, Layers: 42, Heads: 16, KVHeads: 8, HeadDim: 256, Vocab: 256000, Tied: true},
	"gemma-2-27b": {Family: "gemma2", Hidden: 4608, Intermediate: 36864, Layers: 46, Heads: 32, KVHeads: 16, HeadDim: 128, Vocab: 256000, Tied: true},
	// Gemma 3 (google). 1B is text only; 4B and up carry a ~0.4B SigLIP vision tower.
	"gemma-3-1b":  {Family: "gemma3_text", Hidden: 1152, Intermediate: 6912, Layers: 26, Heads: 4, KVHeads: 1, HeadDim: 256, Vocab: 262144, Tied: true},
	"gemma-3-4b":  {Family: "gemma3_text", Hidden: 2560, Intermediate: 10240, Layers: 34, Heads: 8, KVHeads: 4, HeadDim: 256, Vocab: 262208, Tied: true, ExtraParams: siglip},
	"gemma-3-12b": {Family: "gemma3_text", Hidden: 3840, Intermediate: 15360, Layers: 48, Heads: 16, KVHeads: 8, HeadDim: 256, Vocab: 262208, Tied: true, ExtraParams: siglip},
	"gemma-3-27b": {Family: "gemma3_text", Hidden: 5376, Intermediate: 21504, Layers: 62, Heads: 32, KVHeads: 16, HeadDim: 128, Vocab: 262208, Tied: true, ExtraParams: siglip},
	// Phi-3 (microsoft). Fused qkv_proj and gate_up_proj; no grouped KV on mini.
	"phi-3-mini-4k":   {Family: "phi3", Hidden: 3072, Intermediate: 8192, Layers: 32, Heads: 32, KVHeads: 32, HeadDim: 96, Vocab: 32064},
	"phi-3-mini-128k": {Family: "phi3", Hidden: 3072, Intermediate: 8192, Layers: 32, Heads: 32, KVHeads: 32, HeadDim: 96, Vocab: 32064},
	"phi-3.5-mini":    {Family: "phi3", Hidden: 3072, Intermediate: 8192, Layers: 32, Heads: 32, KVHeads: 32, HeadDim: 96, Vocab: 32064},
	"phi-3-medium-4k": {Family: "phi3", Hidden: 5120, Intermediate: 17920, Layers: 40, Heads: 40, KVHeads: 10, HeadDim: 128, Vocab: 32064},
}

// siglip is the parameter count of the SigLIP-400M vision tower Gemma 3 4B+ load
// (27 blocks, width 1152, MLP 4304), with its projector.
const siglip = 27*(4*1152*1152+2*1152*4304) + 1152*2560

// builtinSuffixes are fine-tune markers stripped before a table lookup.
var builtinSuffixes = []string{"-instruct", "-it", "-chat", "-base", "-pt"}

// builtin looks a hub id ("meta-llama/Llama-3.2-1B-Instruct") up in the table.
func builtin(name string) *Arch {
	key := strings.ToLower(name)
	if i := strings.LastIndex(key, "/"); i >= 0 {
		key = key[i+1:]
	}
	for changed := true; changed; {
		changed = false
		for _, s := range builtinSuffixes {
			if strings.HasSuffix(key, s) {
				key, changed = strings.TrimSuffix(key, s), true
			}
		}
	}
	a, ok := builtinArchs[key]
	if !ok {
		// A marker before the version (Mistral-7B-Instruct-v0.3): drop it there.
		for _, s := range builtinSuffixes {
			if i := strings.Index(key, s+"-"); i > 0 {
				if a, ok = builtinArchs[key[:i]+key[i+len(s):]]; ok {
					key = key[:i] + key[i+len(s):]
					break
				}
			}
		}
	}
	if !ok {
		return nil
	}
	a.familyTraits()
	a.Source = "built-in table (" + key + ")"
	return &a
}

// BuiltinNames lists the table's keys, for messages and tests.
func BuiltinNames() []string {
	out := make([]string, 0, len(builtinArchs))
	for k := range builtinArchs {
		out = append(out, k)
	}
	return out
}
