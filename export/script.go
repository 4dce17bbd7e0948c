package export

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/loractl/loractl/python"
)

// ScriptFiles are the embedded Python files the export runs with: the script, its GGUF
// half, and the modules they import (the trainer's data reading and config checks).
var ScriptFiles = python.WithImports("export_model.py", "export_gguf.py")

// scriptRecord is the script's last stdout line.
type scriptRecord struct {
	Type         string      `json:"type"`
	Probes       []probe     `json:"probes"`
	StopIDs      []int       `json:"stop_token_ids"`
	StopTokens   []string    `json:"stop_tokens"`
	ChatTemplate string      `json:"chat_template"`
	Verify       *Verify     `json:"verify"`
	GGUF         *GGUFRecord `json:"gguf"`
}

type probe struct {
	Where  string `json:"where"`
	Tokens int    `json:"tokens"`
}

// WriteScripts writes the embedded files named into a new temp dir and returns it;
// a name the binary does not carry is skipped (generation.py is optional to export).
func WriteScripts(names []string) (string, error) {
	dir, err := os.MkdirTemp("", "loractl-py-")
	if err != nil {
		return "", err
	}
	for _, name := range names {
		b, err := python.Read(name)
		if err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	return dir, nil
}

// PythonEnv is the environment the helpers run in: the model is local, so a missing
// file never turns into a download; no progress bars in the user's terminal.
func PythonEnv() []string {
	return append(os.Environ(), "HF_HUB_OFFLINE=1", "TRANSFORMERS_VERBOSITY=error",
		"HF_HUB_DISABLE_PROGRESS_BARS=1", "TOKENIZERS_PARALLELISM=false", "PYTHONWARNINGS=ignore", "PYTHONUNBUFFERED=1")
}

func runScript(ctx context.Context, o Options, mode, adapter, resolved, out string) (*scriptRecord, error) {
	if o.Python == "" {
		return nil, invalidf("no Python interpreter for the export (see `loractl doctor`)")
	}
	dir, err := WriteScripts(ScriptFiles)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	args := []string{filepath.Join(dir, "export_model.py"), "--resolved", resolved, "--adapter", adapter,
		"--out", out, "--mode", mode}
	if mode == "gguf" {
		args = append(args, "--gguf-quant", o.GGUFQuant)
	}
	if o.Tolerance > 0 {
		args = append(args, "--tolerance", strconv.FormatFloat(o.Tolerance, 'g', -1, 64))
	}
	if o.SystemPrompt != "" {
		args = append(args, "--system-prompt", o.SystemPrompt)
	}
	cmd := exec.CommandContext(ctx, o.Python, args...)
	cmd.Env = PythonEnv()
	var stdout bytes.Buffer
	tail := &tailWriter{max: 8192}
	cmd.Stdout = &stdout
	cmd.Stderr = tail
	if o.Stderr != nil {
		cmd.Stderr = io.MultiWriter(tail, o.Stderr)
	}
	err = cmd.Run()
	msg := lastLines(tail.buf, 6)
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() == 2:
		return nil, fmt.Errorf("%w: %s", ErrInvalid, msg)
	case err != nil:
		return nil, fmt.Errorf("export failed: %v: %s", err, msg)
	}
	var rec scriptRecord
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rec); err != nil || rec.Type != "result" {
		return nil, fmt.Errorf("export_model.py printed no result: %q", clip(stdout.String()))
	}
	return &rec, nil
}

// lastLines returns the helper's last n stderr lines, the "export: " ones when it
// printed some (its own messages, not library noise).
func lastLines(b []byte, n int) string {
	var own, all []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		all = append(all, line)
		if rest, ok := cutOwn(line); ok {
			own = append(own, rest)
		}
	}
	// The helper's own last word when it ended with one; else (a traceback) the tail.
	pick := all
	if len(own) > 0 && len(all) > 0 && isOwn(all[len(all)-1]) {
		pick = own[len(own)-1:]
	}
	if len(pick) > n {
		pick = pick[len(pick)-n:]
	}
	return strings.Join(pick, "\n")
}

func clip(s string) string {
	if len(s) > 300 {
		return s[len(s)-300:]
	}
	return s
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	max int
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// The helpers prefix their own messages with their name.
var ownPrefixes = []string{"export: ", "chat: "}

func cutOwn(line string) (string, bool) {
	for _, p := range ownPrefixes {
		if rest, ok := strings.CutPrefix(line, p); ok {
			return rest, true
		}
	}
	return "", false
}

func isOwn(line string) bool { _, ok := cutOwn(line); return ok }
