package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loractl/loractl/distill"
	"github.com/loractl/loractl/llm"
	"github.com/loractl/loractl/llm/llmtest"
)

const distillKey = "sk-e2e-distill-key-7731"

// distillCmd runs the real binary in dir with the key in its environment.
func distillCmd(t *testing.T, dir string, args ...string) *exec.Cmd {
	cmd := exec.Command(loractlBin(t), append([]string{"distill"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "E2E_DISTILL_KEY="+distillKey, "OMP_NUM_THREADS=1")
	return cmd
}

func runCmd(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

func countLines(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte("\n"))
}

// distillRows reads OUT and counts each user prompt; a torn or invalid line fails.
func distillRows(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r struct{ Messages []llm.Message }
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: invalid row %q: %v", path, sc.Text(), err)
		}
		if len(r.Messages) != 3 || r.Messages[0].Content != "Production prompt." {
			t.Fatalf("row without the production system prompt: %+v", r.Messages)
		}
		if want := llmtest.CannedAnswer(r.Messages[:2]); r.Messages[2].Content != want {
			t.Fatalf("answer %q, want %q", r.Messages[2].Content, want)
		}
		seen[r.Messages[1].Content]++
	}
	return seen
}

// kill -9 at random moments, then the same command again: every prompt is in OUT
// exactly once, and the key is in no file and no output. Also Ctrl-C: exit 130 with
// the in-flight requests written.
func TestDistillKill9ThenRerunLosesAndDuplicatesNothing(t *testing.T) {
	dir := t.TempDir()
	const n = 600
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "prompt %d: tell me about item %d\n", i, i*7)
	}
	prompts := filepath.Join(dir, "prompts.txt")
	if err := os.WriteFile(prompts, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := llmtest.New(llmtest.Options{Delay: 3 * time.Millisecond, APIKey: distillKey,
		FaultFor: func(p string, attempt int) llmtest.Fault {
			if attempt == 0 && len(p)%5 == 0 {
				return llmtest.RateLimit
			}
			return llmtest.OK
		}, RetryAfter: "0.05"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	out := filepath.Join(dir, "out.jsonl")
	args := []string{prompts, "-o", out, "--teacher", srv.URL, "--model", "m", "--api-key-env", "E2E_DISTILL_KEY",
		"--system-prompt", "Production prompt.", "--concurrency", "16", "--timeout", "5s"}
	var outputs strings.Builder
	for round, at := range []int{40, 200, 350} {
		cmd := distillCmd(t, dir, args...)
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for countLines(out) < at && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
		_ = cmd.Process.Kill() // SIGKILL
		_ = cmd.Wait()
		outputs.WriteString(so.String() + se.String())
		if got := countLines(out); got < at || got >= n {
			t.Fatalf("round %d: %d rows when killed, want a run stopped midway", round, got)
		}
	}
	// Ctrl-C: the requests in flight finish and are written; exit 130.
	cmd := distillCmd(t, dir, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	before := countLines(out)
	for countLines(out) < before+50 {
		time.Sleep(2 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("after SIGINT: %v, want exit 130\n%s", err, se.String())
	}
	outputs.WriteString(so.String() + se.String())

	r := runCmd(t, distillCmd(t, dir, args...))
	outputs.WriteString(r.stdout + r.stderr)
	if r.code != 0 {
		t.Fatalf("rerun: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	seen := distillRows(t, out)
	if len(seen) != n {
		t.Errorf("%d distinct prompts in OUT, want %d", len(seen), n)
	}
	for p, c := range seen {
		if c != 1 {
			t.Errorf("%q is in OUT %d times", p, c)
		}
	}
	// Every prompt was asked at least once (plus the 429s), and no more was asked again
	// than the requests in flight at the three kills (16 each).
	rateLimited := 0
	for i := range n {
		if len(fmt.Sprintf("prompt %d: tell me about item %d", i, i*7))%5 == 0 {
			rateLimited++
		}
	}
	if got, lo := srv.Total(), n+rateLimited; got < lo || got > lo+3*16 {
		t.Errorf("server saw %d requests, want %d..%d", got, lo, lo+3*16)
	}
	if !strings.Contains(r.stdout, "data check: 600 examples") || !strings.Contains(r.stdout, "resumed") {
		t.Errorf("summary:\n%s", r.stdout)
	}
	prov, err := distill.ReadProvenance(distill.ProvenancePath(out))
	if err != nil || prov.Totals.OK != n || prov.Teacher.APIKeyEnv != "E2E_DISTILL_KEY" {
		t.Errorf("provenance %+v, %v", prov, err)
	}
	files, _ := os.ReadDir(dir)
	for _, e := range files {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		if bytes.Contains(b, []byte(distillKey)) {
			t.Errorf("%s holds the API key", e.Name())
		}
	}
	if strings.Contains(outputs.String(), distillKey) {
		t.Error("the API key was printed")
	}
}

func TestDistillBadInputExits2(t *testing.T) {
	dir := t.TempDir()
	prompts := filepath.Join(dir, "p.jsonl")
	if err := os.WriteFile(prompts, []byte(`{"messages":[{"role":"user","content":"hi"}]}`+"\n"+`{"messages":[{"role":"assistant","content":"x"}]}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.txt")
	if err := os.WriteFile(good, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.jsonl")
	if err := os.WriteFile(other, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{filepath.Join(dir, "missing.txt"), "-o", "o1.jsonl", "--teacher", "http://127.0.0.1:9/v1"}, "missing.txt"},
		{[]string{prompts, "-o", "o2.jsonl", "--teacher", "http://127.0.0.1:9/v1"}, "p.jsonl:2: messages: the conversation has no user turn"},
		{[]string{good, "-o", "o3.jsonl", "--teacher", "http://127.0.0.1:9/v1", "--require", "xml"}, `--require "xml"`},
		{[]string{good, "-o", other, "--teacher", "http://127.0.0.1:9/v1"}, "exists and no"},
		{[]string{good, "-o", "o4.jsonl", "--teacher", filepath.Join(dir, "no-model")}, "neither an http(s) URL nor a model directory"},
	}
	for _, tt := range tests {
		r := runCmd(t, distillCmd(t, dir, tt.args...))
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tt.args, r.code, r.stderr, tt.want)
		}
	}
}

// scriptModel rewires a tiny model's weights so that greedy generation answers every
// prompt with one word and then the end-of-turn token: attention and MLP outputs are
// zeroed (each position's hidden state is its token's embedding), the generation
// prompt's last token points at the word, the word at <|im_end|>. Generation itself is
// the real transformers path.
const scriptModel = `
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
sys.path.insert(0, sys.argv[2])
import generation
d, word = sys.argv[1], sys.argv[3]
m = AutoModelForCausalLM.from_pretrained(d)
t = AutoTokenizer.from_pretrained(d)
last = generation.prompt_ids(t, [{"role": "user", "content": "x"}])[-1]
a = t.convert_tokens_to_ids(word)
end = t.convert_tokens_to_ids("<|im_end|>")
assert len({last, a, end}) == 3 and t.unk_token_id not in (a, end)
with torch.no_grad():
    for layer in m.model.layers:
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()
    e, w = m.model.embed_tokens.weight, m.lm_head.weight
    e.zero_(); e[:, 2] = 1.0
    e[last] = 0; e[last, 0] = 1.0
    e[a] = 0; e[a, 1] = 1.0
    w.zero_(); w[a, 0] = 5.0; w[end, 1] = 5.0
m.save_pretrained(d)
`

// The local-model teacher: a tiny model served by python/serve_openai.py, on the CPU.
func TestDistillLocalTeacherTinyModel(t *testing.T) {
	py := pythonOrSkip(t)
	dir := t.TempDir()
	data := filepath.Join(repoRoot(), "examples", "data")
	model := filepath.Join(dir, "model")
	mk := exec.Command(py, filepath.Join(repoRoot(), "python", "make_tiny_model.py"), model,
		"--data", filepath.Join(data, "train.jsonl"), "--chatml")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make_tiny_model: %v\n%s", err, out)
	}
	if out, err := exec.Command(py, "-c", scriptModel, model, filepath.Join(repoRoot(), "python"), "Yes").CombinedOutput(); err != nil {
		t.Fatalf("scripting the model: %v\n%s", err, out)
	}
	// The prompts are the sample data's conversations: their assistant turns are replaced.
	src, _ := os.ReadFile(filepath.Join(data, "eval.jsonl"))
	lines := strings.SplitAfter(strings.TrimSpace(string(src)), "\n")[:12]
	prompts := filepath.Join(dir, "prompts.jsonl")
	if err := os.WriteFile(prompts, []byte(strings.Join(lines, "")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.jsonl")
	r := runCmd(t, distillCmd(t, dir, prompts, "-o", out, "--teacher", model, "--max-tokens", "16", "--concurrency", "4",
		"--system-prompt", "Production prompt.", "--python", py, "--device", "cpu", "--json"))
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	prov, err := distill.ReadProvenance(distill.ProvenancePath(out))
	if err != nil {
		t.Fatal(err)
	}
	if prov.Teacher.Kind != "local" || prov.Teacher.Dir != model || prov.Totals.OK != 12 || prov.LastRun.Sent != 12 ||
		prov.Totals.PromptTokens == 0 || prov.Totals.CompletionTokens != 24 {
		t.Fatalf("provenance %+v", prov)
	}
	b, _ := os.ReadFile(out)
	for i, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var row struct{ Messages []llm.Message }
		if err := json.Unmarshal([]byte(l), &row); err != nil {
			t.Fatal(err)
		}
		m := row.Messages
		if m[0].Role != "system" || m[0].Content != "Production prompt." || m[len(m)-1].Role != "assistant" ||
			m[len(m)-1].Content != "Yes" || m[len(m)-2].Role != "user" {
			t.Errorf("row %d: %+v", i, m)
		}
	}
	if !strings.Contains(r.stdout, `"type":"result"`) {
		t.Errorf("no result event in --json output:\n%s", r.stdout)
	}
}

// startServeOpenAI starts python/serve_openai.py with args and returns its URL.
func startServeOpenAI(t *testing.T, py string, args ...string) string {
	t.Helper()
	cmd := exec.Command(py, append([]string{filepath.Join(repoRoot(), "python", "serve_openai.py")}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 2 || f[0] != "listening" {
		t.Fatalf("serve_openai: %q, %v", line, err)
	}
	return f[1]
}

// The Python test server's canned mode and its fault flags, through the real binary:
// every prompt rate-limited once (Retry-After honoured), then every 4th request slower
// than the client's timeout. Every prompt ends up in OUT once, with the canned answer.
func TestDistillAgainstPythonServerFaults(t *testing.T) {
	py := pythonOrSkip(t)
	dir := t.TempDir()
	var b strings.Builder
	for i := range 24 {
		fmt.Fprintf(&b, "python server prompt %d\n", i)
	}
	prompts := filepath.Join(dir, "p.txt")
	if err := os.WriteFile(prompts, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"429", []string{"--fault", "429", "--fault-first", "1", "--retry-after", "0.2"}},
		{"slow", []string{"--fault", "slow", "--fault-every", "4", "--slow-seconds", "3"}},
	} {
		url := startServeOpenAI(t, py, append([]string{"--canned"}, tc.flags...)...)
		out := filepath.Join(dir, tc.name+".jsonl")
		r := runCmd(t, distillCmd(t, dir, prompts, "-o", out, "--teacher", url, "--system-prompt", "Production prompt.",
			"--timeout", "1s", "--concurrency", "4"))
		if r.code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", tc.name, r.code, r.stdout, r.stderr)
		}
		seen := distillRows(t, out)
		if len(seen) != 24 {
			t.Errorf("%s: %d distinct prompts, want 24", tc.name, len(seen))
		}
		for p, c := range seen {
			if c != 1 {
				t.Errorf("%s: %q %d times", tc.name, p, c)
			}
		}
		prov, err := distill.ReadProvenance(distill.ProvenancePath(out))
		if err != nil || prov.Totals.Retries == 0 {
			t.Errorf("%s: provenance %+v %v: want retries counted", tc.name, prov, err)
		}
	}
}
