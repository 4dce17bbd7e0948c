package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/loractl/loractl/python"
	"github.com/loractl/loractl/run"
)

// ErrInterrupted is returned when the chat was left with Ctrl-C.
var ErrInterrupted = errors.New("interrupted")

// ChatOptions configure `loractl chat`.
type ChatOptions struct {
	RunDir   string
	Manifest *run.Manifest
	// Checkpoint chats with checkpoint-<Checkpoint> instead of the final adapter (0).
	Checkpoint int
	// Prompt, when set, is answered once; JSON then prints {"reply","stopped","tokens"}.
	Prompt string
	JSON   bool
	// SystemPrompt is TEXT or @FILE; nil: the run's data.system_prompt.
	SystemPrompt *string
	// Base starts with the adapter off.
	Base         bool
	MaxNewTokens int
	Python       string
	Stdin        io.Reader
	Stdout       io.Writer
	Stderr       io.Writer
}

// ChatScriptFiles are the embedded files chat.py runs with.
var ChatScriptFiles = python.WithImports("chat.py")

// Chat runs the embedded python/chat.py against the run's base model and adapter, its
// stdin and stdout passed through (a REPL, or one answer with Prompt). Refusals wrap
// ErrInvalid.
func Chat(ctx context.Context, o ChatOptions) error {
	if o.MaxNewTokens < 1 {
		return invalidf("--max-new-tokens %d: must be >= 1", o.MaxNewTokens)
	}
	if o.JSON && o.Prompt == "" {
		return invalidf("--json needs -p PROMPT")
	}
	adapter, err := AdapterDir(o.RunDir, o.Manifest, o.Checkpoint)
	if err != nil {
		return err
	}
	system := ""
	if o.SystemPrompt == nil {
		info, err := ReadRunInfo(o.RunDir, o.Manifest)
		if err != nil {
			return invalidf("the run's config no longer parses (%v): give --system-prompt", err)
		}
		system = info.SystemPrompt
	} else if s, ok := strings.CutPrefix(*o.SystemPrompt, "@"); ok {
		b, err := os.ReadFile(s)
		if err != nil {
			return invalidf("--system-prompt @%s: %v", s, err)
		}
		system = strings.TrimRight(string(b), "\r\n")
	} else {
		system = *o.SystemPrompt
	}
	if o.Python == "" {
		return invalidf("no Python interpreter for chat (see `loractl doctor`)")
	}
	dir, err := WriteScripts(ChatScriptFiles)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	args := []string{filepath.Join(dir, "chat.py"), "--resolved", filepath.Join(o.RunDir, run.ResolvedFile),
		"--adapter", adapter, "--max-new-tokens", strconv.Itoa(o.MaxNewTokens), "--system-prompt", system}
	if o.Base {
		args = append(args, "--base")
	}
	if o.Prompt != "" {
		args = append(args, "--prompt", o.Prompt)
	}
	if o.JSON {
		args = append(args, "--json")
	}
	cmd := exec.CommandContext(ctx, o.Python, args...)
	cmd.Env = PythonEnv()
	cmd.Stdin, cmd.Stdout = o.Stdin, o.Stdout
	tail := &tailWriter{max: 8192}
	cmd.Stderr = tail
	if o.Stderr != nil {
		cmd.Stderr = io.MultiWriter(tail, o.Stderr)
	}
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && ee.ExitCode() == 130:
		return ErrInterrupted
	case errors.As(err, &ee) && ee.ExitCode() == 2:
		return fmt.Errorf("%w: %s", ErrInvalid, lastLines(tail.buf, 6))
	default:
		return fmt.Errorf("chat failed: %v: %s", err, lastLines(tail.buf, 6))
	}
}
