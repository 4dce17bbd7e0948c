package dataset

import (
	"context"
	"fmt"
)

// TokenCounter counts tokens with a real tokenizer and its chat template.
type TokenCounter interface {
	// CountTokens calls each once per record of req.Files (the file index and line match
	// the check's), and returns what it learned about the chat template.
	CountTokens(ctx context.Context, req TokenRequest, each func(ExampleTokens) error) (*TemplateInfo, error)
}

// TokenRequest says what to count.
type TokenRequest struct {
	Files        []string
	MaxLength    int
	MaxLineBytes int
}

// ExampleTokens are the token counts of one example under the chat template.
type ExampleTokens struct {
	File int `json:"file"`
	Line int `json:"line"`
	// Total is the templated example's length before truncation.
	Total int `json:"total"`
	// Assistant counts the tokens that carry loss; AssistantKept those of them left
	// after truncation to MaxLength.
	Assistant     int `json:"assistant"`
	AssistantKept int `json:"assistant_kept"`
	// Error is set when the chat template cannot render the example.
	Error string `json:"error,omitempty"`
}

// countTokens replaces the estimates with the tokenizer's counts.
func (c *checker) countTokens(ctx context.Context) error {
	files := []*fileState{c.train}
	if c.eval != nil {
		files = append(files, c.eval)
	}
	req := TokenRequest{MaxLength: c.opts.MaxLength, MaxLineBytes: c.opts.MaxLineBytes}
	for _, fs := range files {
		req.Files = append(req.Files, fs.name)
	}
	info, err := c.opts.Tokenizer.CountTokens(ctx, req, func(et ExampleTokens) error {
		if et.File < 0 || et.File >= len(files) {
			return fmt.Errorf("token counter reported file %d of %d", et.File, len(files))
		}
		fs := files[et.File]
		if !fs.isValid(et.Line) {
			return nil // already reported as a structural error
		}
		if et.Error != "" {
			c.addError(fs, et.Line, CodeChatTemplateError, "messages", "the chat template fails on this example (the trainer would too): "+et.Error)
			return nil
		}
		fs.counted++
		fs.tok.add(et.Total, et.AssistantKept, c.opts.MaxLength)
		c.lengthWarnings(fs, et.Line, et.Total, et.Assistant, et.AssistantKept)
		return nil
	})
	if err != nil {
		return fmt.Errorf("counting tokens: %w", err)
	}
	c.template = info
	return nil
}
