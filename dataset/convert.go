package dataset

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Formats Convert reads.
const (
	FormatAuto             = "auto"
	FormatAlpaca           = "alpaca"
	FormatShareGPT         = "sharegpt"
	FormatPromptCompletion = "prompt-completion"
	FormatMessages         = "messages"
)

// Formats lists the formats Convert accepts, for flag help.
var Formats = []string{FormatAuto, FormatAlpaca, FormatShareGPT, FormatPromptCompletion}

// Convert error codes, besides the line-level ones it shares with Check.
const (
	CodeUnknownFormat = "unknown_format"
	CodeMissingField  = "missing_field"
	CodeWrongType     = "wrong_type"
)

// ConvertOptions configure Convert.
type ConvertOptions struct {
	Input string
	// From is one of Formats; FormatAuto detects the format of each line.
	From string
	// SystemPrompt, when set, becomes the first message of every converted example,
	// replacing the source's own system prompt.
	SystemPrompt string
	MaxLineBytes int
	MaxListed    int
}

// ConvertResult counts what Convert wrote and lists the lines it could not convert.
type ConvertResult struct {
	Converted   int            `json:"converted"`
	Formats     map[string]int `json:"formats"`
	Errors      []LineError    `json:"errors"`
	ErrorsTotal int            `json:"errors_total"`
}

type chatMessage struct {
	Role    string   `json:"role"`
	Content string   `json:"content"`
	Weight  *float64 `json:"weight,omitempty"`
}

type chatRow struct {
	Messages []chatMessage `json:"messages"`
}

// Convert rewrites Alpaca (instruction/input/output), ShareGPT (conversations/from/value)
// and prompt/completion JSONL into the chat messages format, one output line per
// convertible input line. Lines that cannot be converted are reported with their line
// number and the offending key, and skipped.
func Convert(ctx context.Context, opts ConvertOptions, out io.Writer) (*ConvertResult, error) {
	switch opts.From {
	case "":
		opts.From = FormatAuto
	case FormatAuto, FormatAlpaca, FormatShareGPT, FormatPromptCompletion:
	default:
		return nil, fmt.Errorf("%w: unknown format %q (want one of %s)", ErrInput, opts.From, strings.Join(Formats, ", "))
	}
	if opts.MaxListed <= 0 {
		opts.MaxListed = DefaultMaxListed
	}
	f, err := OpenInput(opts.Input)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res := &ConvertResult{Formats: map[string]int{}, Errors: []LineError{}}
	fail := func(line int, code, path, msg string) {
		res.ErrorsTotal++
		if len(res.Errors) < opts.MaxListed {
			res.Errors = append(res.Errors, LineError{Line: line, Code: code, Path: path, Message: msg})
		}
	}
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false) // keep "<" and "&" readable: chat data is full of them
	lr := newLineReader(f, opts.MaxLineBytes)
	for n := 0; ; n++ {
		if n&4095 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		ln, err := lr.next()
		if errors.Is(err, io.EOF) {
			return res, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", opts.Input, err)
		}
		switch {
		case ln.TooLong:
			fail(ln.No, CodeLineTooLong, "", fmt.Sprintf("line is %d bytes, over the limit (raise it with --max-line-bytes)", ln.Size))
			continue
		case isBlank(ln.Data):
			continue
		case !utf8.Valid(ln.Data):
			fail(ln.No, CodeInvalidUTF8, "", fmt.Sprintf("invalid UTF-8 at byte %d", firstInvalidUTF8(ln.Data)+1))
			continue
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(ln.Data, &obj); err != nil {
			var ute *json.UnmarshalTypeError
			if errors.As(err, &ute) {
				fail(ln.No, CodeNotAnObject, "", "each line must be a JSON object, got "+ute.Value)
			} else {
				fail(ln.No, CodeInvalidJSON, "", "not valid JSON: "+err.Error())
			}
			continue
		}
		format := opts.From
		if format == FormatAuto {
			format = detectFormat(obj)
		}
		if format == FormatMessages && opts.SystemPrompt == "" {
			// Already in the target format: pass it through byte for byte.
			if _, err := fmt.Fprintf(out, "%s\n", ln.Data); err != nil {
				return nil, err
			}
			res.Converted++
			res.Formats[format]++
			continue
		}
		var line any
		if format == FormatMessages {
			// Only the system prompt changes: every other message and key is kept as
			// written (tool calls, names, weights, ids).
			msgs, cerr := replaceSystemPrompt(obj["messages"], opts.SystemPrompt)
			if cerr != nil {
				fail(ln.No, cerr.code, cerr.path, cerr.msg)
				continue
			}
			obj["messages"] = msgs
			line = obj
		} else {
			row, cerr := convertRow(format, obj)
			if cerr != nil {
				fail(ln.No, cerr.code, cerr.path, cerr.msg)
				continue
			}
			if opts.SystemPrompt != "" {
				row = withSystemPrompt(row, opts.SystemPrompt)
			}
			line = chatRow{Messages: row}
		}
		if err := enc.Encode(line); err != nil {
			return nil, err
		}
		res.Converted++
		res.Formats[format]++
	}
}

func detectFormat(obj map[string]json.RawMessage) string {
	has := func(k string) bool { _, ok := obj[k]; return ok }
	switch {
	case has("messages"):
		return FormatMessages
	case has("conversations"):
		return FormatShareGPT
	case has("instruction"):
		return FormatAlpaca
	case has("prompt") || has("completion"):
		return FormatPromptCompletion
	}
	return ""
}

type convError struct{ code, path, msg string }

func convertRow(format string, obj map[string]json.RawMessage) ([]chatMessage, *convError) {
	msgs, cerr := convertRowAny(format, obj)
	if cerr != nil {
		return nil, cerr
	}
	// An empty answer would train the model to say nothing (and the data check refuses
	// it as empty_assistant_content): report the row instead of passing it through.
	for _, m := range msgs {
		if m.Role == "assistant" && strings.TrimSpace(m.Content) == "" {
			return nil, &convError{CodeEmptyAssistantContent, answerField[format], "the answer is empty: an empty assistant turn trains the model to say nothing"}
		}
	}
	return msgs, nil
}

// answerField names, per source format, the field that becomes the assistant turn.
var answerField = map[string]string{FormatAlpaca: "output", FormatShareGPT: "conversations", FormatPromptCompletion: "completion"}

func convertRowAny(format string, obj map[string]json.RawMessage) ([]chatMessage, *convError) {
	switch format {
	case FormatAlpaca:
		return fromAlpaca(obj)
	case FormatShareGPT:
		return fromShareGPT(obj)
	case FormatPromptCompletion:
		return fromPromptCompletion(obj)
	}
	return nil, &convError{CodeUnknownFormat, "", "unrecognised format: expected Alpaca (instruction/output), ShareGPT (conversations) or prompt/completion keys"}
}

// stringField reads obj[key] as a string; missing is an error unless optional.
func stringField(obj map[string]json.RawMessage, key string, optional bool) (string, *convError) {
	raw, ok := obj[key]
	if !ok || string(raw) == "null" {
		if optional {
			return "", nil
		}
		return "", &convError{CodeMissingField, key, fmt.Sprintf("missing %q", key)}
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &convError{CodeWrongType, key, fmt.Sprintf("%q must be a string", key)}
	}
	return s, nil
}

func fromAlpaca(obj map[string]json.RawMessage) ([]chatMessage, *convError) {
	instruction, err := stringField(obj, "instruction", false)
	if err != nil {
		return nil, err
	}
	input, err := stringField(obj, "input", true)
	if err != nil {
		return nil, err
	}
	output, err := stringField(obj, "output", false)
	if err != nil {
		return nil, err
	}
	system, err := stringField(obj, "system", true)
	if err != nil {
		return nil, err
	}
	user := instruction
	if strings.TrimSpace(input) != "" {
		user = instruction + "\n\n" + input
	}
	var msgs []chatMessage
	if system != "" {
		msgs = append(msgs, chatMessage{Role: "system", Content: system})
	}
	return append(msgs, chatMessage{Role: "user", Content: user}, chatMessage{Role: "assistant", Content: output}), nil
}

// shareGPTRoles maps ShareGPT speaker names to chat roles.
var shareGPTRoles = map[string]string{
	"system": "system",
	"human":  "user", "user": "user",
	"gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "model": "assistant", "bard": "assistant", "bing": "assistant",
	"tool": "tool", "observation": "tool", "function_response": "tool",
}

func fromShareGPT(obj map[string]json.RawMessage) ([]chatMessage, *convError) {
	var turns []map[string]json.RawMessage
	if err := json.Unmarshal(obj["conversations"], &turns); err != nil {
		return nil, &convError{CodeWrongType, "conversations", "\"conversations\" must be an array of {from, value} objects"}
	}
	if len(turns) == 0 {
		return nil, &convError{CodeEmptyMessages, "conversations", "\"conversations\" is empty"}
	}
	system, cerr := stringField(obj, "system", true)
	if cerr != nil {
		return nil, cerr
	}
	var msgs []chatMessage
	if system != "" {
		msgs = append(msgs, chatMessage{Role: "system", Content: system})
	}
	for i, t := range turns {
		fromKey, valueKey := "from", "value"
		if _, ok := t["from"]; !ok {
			fromKey, valueKey = "role", "content" // the OpenAI-style variant
		}
		path := fmt.Sprintf("conversations[%d]", i)
		from, err := stringField(t, fromKey, false)
		if err != nil {
			return nil, &convError{err.code, path + "." + err.path, err.msg}
		}
		value, err := stringField(t, valueKey, false)
		if err != nil {
			return nil, &convError{err.code, path + "." + err.path, err.msg}
		}
		role, ok := shareGPTRoles[strings.ToLower(from)]
		if !ok {
			return nil, &convError{CodeUnrecognizedRole, path + "." + fromKey, fmt.Sprintf("unrecognized speaker %s (expected human, gpt, system or tool)", clip([]byte(from)))}
		}
		msgs = append(msgs, chatMessage{Role: role, Content: value})
	}
	return msgs, nil
}

func fromPromptCompletion(obj map[string]json.RawMessage) ([]chatMessage, *convError) {
	for _, k := range []string{"prompt", "completion"} {
		if _, ok := obj[k]; !ok {
			return nil, &convError{CodeMissingField, k, fmt.Sprintf("missing %q", k)}
		}
	}
	// TRL's conversational variant: prompt and completion are message lists.
	var pl, cl []json.RawMessage
	if json.Unmarshal(obj["prompt"], &pl) == nil && json.Unmarshal(obj["completion"], &cl) == nil {
		pm, err := messageList(pl, "prompt")
		if err != nil {
			return nil, err
		}
		cm, err := messageList(cl, "completion")
		if err != nil {
			return nil, err
		}
		return append(pm, cm...), nil
	}
	prompt, err := stringField(obj, "prompt", false)
	if err != nil {
		return nil, err
	}
	completion, err := stringField(obj, "completion", false)
	if err != nil {
		return nil, err
	}
	return []chatMessage{{Role: "user", Content: prompt}, {Role: "assistant", Content: completion}}, nil
}

// messageList decodes the messages of a conversational prompt/completion row, with the
// same role names and string checks as ShareGPT turns.
func messageList(raws []json.RawMessage, key string) ([]chatMessage, *convError) {
	if len(raws) == 0 {
		return nil, &convError{CodeEmptyMessages, key, fmt.Sprintf("%q is an empty list", key)}
	}
	var msgs []chatMessage
	for i, raw := range raws {
		path := fmt.Sprintf("%s[%d]", key, i)
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return nil, &convError{CodeWrongType, path, "a message must be a {role, content} object"}
		}
		role, err := stringField(m, "role", false)
		if err != nil {
			return nil, &convError{err.code, path + "." + err.path, err.msg}
		}
		content, err := stringField(m, "content", false)
		if err != nil {
			return nil, &convError{err.code, path + "." + err.path, err.msg}
		}
		r, ok := shareGPTRoles[strings.ToLower(role)]
		if !ok {
			return nil, &convError{CodeUnrecognizedRole, path + ".role", fmt.Sprintf("unrecognized role %s (expected system, user, assistant or tool)", clip([]byte(role)))}
		}
		msgs = append(msgs, chatMessage{Role: r, Content: content})
	}
	return msgs, nil
}

// replaceSystemPrompt puts system first in a messages array, dropping the system
// messages it had, and keeps every other message byte for byte.
func replaceSystemPrompt(raw json.RawMessage, system string) (json.RawMessage, *convError) {
	var msgs []json.RawMessage
	if err := json.Unmarshal(raw, &msgs); err != nil {
		return nil, &convError{CodeWrongType, "messages", "\"messages\" must be an array of message objects"}
	}
	first, _ := marshalPlain(chatMessage{Role: "system", Content: system})
	out := []json.RawMessage{first}
	for i, m := range msgs {
		var head struct {
			Role *string `json:"role"`
		}
		if json.Unmarshal(m, &head) != nil || head.Role == nil {
			return nil, &convError{CodeWrongType, fmt.Sprintf("messages[%d]", i), "a message must be an object with a string \"role\""}
		}
		if *head.Role != "system" {
			out = append(out, m)
		}
	}
	b, err := marshalPlain(out)
	if err != nil {
		return nil, &convError{CodeWrongType, "messages", err.Error()}
	}
	return b, nil
}

// marshalPlain is json.Marshal without HTML escaping: chat data is full of "<" and "&".
func marshalPlain(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}

func withSystemPrompt(msgs []chatMessage, system string) []chatMessage {
	out := []chatMessage{{Role: "system", Content: system}}
	for _, m := range msgs {
		if m.Role != "system" {
			out = append(out, m)
		}
	}
	return out
}
