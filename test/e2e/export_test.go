package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// trainRun trains the fixture's config and returns the run id.
func trainRun(t *testing.T, f *fixture) string {
	t.Helper()
	r := f.loractl(t, "train", f.config, "--json")
	if r.code != 0 {
		t.Fatalf("train exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	_, final := jsonLines(t, r.stdout)
	id, _ := final["run_id"].(string)
	if id == "" {
		t.Fatalf("no run id: %v", final)
	}
	return id
}

// exportResult is `loractl export --json`'s output.
type exportResult struct {
	Dir        string   `json:"dir"`
	Mode       string   `json:"mode"`
	Files      []string `json:"files"`
	Probes     int      `json:"probes"`
	StopTokens []string `json:"stop_tokens"`
	StopIDs    []int    `json:"stop_token_ids"`
	Verify     *struct {
		DType      string  `json:"dtype"`
		MaxAbsDiff float64 `json:"max_abs_diff"`
	} `json:"verify"`
	GGUF *struct {
		File    string `json:"file"`
		Tensors int    `json:"tensors"`
		Tokens  int    `json:"tokens"`
	} `json:"gguf"`
}

func (f *fixture) export(t *testing.T, args ...string) (exportResult, result) {
	t.Helper()
	r := f.loractl(t, append([]string{"export"}, append(args, "--json")...)...)
	var res exportResult
	if r.code == 0 {
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("export --json: %v\n%s", err, r.stdout)
		}
	}
	return res, r
}

// python runs a snippet with the trainer's interpreter and returns its stdout.
func (f *fixture) pythonSnippet(t *testing.T, code string, args ...string) string {
	t.Helper()
	cmd := exec.Command(f.python, append([]string{"-c", code}, args...)...)
	cmd.Env = append(os.Environ(), "HF_HUB_OFFLINE=1", "TRANSFORMERS_VERBOSITY=error", "OMP_NUM_THREADS=1")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("python: %v\n%s\n%s", err, out, stderr)
	}
	return string(out)
}

// noTempLeft fails when an export left its temp dir behind.
func noTempLeft(t *testing.T, dir string) {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, ".loractl-export-*"))
	if len(m) > 0 {
		t.Errorf("temp dirs left behind: %v", m)
	}
}

func TestExportAdapterMergeAndRefusals(t *testing.T) {
	f := newFixture(t, "  system_prompt: You are a customer support bot for Acme.\n")
	// system_prompt belongs under data:, which newFixture's config ends with train:.
	cfg, _ := os.ReadFile(f.config)
	cfg = []byte(strings.Replace(strings.Replace(string(cfg), "  system_prompt: You are a customer support bot for Acme.\n", "", 1),
		"data:\n", "data:\n  system_prompt: You are a customer support bot for Acme.\n", 1))
	if err := os.WriteFile(f.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	id := trainRun(t, f)
	out := filepath.Join(f.dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}

	// The adapter, its tokenizer and template, a model card and the serving commands.
	ad := filepath.Join(out, "adapter")
	res, r := f.export(t, id, "-o", ad)
	if r.code != 0 {
		t.Fatalf("export: %+v", r)
	}
	for _, name := range []string{"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja", "README.md", "SERVING.md"} {
		if _, err := os.Stat(filepath.Join(ad, name)); err != nil {
			t.Errorf("adapter export: %v", err)
		}
	}
	card, _ := os.ReadFile(filepath.Join(ad, "README.md"))
	for _, want := range []string{"---\nbase_model: ", "library_name: peft\n", "tags:\n- loractl", "loractl reproduce " + id, "eval loss: ", "verdict: **adopt", "sha256"} {
		if !strings.Contains(string(card), want) {
			t.Errorf("model card lacks %q:\n%s", want, card)
		}
	}
	serving, _ := os.ReadFile(filepath.Join(ad, "SERVING.md"))
	for _, want := range []string{"--enable-lora", "--lora-modules e2e=" + ad, "from openai import OpenAI", `"stop_token_ids": [6]`, "You are a customer support bot for Acme."} {
		if !strings.Contains(string(serving), want) {
			t.Errorf("SERVING.md lacks %q:\n%s", want, serving)
		}
	}
	if res.Probes < 1 || len(res.StopTokens) == 0 || res.StopTokens[0] != "<|end|>" {
		t.Errorf("result: %+v", res)
	}

	// Merged: loads alone, logits equal base+adapter within 1e-5 in fp32, every
	// end-of-turn token in generation_config.
	merged := filepath.Join(out, "merged")
	res, r = f.export(t, id, "-o", merged, "--merge")
	if r.code != 0 {
		t.Fatalf("export --merge: %+v", r)
	}
	if res.Verify == nil || res.Verify.DType != "float32" || res.Verify.MaxAbsDiff > 1e-5 {
		t.Fatalf("merge check: %+v", res.Verify)
	}
	if !strings.Contains(r.stderr, "max abs difference") {
		t.Errorf("the difference is not printed: %s", r.stderr)
	}
	got := f.pythonSnippet(t, `
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
d = sys.argv[1]
m = AutoModelForCausalLM.from_pretrained(d)
tok = AutoTokenizer.from_pretrained(d)
gc = json.load(open(d + "/generation_config.json"))
print(json.dumps({"eos": gc["eos_token_id"], "end": tok.convert_tokens_to_ids("<|end|>"),
                  "peft": any("lora" in n for n, _ in m.named_parameters())}))
`, merged)
	var loaded struct {
		EOS  any  `json:"eos"`
		End  int  `json:"end"`
		PEFT bool `json:"peft"`
	}
	if err := json.Unmarshal([]byte(got), &loaded); err != nil || loaded.PEFT {
		t.Fatalf("merged model: %s (%v)", got, err)
	}
	if v, ok := loaded.EOS.(float64); !ok || int(v) != loaded.End {
		t.Errorf("generation_config eos_token_id %v, want %d (<|end|>)", loaded.EOS, loaded.End)
	}
	card, _ = os.ReadFile(filepath.Join(merged, "README.md"))
	if !strings.Contains(string(card), "library_name: transformers\n") || !strings.Contains(string(card), "max abs difference") {
		t.Errorf("merged model card:\n%s", card)
	}

	// Refusals: exit 2, nothing written, nothing left behind.
	before, _ := os.ReadFile(filepath.Join(ad, "README.md"))
	if _, r = f.export(t, id, "-o", ad); r.code != 2 || !strings.Contains(r.stderr, "--force") {
		t.Errorf("existing dir: %+v", r)
	}
	if after, _ := os.ReadFile(filepath.Join(ad, "README.md")); string(after) != string(before) {
		t.Error("a refused export changed the existing dir")
	}
	cp := filepath.Join(f.runs, id, "checkpoints", "checkpoint-8")
	if err := os.Remove(filepath.Join(cp, "loractl-complete.json")); err != nil {
		t.Fatal(err)
	}
	if _, r = f.export(t, id, "-o", filepath.Join(out, "cp8"), "--checkpoint", "8"); r.code != 2 || !strings.Contains(r.stderr, "not complete") {
		t.Errorf("incomplete checkpoint: %+v", r)
	}
	if _, r = f.export(t, id, "-o", filepath.Join(out, "cp16"), "--checkpoint", "16", "--force"); r.code != 0 {
		t.Errorf("complete checkpoint: %+v", r)
	}
	adapterDir := filepath.Join(f.runs, id, "adapter")
	if err := os.Rename(adapterDir, adapterDir+".away"); err != nil {
		t.Fatal(err)
	}
	if _, r = f.export(t, id, "-o", filepath.Join(out, "none")); r.code != 2 || !strings.Contains(r.stderr, "has no adapter") {
		t.Errorf("no adapter: %+v", r)
	}
	if err := os.Rename(adapterDir+".away", adapterDir); err != nil {
		t.Fatal(err)
	}
	// GGUF has no vocabulary type for a word-level tokenizer: refused before any merge.
	if _, r = f.export(t, id, "-o", filepath.Join(out, "gguf"), "--format", "gguf"); r.code != 2 ||
		!(strings.Contains(r.stderr, "byte-level BPE") || strings.Contains(r.stderr, "LORACTL_EXPORT_EXTRAS=1")) ||
		strings.Contains(r.stderr, "merged logits") {
		t.Errorf("gguf of a word-level tokenizer: %+v", r)
	}

	// A template that renders differently from training fails the export (exit 1): here
	// the assistant turn loses its end token, the classic cause of a model that rambles.
	tmpl := filepath.Join(adapterDir, "chat_template.jinja")
	orig, err := os.ReadFile(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmpl, []byte(strings.Replace(string(orig), " <|end|>{% endgeneration %}", "{% endgeneration %}", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, r = f.export(t, id, "-o", filepath.Join(out, "altered")); r.code != 1 || !strings.Contains(r.stderr, "different token ids than training") {
		t.Errorf("altered template: %+v", r)
	}
	if err := os.WriteFile(tmpl, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"cp8", "none", "altered", "gguf"} {
		if _, err := os.Stat(filepath.Join(out, name)); !os.IsNotExist(err) {
			t.Errorf("%s was written by a refused or failed export", name)
		}
	}
	noTempLeft(t, out)

	// --force replaces an export only once the new one is complete.
	if _, r = f.export(t, id, "-o", ad, "--force"); r.code != 0 {
		t.Errorf("--force: %+v", r)
	}
	noTempLeft(t, out)

	// chat -p --json: the adapter's reply ends at <|end|>, no special token printed.
	r = f.loractl(t, "chat", id, "-p", "Hey there, my Tornado Kit is broken. Please help.", "--json")
	if r.code != 0 {
		t.Fatalf("chat -p: %+v", r)
	}
	var reply struct {
		Reply   string `json:"reply"`
		Stopped string `json:"stopped"`
		Tokens  int    `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &reply); err != nil {
		t.Fatalf("chat --json: %v\n%s", err, r.stdout)
	}
	if reply.Stopped != "eos" || reply.Tokens < 1 || strings.Contains(reply.Reply, "<|") {
		t.Errorf("chat reply: %+v", reply)
	}
	r = f.loractl(t, "chat", id, "-p", "Hey there", "--json", "--base", "--max-new-tokens", "5")
	if r.code != 0 || !strings.Contains(r.stdout, `"tokens": `) || strings.Contains(r.stdout, "<|") {
		t.Errorf("chat --base: %+v", r)
	}
	if r = f.loractl(t, "chat", id, "--json"); r.code != 2 {
		t.Errorf("chat --json without -p: %+v", r)
	}

	chatTmux(t, f, id)
}

// chatTmux drives the interactive REPL in a real terminal: a reply streams, /base and
// /adapter switch, /system and /reset answer, /quit leaves.
func chatTmux(t *testing.T, f *fixture, id string) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Log("tmux not installed: the interactive chat is not exercised")
		return
	}
	sock := filepath.Join(f.dir, "tmux.sock")
	session := "chat"
	cmd := f.command(t, "chat", id, "--max-new-tokens", "8")
	line := shellJoin(append([]string{"env", "LORACTL_PYTHON=" + f.python, "OMP_NUM_THREADS=1"}, cmd.Args...))
	run := func(args ...string) string {
		out, err := exec.Command(tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("new-session", "-d", "-s", session, "-x", "200", "-y", "50", "-c", f.dir, line)
	defer func() { _ = exec.Command(tmux, "-S", sock, "kill-server").Run() }()
	pane := func() string { return run("capture-pane", "-p", "-J", "-S", "-200", "-t", session) }
	wait := func(what string, cond func(string) bool) string {
		deadline := time.Now().Add(3 * time.Minute)
		for {
			p := pane()
			if cond(p) {
				return p
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s; the pane:\n%s", what, p)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	count := func(s, sub string) int { return strings.Count(s, sub) }
	wait("the prompt", func(p string) bool { return strings.Contains(p, "[adapter] you> ") })
	run("send-keys", "-t", session, "Hey there, my Tornado Kit is broken.", "Enter")
	wait("the adapter's reply", func(p string) bool { return count(p, "[adapter] you> ") >= 2 })
	run("send-keys", "-t", session, "/base", "Enter")
	wait("/base", func(p string) bool { return strings.Contains(p, "[base] you> ") })
	run("send-keys", "-t", session, "And now?", "Enter")
	p := wait("the base reply", func(p string) bool { return strings.Contains(p, "[base] assistant> ") && count(p, "[base] you> ") >= 2 })
	run("send-keys", "-t", session, "/system Be brief.", "Enter")
	wait("/system", func(p string) bool { return strings.Contains(p, "system prompt set") })
	run("send-keys", "-t", session, "/adapter", "Enter")
	run("send-keys", "-t", session, "/reset", "Enter")
	wait("/reset", func(p string) bool {
		return strings.Contains(p, "conversation reset") && strings.Contains(p, "(adapter on)")
	})
	run("send-keys", "-t", session, "/quit", "Enter")
	if strings.Contains(p, "<|end|>") || strings.Contains(p, "<|assistant|>") {
		t.Errorf("a special token was printed:\n%s", p)
	}
	if !strings.Contains(p, "[adapter] assistant> ") {
		t.Errorf("no adapter reply:\n%s", p)
	}
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

func TestExportGGUF(t *testing.T) {
	f := newFixture(t, "")
	gguf := f.pythonSnippet(t, "import importlib.util; print(importlib.util.find_spec('gguf') is not None)")
	// A byte-level BPE tokenizer (GGUF's gpt2 vocabulary) and a ChatML template whose
	// end-of-turn token <|im_end|> is not eos.
	data := filepath.Join(repoRoot(), "examples", "data")
	cmd := exec.Command(f.python, filepath.Join(repoRoot(), "python", "make_tiny_model.py"), filepath.Join(f.dir, "model"),
		"--tokenizer", "bpe", "--chatml", "--data", filepath.Join(data, "train.jsonl"), "--data", filepath.Join(data, "eval.jsonl"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make_tiny_model: %v\n%s", err, out)
	}
	id := trainRun(t, f)
	dir := filepath.Join(f.dir, "gguf")
	if strings.TrimSpace(gguf) != "True" {
		_, r := f.export(t, id, "-o", dir, "--format", "gguf")
		if r.code != 2 || !strings.Contains(r.stderr, "LORACTL_EXPORT_EXTRAS=1") {
			t.Fatalf("without gguf: %+v", r)
		}
		t.Skip("the gguf package is not installed (LORACTL_EXPORT_EXTRAS=1 scripts/setup-python.sh)")
	}
	merged := filepath.Join(f.dir, "merged")
	if _, r := f.export(t, id, "-o", merged, "--merge"); r.code != 0 {
		t.Fatalf("export --merge: %+v", r)
	}
	res, r := f.export(t, id, "-o", dir, "--format", "gguf")
	if r.code != 0 {
		t.Fatalf("export --format gguf: %+v", r)
	}
	if res.GGUF == nil || res.GGUF.File != "model-f16.gguf" || res.Verify == nil {
		t.Fatalf("result: %+v", res)
	}
	if strings.Join(res.StopTokens, " ") != "<|end|> <|im_end|>" {
		t.Errorf("stop tokens %v, want <|end|> (eos) and <|im_end|> (end of turn)", res.StopTokens)
	}

	// Read back: every tensor against the merged model (q/k un-permuted), the vocabulary,
	// merges, chat template, eos and end-of-turn ids.
	got := f.pythonSnippet(t, `
import json, sys
import numpy as np, gguf, torch
from safetensors.torch import load_file
from transformers import AutoTokenizer
path, merged = sys.argv[1], sys.argv[2]
r = gguf.GGUFReader(path)
field = lambda k: r.fields[k].contents() if k in r.fields else None
tok = AutoTokenizer.from_pretrained(merged)
cfg = json.load(open(merged + "/config.json"))
w = load_file(merged + "/model.safetensors")
tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg["num_hidden_layers"])
names = {tmap.get_name(k, try_suffixes=(".weight", ".bias")): k for k in w}
def unpermute(a, n):
    return a.reshape(n, a.shape[0] // n // 2, 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape)
worst = 0.0
for t in r.tensors:
    a = np.array(t.data, dtype=np.float32).reshape(list(reversed([int(x) for x in t.shape])))
    k = names[t.name]
    if k.endswith("q_proj.weight"):
        a = unpermute(a, cfg["num_attention_heads"])
    elif k.endswith("k_proj.weight"):
        a = unpermute(a, cfg["num_key_value_heads"])
    ref = w[k].float().numpy()
    worst = max(worst, float(np.abs(a - ref).max() / (np.abs(ref).max() + 1e-9)))
vocab = tok.get_vocab()
tokens = field("tokenizer.ggml.tokens")
print(json.dumps({
  "tensors": len(r.tensors), "want_tensors": len(w), "worst_rel": worst,
  "arch": field("general.architecture"), "model": field("tokenizer.ggml.model"),
  "tokens_ok": all(tokens[i] == t for t, i in vocab.items()),
  "merges": len(field("tokenizer.ggml.merges") or []),
  "template_ok": field("tokenizer.chat_template") == tok.chat_template,
  "eos": field("tokenizer.ggml.eos_token_id"), "want_eos": tok.eos_token_id,
  "eot": field("tokenizer.ggml.eot_token_id"), "want_eot": tok.convert_tokens_to_ids("<|im_end|>"),
}))
`, filepath.Join(dir, "model-f16.gguf"), merged)
	var rb struct {
		Tensors     int     `json:"tensors"`
		WantTensors int     `json:"want_tensors"`
		WorstRel    float64 `json:"worst_rel"`
		Arch        string  `json:"arch"`
		Model       string  `json:"model"`
		TokensOK    bool    `json:"tokens_ok"`
		Merges      int     `json:"merges"`
		TemplateOK  bool    `json:"template_ok"`
		EOS         int     `json:"eos"`
		WantEOS     int     `json:"want_eos"`
		EOT         int     `json:"eot"`
		WantEOT     int     `json:"want_eot"`
	}
	if err := json.Unmarshal([]byte(got), &rb); err != nil {
		t.Fatalf("%v: %s", err, got)
	}
	if rb.Tensors != rb.WantTensors || rb.WorstRel > 1e-3 || rb.Arch != "llama" || rb.Model != "gpt2" || !rb.TokensOK ||
		rb.Merges == 0 || !rb.TemplateOK || rb.EOS != rb.WantEOS || rb.EOT != rb.WantEOT || rb.EOS == rb.EOT {
		t.Errorf("GGUF read back: %s", got)
	}

	llamaVsTransformers(t, f, filepath.Join(dir, "model-f16.gguf"), merged)

	mf, _ := os.ReadFile(filepath.Join(dir, "Modelfile"))
	for _, want := range []string{"FROM ./model-f16.gguf\n", `eq .Role "user" }}<|im_start|>user` + "\n{{ .Content }}<|im_end|>\n",
		"PARAMETER stop \"<|end|>\"\n", "PARAMETER stop \"<|im_end|>\"\n"} {
		if !strings.Contains(string(mf), want) {
			t.Errorf("Modelfile lacks %q:\n%s", want, mf)
		}
	}
	for _, name := range []string{"config.json", "model.safetensors"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("the GGUF export kept %s", name)
		}
	}
	if _, r := f.export(t, id, "-o", filepath.Join(f.dir, "q8"), "--format", "gguf", "--gguf-quant", "q8_0"); r.code != 0 {
		t.Errorf("q8_0: %+v", r)
	}
	if _, err := exec.LookPath("llama-quantize"); err != nil {
		if _, r := f.export(t, id, "-o", filepath.Join(f.dir, "q4"), "--format", "gguf", "--gguf-quant", "q4_k_m"); r.code != 2 || !strings.Contains(r.stderr, "llama-quantize") {
			t.Errorf("q4_k_m without llama-quantize: %+v", r)
		}
	}
	noTempLeft(t, f.dir)
}

// llamaVsTransformers runs the GGUF in llama.cpp (llama-cpp-python, where installed) and
// compares its tokenization of a chat prompt and its first greedy tokens with
// transformers' on the merged model the GGUF was converted from.
func llamaVsTransformers(t *testing.T, f *fixture, ggufPath, merged string) {
	t.Helper()
	if strings.TrimSpace(f.pythonSnippet(t, "import importlib.util; print(importlib.util.find_spec('llama_cpp') is not None)")) != "True" {
		t.Log("llama-cpp-python is not installed (python/requirements-export-llamacpp.txt): the GGUF is not run in llama.cpp")
		return
	}
	got := f.pythonSnippet(t, `
import json, sys
import torch
from llama_cpp import Llama
from transformers import AutoModelForCausalLM, AutoTokenizer
gguf_path, merged, n = sys.argv[1], sys.argv[2], 8
tok = AutoTokenizer.from_pretrained(merged)
model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
msgs = [{"role": "user", "content": "Hey there, my Tornado Kit is broken. Please help."}]
ids = list(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
# transformers stops at an end-of-turn token (generation_config's eos list, the stop included);
# llama-cpp-python's generate does not stop, so its first len(hf) tokens are compared.
hf = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    max_new_tokens=n, do_sample=False)[0, len(ids):].tolist()
llm = Llama(model_path=gguf_path, n_ctx=256, n_threads=1, verbose=False)
same = llm.tokenize(tok.decode(ids).encode(), add_bos=False, special=True) == ids
gen = []
for t in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
    gen.append(int(t))
    if len(gen) == n:
        break
del llm
print(json.dumps({"hf": hf, "llama": gen, "same_tokenization": same}))
`, ggufPath, merged)
	var cmp struct {
		HF       []int `json:"hf"`
		Llama    []int `json:"llama"`
		SameToks bool  `json:"same_tokenization"`
	}
	line := strings.TrimSpace(got)
	if i := strings.LastIndex(line, "\n"); i >= 0 {
		line = line[i+1:]
	}
	if err := json.Unmarshal([]byte(line), &cmp); err != nil {
		t.Fatalf("%v: %s", err, got)
	}
	if !cmp.SameToks || len(cmp.HF) == 0 || len(cmp.Llama) < len(cmp.HF) || fmt.Sprint(cmp.HF) != fmt.Sprint(cmp.Llama[:len(cmp.HF)]) {
		t.Errorf("llama.cpp vs transformers: %s", got)
	}
	t.Logf("llama.cpp vs transformers, greedy: %v vs %v", cmp.Llama, cmp.HF)
}
