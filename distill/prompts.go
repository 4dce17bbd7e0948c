package distill

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"unicode/utf8"

	"github.com/loractl/loractl/llm"
)

// MaxPromptLineBytes is the longest prompts-file line accepted.
const MaxPromptLineBytes = 16 << 20

// Prompt is one conversation to send: the messages as sent (production system prompt
// applied, trailing assistant turn removed) and its line in the prompts file.
type Prompt struct {
	Line     int
	Messages []llm.Message
	hash     [16]byte
}

// promptReader streams a prompts file: chat JSONL (each line {"messages": [...]}) or plain
// text (each non-blank line one user prompt). The format is decided by the first
// non-blank line: a line starting with '{' makes the file chat JSONL.
type promptReader struct {
	path   string
	system string
	f      *os.File
	r      *bufio.Reader
	line   int
	chat   bool
	known  bool
	sha    hash.Hash
}

func openPrompts(path, system string, sha hash.Hash) (*promptReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: prompts file: %v", ErrInput, err)
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("%w: prompts file %s is a directory", ErrInput, path)
	}
	return &promptReader{path: path, system: system, f: f, r: bufio.NewReaderSize(f, 64<<10), sha: sha}, nil
}

func (p *promptReader) Close() error { return p.f.Close() }

// next returns the next prompt, io.EOF at the end, or an input error naming file and line.
func (p *promptReader) next() (*Prompt, error) {
	for {
		raw, err := p.readLine()
		if err != nil {
			return nil, err
		}
		p.line++
		data := bytes.TrimRight(raw, "\r\n")
		if len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		if !p.known {
			p.known = true
			p.chat = bytes.TrimSpace(data)[0] == '{'
		}
		if !utf8.Valid(data) {
			return nil, p.errorf("", "the line is not valid UTF-8")
		}
		var msgs []llm.Message
		if p.chat {
			msgs, err = p.parseChat(data)
			if err != nil {
				return nil, err
			}
		} else {
			msgs = []llm.Message{{Role: "user", Content: string(bytes.TrimRight(data, " \t"))}}
		}
		msgs = p.finish(msgs)
		if len(msgs) == 0 || msgs[len(msgs)-1].Role != "user" {
			return nil, p.errorf("messages", "the conversation has no user turn to answer (it must end with a user turn, or a user turn then the assistant turn to replace)")
		}
		return &Prompt{Line: p.line, Messages: msgs, hash: hashMessages(msgs)}, nil
	}
}

// readLine reads one line (with its newline) and feeds the file hash; a line over
// MaxPromptLineBytes is an input error.
func (p *promptReader) readLine() ([]byte, error) {
	var buf []byte
	for {
		chunk, err := p.r.ReadSlice('\n')
		if p.sha != nil {
			p.sha.Write(chunk)
		}
		if len(buf)+len(chunk) > MaxPromptLineBytes {
			return nil, fmt.Errorf("%w: %s:%d: the line is over %d bytes", ErrInput, p.path, p.line+1, MaxPromptLineBytes)
		}
		buf = append(buf, chunk...)
		switch {
		case err == nil:
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(buf) == 0 {
				return nil, io.EOF
			}
			return buf, nil
		default:
			return nil, fmt.Errorf("reading %s: %w", p.path, err)
		}
	}
}

func (p *promptReader) parseChat(data []byte) ([]llm.Message, error) {
	var row map[string]json.RawMessage
	if err := json.Unmarshal(data, &row); err != nil {
		return nil, p.errorf("", "invalid JSON: "+err.Error())
	}
	raw, ok := row["messages"]
	if !ok {
		return nil, p.errorf("messages", `missing: each line must be {"messages": [...]} (or use a plain-text file, one prompt per line)`)
	}
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, p.errorf("messages", "must be an array of {\"role\", \"content\"} objects")
	}
	msgs := make([]llm.Message, 0, len(items))
	for i, it := range items {
		path := fmt.Sprintf("messages[%d]", i)
		for k := range it {
			if k != "role" && k != "content" {
				return nil, p.errorf(path+"."+k, "not supported: distill sends role and content only (no tools, names or tool calls)")
			}
		}
		var m llm.Message
		if err := json.Unmarshal(it["role"], &m.Role); err != nil || m.Role == "" {
			return nil, p.errorf(path+".role", "must be a string: system, user or assistant")
		}
		switch m.Role {
		case "system", "user", "assistant":
		default:
			return nil, p.errorf(path+".role", fmt.Sprintf("%q is not supported: system, user or assistant", m.Role))
		}
		if err := json.Unmarshal(it["content"], &m.Content); err != nil {
			return nil, p.errorf(path+".content", "must be a string")
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// finish drops a trailing assistant turn (the teacher's replaces it) and applies the
// production system prompt: it replaces a leading system turn, or is put first.
func (p *promptReader) finish(msgs []llm.Message) []llm.Message {
	if n := len(msgs); n > 0 && msgs[n-1].Role == "assistant" {
		msgs = msgs[:n-1]
	}
	if p.system == "" {
		return msgs
	}
	if len(msgs) > 0 && msgs[0].Role == "system" {
		msgs = msgs[1:]
	}
	return append([]llm.Message{{Role: "system", Content: p.system}}, msgs...)
}

func (p *promptReader) errorf(path, msg string) error {
	if path != "" {
		return fmt.Errorf("%w: %s:%d: %s: %s", ErrInput, p.path, p.line, path, msg)
	}
	return fmt.Errorf("%w: %s:%d: %s", ErrInput, p.path, p.line, msg)
}

// hashMessages is the identity of a prompt: SHA-256 (first 16 bytes) over each turn's
// role and content, length-prefixed so no two conversations collide by concatenation.
func hashMessages(msgs []llm.Message) [16]byte {
	h := sha256.New()
	var n [8]byte
	for _, m := range msgs {
		for _, s := range []string{m.Role, m.Content} {
			putLen(n[:], len(s))
			h.Write(n[:])
			io.WriteString(h, s)
		}
	}
	var out [16]byte
	copy(out[:], h.Sum(nil))
	return out
}

func putLen(b []byte, n int) {
	for i := range 8 {
		b[i] = byte(n >> (8 * i))
	}
}

// scanPrompts validates the whole file before anything is sent and returns the number
// of prompts and the file's SHA-256.
func scanPrompts(path, system string) (int, string, error) {
	h := sha256.New()
	pr, err := openPrompts(path, system, h)
	if err != nil {
		return 0, "", err
	}
	defer pr.Close()
	n := 0
	for {
		_, err := pr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, "", err
		}
		n++
	}
	if n == 0 {
		return 0, "", fmt.Errorf("%w: %s has no prompts", ErrInput, path)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}
