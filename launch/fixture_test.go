package launch

import (
	"os"
	"path/filepath"
	"testing"
)

const gib = uint64(1 << 30)

const llamaConfig = `{"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
 "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256, "tie_word_embeddings": true}`

// fixture writes a model directory with a config.json, a data file and a run config.
func fixture(t *testing.T, trainYAML string) string {
	t.Helper()
	dir := t.TempDir()
	model := filepath.Join(dir, "model")
	must(t, os.MkdirAll(model, 0o755))
	must(t, os.WriteFile(filepath.Join(model, "config.json"), []byte(llamaConfig), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte(`{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}`+"\n"), 0o644))
	cfg := "name: p\nmodel: ./model\ndata:\n  train: train.jsonl\n" + trainYAML
	p := filepath.Join(dir, "run.yaml")
	must(t, os.WriteFile(p, []byte(cfg), 0o644))
	return p
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
