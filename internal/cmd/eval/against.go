package eval

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/internal/cmdutil"
	"github.com/loractl/loractl/llm"
	"github.com/loractl/loractl/taskeval"
)

// OpenAIEndpoint is OpenAI's API root, --against's default endpoint.
const OpenAIEndpoint = "https://api.openai.com/v1"

// againstPrefix is the one kind of --against model today: a model served by an
// OpenAI-compatible endpoint (OpenAI itself, vLLM, llama.cpp's server, Ollama, ...).
const againstPrefix = "openai:"

// checkAgainstFlags refuses --endpoint, --api-key-env and --concurrency without
// --against, and an --against that names no model.
func checkAgainstFlags(cmd *cobra.Command, o *Options) error {
	if o.Against == "" {
		for _, name := range []string{"endpoint", "api-key-env", "concurrency"} {
			if cmd.Flags().Changed(name) {
				return cmdutil.Invalidf("--%s only applies with --against openai:MODEL", name)
			}
		}
		return nil
	}
	model, ok := strings.CutPrefix(o.Against, againstPrefix)
	if !ok || strings.TrimSpace(model) == "" {
		return cmdutil.Invalidf("--against %q: want openai:MODEL, e.g. openai:ft:gpt-4o-mini-2024-07-18:acme::9xYz", o.Against)
	}
	if o.Concurrency < 1 {
		return cmdutil.Invalidf("--concurrency must be >= 1, got %d", o.Concurrency)
	}
	if _, err := llm.Endpoint(o.Endpoint); err != nil {
		return cmdutil.Invalidf("--endpoint: %v", err)
	}
	return nil
}

// keyEnv is the environment variable the key is read from: --api-key-env, else
// OPENAI_API_KEY for OpenAI's own API (which needs one), else none (a local server).
func (o *Options) keyEnv() string {
	if o.APIKeyEnv != "" || strings.TrimRight(o.Endpoint, "/") != OpenAIEndpoint {
		return o.APIKeyEnv
	}
	return "OPENAI_API_KEY"
}

// against builds the comparison model's client, nil without --against. A missing
// key is the user's to fix: exit 2, before any Python starts.
func (o *Options) against(progress io.Writer) (*taskeval.Against, error) {
	if o.Against == "" {
		return nil, nil
	}
	model := strings.TrimPrefix(o.Against, againstPrefix)
	c, err := llm.New(llm.Config{BaseURL: o.Endpoint, Model: model, APIKeyEnv: o.keyEnv(), MaxRetries: 5})
	if err != nil {
		return nil, cmdutil.Invalidf("--against %s: %v", o.Against, err)
	}
	next := 0
	return &taskeval.Against{Label: o.Against, Client: c, Concurrency: o.Concurrency,
		// One line per tenth of the prompts: enough to see it move, not a flood.
		OnReply: func(done, total int) {
			if done >= next || done == total {
				fmt.Fprintf(progress, "  asking %s %d/%d\n", model, done, total)
				next = done + max(1, total/10)
			}
		}}, nil
}
