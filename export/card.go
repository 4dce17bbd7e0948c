package export

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/loractl/loractl/run"
)

// cardData is everything the model card and SERVING.md are written from.
type cardData struct {
	*Options
	Result   *Result
	Base     base
	Template string
	Dir      string
	// From the run dir: the LoRA rank, and eval/summary.json when the run has one.
	Rank    int
	Summary *evalSummary
}

// evalSummary is the part of eval/summary.json the card shows.
type evalSummary struct {
	N       int    `json:"n"`
	Primary string `json:"primary"`
	Metrics map[string]struct {
		Base    *float64   `json:"base"`
		Adapter *float64   `json:"adapter"`
		Delta   *float64   `json:"delta"`
		CI95    []*float64 `json:"ci95"`
	} `json:"metrics"`
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
}

func (c *cardData) load(runDir string) error {
	if b, err := os.ReadFile(filepath.Join(runDir, run.ResolvedFile)); err == nil {
		var r struct {
			Lora struct {
				R int `json:"r"`
			} `json:"lora"`
		}
		if json.Unmarshal(b, &r) == nil {
			c.Rank = r.Lora.R
		}
	}
	b, err := os.ReadFile(filepath.Join(runDir, "eval", "summary.json"))
	if err != nil {
		return nil
	}
	var s evalSummary
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(runDir, "eval", "summary.json"), err)
	}
	c.Summary = &s
	return nil
}

// servedName is the model name SERVING.md registers: the run's name.
func (c *cardData) servedName() string {
	n := c.Manifest.Name
	if n == "" {
		n = c.Manifest.RunID
	}
	return n
}

func writeDocs(dir string, c cardData) error {
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte(c.modelCard()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "SERVING.md"), []byte(c.serving()), 0o644)
}

// modelCard is README.md: Hugging Face's model card with YAML front matter.
func (c *cardData) modelCard() string {
	m, r := c.Manifest, c.Result
	var b strings.Builder
	lib, tags := "transformers", []string{"loractl", "lora", "sft", "trl"}
	switch r.Mode {
	case "adapter":
		lib = "peft"
		tags = append(tags, "peft")
	case "gguf":
		tags = append(tags, "gguf")
	}
	fmt.Fprintf(&b, "---\nbase_model: %s\nlibrary_name: %s\ntags:\n", yamlString(c.Base.NameOrPath), lib)
	for _, t := range tags {
		fmt.Fprintf(&b, "- %s\n", t)
	}
	b.WriteString("---\n\n")
	what := map[string]string{"adapter": "LoRA adapter", "merge": "merged model", "gguf": "GGUF model"}[r.Mode]
	fmt.Fprintf(&b, "# %s (%s of %s)\n\n", c.servedName(), what, c.Base.NameOrPath)
	src := "the final adapter"
	if c.Checkpoint > 0 {
		src = fmt.Sprintf("checkpoint %d", c.Checkpoint)
	}
	fmt.Fprintf(&b, "Fine-tuned with LoRA by loractl %s in run `%s` (%s", c.Version, m.RunID, m.State)
	if m.Result != nil {
		fmt.Fprintf(&b, ", step %d", m.Result.Step)
	}
	fmt.Fprintf(&b, "); exported from %s. How to serve it: [SERVING.md](SERVING.md).\n\n", src)

	b.WriteString("## Evaluation\n\n")
	wrote := false
	if m.Result != nil && m.Result.EvalLossBefore != nil && m.Result.EvalLossAfter != nil {
		fmt.Fprintf(&b, "- eval loss: %.4f (base) -> %.4f (adapter)\n", *m.Result.EvalLossBefore, *m.Result.EvalLossAfter)
		wrote = true
	}
	if s := c.Summary; s != nil {
		fmt.Fprintf(&b, "- verdict: **%s**", s.Verdict)
		if s.Reason != "" {
			fmt.Fprintf(&b, " (%s)", s.Reason)
		}
		fmt.Fprintf(&b, ", on %d eval examples\n\n| metric | base | adapter | delta | 95%% CI of delta |\n|---|---|---|---|---|\n", s.N)
		names := make([]string, 0, len(s.Metrics))
		for n := range s.Metrics {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			v := s.Metrics[n]
			label := n
			if n == s.Primary {
				label += " (primary)"
			}
			ci := "-"
			if len(v.CI95) == 2 {
				ci = "[" + num(v.CI95[0]) + ", " + num(v.CI95[1]) + "]"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", label, num(v.Base), num(v.Adapter), num(v.Delta), ci)
		}
		wrote = true
	} else if m.Result != nil && m.Result.Improved != nil {
		v := "adopt: the adapter lowered the eval loss"
		if !*m.Result.Improved {
			v = "do not adopt: the adapter did not lower the eval loss"
		}
		fmt.Fprintf(&b, "- verdict: **%s**\n", v)
		wrote = true
	}
	if !wrote {
		b.WriteString("The run recorded no evaluation.\n")
	}

	b.WriteString("\n## Training data\n\n| role | file | sha256 | bytes |\n|---|---|---|---|\n")
	for _, d := range m.Data {
		fmt.Fprintf(&b, "| %s | `%s` | `%s` | %d |\n", d.Role, filepath.Base(d.Path), d.SHA256, d.Bytes)
	}

	b.WriteString("\n## Export checks\n\n")
	fmt.Fprintf(&b, "- the chat template shipped here renders %d probe conversation(s) of the eval data to exactly the token ids training used\n", r.Probes)
	if v := r.Verify; v != nil {
		fmt.Fprintf(&b, "- merged (%s) vs base + adapter logits on the probes: max abs difference %.3g (tolerance %g)\n", v.DType, v.MaxAbsDiff, v.Tolerance)
	}
	if g := r.GGUF; g != nil {
		fmt.Fprintf(&b, "- `%s` (%s) read back: %d tensors, %d tokens, the chat template and end-of-turn ids as written\n", g.File, g.Quant, g.Tensors, g.Tokens)
	}
	fmt.Fprintf(&b, "- an assistant turn ends at: %s\n", codeList(r.StopTokens))

	b.WriteString("\n## Reproduce\n\n```sh\nloractl reproduce " + m.RunID + "\n```\n\n")
	fmt.Fprintf(&b, "Trainer sha256 `%s`; seed %d; ", m.Trainer.SHA256, m.Seed)
	keys := make([]string, 0, len(m.Versions))
	for k := range m.Versions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %s", k, m.Versions[k])
	}
	b.WriteString(".\n")
	return b.String()
}

func num(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.4g", *p)
}

func codeList(s []string) string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = "`" + x + "`"
	}
	return strings.Join(out, ", ")
}

// yamlString quotes a value for YAML front matter (JSON strings are valid YAML).
func yamlString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// shellQuote quotes s for a POSIX shell command line.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:@+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// vllmRank is the smallest --max-lora-rank vLLM accepts that holds r.
func vllmRank(r int) int {
	for _, v := range []int{8, 16, 32, 64, 128, 256, 320, 512} {
		if r <= v {
			return v
		}
	}
	return r
}

// serving is SERVING.md: the exact commands to serve this export and to query it.
func (c *cardData) serving() string {
	r, name := c.Result, c.servedName()
	var b strings.Builder
	fmt.Fprintf(&b, "# Serving %s\n\n", name)
	idStrs := make([]string, len(r.StopIDs))
	for i, id := range r.StopIDs {
		idStrs[i] = fmt.Sprint(id)
	}
	ids := "[" + strings.Join(idStrs, ", ") + "]"
	model := name
	switch r.Mode {
	case "adapter":
		b.WriteString("## vLLM (OpenAI-compatible server, the adapter on the base model)\n\n```sh\n")
		fmt.Fprintf(&b, "vllm serve %s \\\n  --enable-lora \\\n  --lora-modules %s \\\n  --max-lora-rank %d \\\n  --chat-template %s \\\n  --port 8000\n```\n\n",
			shellQuote(c.Base.NameOrPath), shellQuote(name+"="+c.Dir), vllmRank(c.Rank), shellQuote(filepath.Join(c.Dir, "chat_template.jinja")))
		fmt.Fprintf(&b, "Requests name the adapter (`model=%q`); the base model stays available under its own name.\n"+
			"`--chat-template` is the template the adapter was trained with (checked at export). The base model's\n"+
			"generation_config may not list every end-of-turn token, so the client passes `stop_token_ids`.\n\n", name)
	case "merge":
		b.WriteString("## vLLM (OpenAI-compatible server)\n\n```sh\n")
		fmt.Fprintf(&b, "vllm serve %s --served-model-name %s --port 8000\n```\n\n", shellQuote(c.Dir), shellQuote(name))
		b.WriteString("The directory loads alone with `AutoModelForCausalLM.from_pretrained`; its generation_config.json\n" +
			"lists every end-of-turn token in `eos_token_id`, and its tokenizer carries the training chat template.\n\n")
	case "gguf":
		g := r.GGUF
		b.WriteString("## Ollama\n\n```sh\n")
		fmt.Fprintf(&b, "cd %s\nollama create %s -f Modelfile\nollama run %s\n```\n\n", shellQuote(c.Dir), shellQuote(name), shellQuote(name))
		b.WriteString("The Modelfile's TEMPLATE and `PARAMETER stop` come from the training chat template and its\n" +
			"end-of-turn tokens (checked to render the probe conversations as the template does).\n" +
			"Ollama serves the OpenAI API at http://localhost:11434/v1.\n\n## llama.cpp\n\n```sh\n")
		fmt.Fprintf(&b, "llama-server -m %s --jinja --port 8000\n```\n\n", shellQuote(filepath.Join(c.Dir, g.File)))
		b.WriteString("`--jinja` makes llama-server use the chat template stored in the GGUF.\n\n")
	}
	b.WriteString("## The OpenAI client\n\n```python\nfrom openai import OpenAI\n\n")
	base := "http://localhost:8000/v1"
	if r.Mode == "gguf" {
		base = "http://localhost:11434/v1  # Ollama; http://localhost:8000/v1 for llama-server"
	}
	fmt.Fprintf(&b, "client = OpenAI(base_url=%q, api_key=\"unused\")\n", strings.SplitN(base, " ", 2)[0])
	if r.Mode == "gguf" {
		b.WriteString("# Ollama; use http://localhost:8000/v1 for llama-server\n")
	}
	b.WriteString("reply = client.chat.completions.create(\n")
	fmt.Fprintf(&b, "    model=%q,\n    messages=[\n", model)
	if c.SystemPrompt != "" {
		sp, _ := json.Marshal(c.SystemPrompt)
		fmt.Fprintf(&b, "        {\"role\": \"system\", \"content\": %s},\n", sp)
	}
	b.WriteString("        {\"role\": \"user\", \"content\": \"Hello!\"},\n    ],\n    max_tokens=256,\n")
	if r.Mode == "adapter" {
		fmt.Fprintf(&b, "    extra_body={\"stop_token_ids\": %s},  # %s\n", ids, strings.Join(r.StopTokens, " "))
	}
	b.WriteString(")\nprint(reply.choices[0].message.content)\n```\n")
	if c.SystemPrompt != "" {
		b.WriteString("\nThe system prompt is the run's `data.system_prompt`, the one the data was checked against.\n")
	}
	return b.String()
}
