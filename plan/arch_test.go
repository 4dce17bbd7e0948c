package plan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustBuiltin(t *testing.T, name string) *Arch {
	t.Helper()
	a := builtin(name)
	if a == nil {
		t.Fatalf("%s not in the built-in table", name)
	}
	return a
}

// Published parameter counts (the models' safetensors totals on the hub).
func TestParamsMatchPublishedTotals(t *testing.T) {
	tests := []struct {
		model string
		want  int64
	}{
		{"meta-llama/Llama-3.2-1B", 1_235_814_400},
		{"meta-llama/Llama-3.2-3B-Instruct", 3_212_749_824},
		{"meta-llama/Llama-3.1-8B", 8_030_261_248},
		{"Qwen/Qwen2.5-0.5B-Instruct", 494_032_768},
		{"Qwen/Qwen2.5-1.5B", 1_543_714_304},
		{"Qwen/Qwen2.5-7B-Instruct", 7_615_616_512},
		{"Qwen/Qwen3-0.6B", 596_049_920},
		{"mistralai/Mistral-7B-v0.3", 7_248_023_552},
		{"google/gemma-2-2b-it", 2_614_341_888},
		{"microsoft/Phi-3-mini-4k-instruct", 3_821_079_552},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			linear, other := mustBuiltin(t, tt.model).Params()
			if got := linear + other; got != tt.want {
				t.Errorf("params = %d, want %d (off by %d)", got, tt.want, got-tt.want)
			}
		})
	}
}

func TestTrainableParams(t *testing.T) {
	tests := []struct {
		name    string
		model   string
		r       int
		targets []string
		want    int64
	}{
		// 28 × 32 × ((3072+3072) + (3072+1024))
		{"llama 3B r32 q,v", "Llama-3.2-3B", 32, []string{"q_proj", "v_proj"}, 9_175_040},
		// 16 × 16 × ((2048+2048) + (2048+512))
		{"llama 1B r16 q,v", "Llama-3.2-1B", 16, []string{"q_proj", "v_proj"}, 1_703_936},
		// 32 × 8 × (2·(4096+4096) + 2·(4096+1024) + 2·(4096+14336) + (14336+4096))
		{"llama 8B r8 all-linear", "Llama-3.1-8B", 8, []string{"all-linear"}, 20_971_520},
		// 32 × 16 × ((3072+9216) + (3072+3072) + (3072+16384) + (8192+3072)), fused projections
		{"phi-3 r16 all-linear", "Phi-3-mini-4k-instruct", 16, []string{"all-linear"}, 25_165_824},
		{"duplicates count once", "Llama-3.2-3B", 32, []string{"q_proj", "v_proj", "q_proj"}, 9_175_040},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Run{Arch: mustBuiltin(t, tt.model), LoRA: LoRA{R: tt.r, Targets: tt.targets}}
			got, err := r.TrainableParams()
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("trainable = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestUnknownTargetNamesTheLayout(t *testing.T) {
	r := Run{Arch: mustBuiltin(t, "Phi-3-mini-4k-instruct"), LoRA: LoRA{R: 8, Targets: []string{"q_proj", "v_proj"}}}
	_, err := r.TrainableParams()
	if err == nil || !strings.Contains(err.Error(), "q_proj, v_proj not in a phi3 layer") || !strings.Contains(err.Error(), "qkv_proj") {
		t.Fatalf("err = %v", err)
	}
}

const llama1BConfig = `{
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
  "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
  "vocab_size": 128256, "tie_word_embeddings": true, "torch_dtype": "bfloat16"
}`

func TestResolveArchSources(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "my-model")
	must(t, os.MkdirAll(local, 0o755))
	must(t, os.WriteFile(filepath.Join(local, "config.json"), []byte(llama1BConfig), 0o644))

	// A hub cache holding a renamed copy, at the commit refs/main points to.
	hub := filepath.Join(dir, "hub")
	snap := filepath.Join(hub, "models--acme--tiny-llama", "snapshots", "abc123")
	must(t, os.MkdirAll(snap, 0o755))
	must(t, os.MkdirAll(filepath.Join(hub, "models--acme--tiny-llama", "refs"), 0o755))
	must(t, os.WriteFile(filepath.Join(hub, "models--acme--tiny-llama", "refs", "main"), []byte("abc123\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(snap, "config.json"), []byte(strings.Replace(llama1BConfig, `"num_hidden_layers": 16`, `"num_hidden_layers": 3`, 1)), 0o644))
	t.Setenv("HF_HUB_CACHE", hub)

	tests := []struct {
		name       string
		model      string
		wantLayers int
		wantSource string
	}{
		{"local dir", local, 16, filepath.Join(local, "config.json")},
		{"hf cache", "acme/tiny-llama", 3, filepath.Join(snap, "config.json")},
		{"built-in", "Qwen/Qwen2.5-0.5B-Instruct", 24, "built-in table (qwen2.5-0.5b)"},
		{"marker before the version", "mistralai/Mistral-7B-Instruct-v0.3", 32, "built-in table (mistral-7b-v0.3)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ResolveArch(tt.model, "")
			if err != nil {
				t.Fatal(err)
			}
			if a.Layers != tt.wantLayers || a.Source != tt.wantSource {
				t.Errorf("arch = %+v", a)
			}
		})
	}
	_, err := ResolveArch("acme/never-heard-of-it", "")
	if err == nil || !strings.Contains(err.Error(), "config.json") || !strings.Contains(err.Error(), "model:") ||
		strings.Contains(err.Error(), "name_or_path") {
		t.Errorf("unknown model: %v (the hint must name the config key model:)", err)
	}
}

func TestArchFromConfigJSON(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		check   func(*Arch) bool
		wantErr string
	}{
		{"qwen2 gets q/k/v bias", `{"model_type":"qwen2","hidden_size":896,"intermediate_size":4864,"num_hidden_layers":24,
			"num_attention_heads":14,"num_key_value_heads":2,"vocab_size":151936,"tie_word_embeddings":true}`,
			func(a *Arch) bool { return a.AttnBias && a.HeadDim == 64 && a.Tied }, ""},
		{"gemma3 multimodal reads text_config and counts the tower", `{"model_type":"gemma3",
			"text_config":{"model_type":"gemma3_text","hidden_size":2560,"intermediate_size":10240,"num_hidden_layers":34,
			"num_attention_heads":8,"num_key_value_heads":4,"head_dim":256,"vocab_size":262208},
			"vision_config":{"hidden_size":1152,"intermediate_size":4304,"num_hidden_layers":27,"num_attention_heads":16}}`,
			func(a *Arch) bool {
				return a.Family == "gemma3_text" && a.QKNorm && a.NormsPerLayer == 4 && a.ExtraParams > 400e6 && a.Tied
			}, ""},
		{"mha default kv heads", `{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
			"num_attention_heads":4,"vocab_size":100}`,
			func(a *Arch) bool { return a.KVHeads == 4 && a.HeadDim == 16 && !a.Tied }, ""},
		{"unknown family", `{"model_type":"mamba","hidden_size":64}`, nil, `model_type "mamba"`},
		{"missing size", `{"model_type":"llama","hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":10}`, nil, "intermediate_size must be positive"},
		{"bad json", `{"model_type":`, nil, "cfg.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ArchFromConfigJSON([]byte(tt.json), "cfg.json")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(a) {
				t.Errorf("arch = %+v", a)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// PEFT matches a target name against the end of the module path
// (model.layers.N.self_attn.q_proj), so "self_attn.q_proj" selects the same
// projections as "q_proj"; a name that reaches into the layer index (some layers
// only), or is not a whole-component suffix, is unknown to the estimator.
func TestTargetsMatchLikePEFT(t *testing.T) {
	arch := mustBuiltin(t, "Llama-3.2-1B")
	bare := Run{Arch: arch, LoRA: LoRA{R: 16, Targets: []string{"q_proj", "v_proj", "down_proj"}}}
	want, err := bare.TrainableParams()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		targets []string
		wantErr bool
	}{
		{"parent.name", []string{"self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"}, false},
		{"mixed", []string{"q_proj", "self_attn.v_proj", "down_proj", "mlp.down_proj"}, false},
		{"one layer only", []string{"layers.0.self_attn.q_proj"}, true},
		{"wrong parent", []string{"mlp.q_proj"}, true},
		{"partial name", []string{"proj"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bare
			r.LoRA.Targets = tt.targets
			got, err := r.TrainableParams()
			if tt.wantErr {
				if err == nil {
					t.Fatalf("targets %v accepted (%d trainable)", tt.targets, got)
				}
				return
			}
			if err != nil || got != want {
				t.Fatalf("trainable = %d, %v; want %d as for the bare names", got, err, want)
			}
		})
	}
}
