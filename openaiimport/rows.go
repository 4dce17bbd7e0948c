package openaiimport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// rowKind is what a line of an OpenAI fine-tuning file turned out to be.
type rowKind int

const (
	rowChat       rowKind = iota // {"messages": ...}: supervised chat data, converted
	rowPreference                // {"input", "preferred_output", "non_preferred_output"}: DPO
	rowImage                     // chat or preference data with image (or other non-text) parts
	rowForeign                   // another dataset format entirely
)

// Counts says what the conversion did, row by row. Every field counts rows (lines) except
// where it says otherwise.
type Counts struct {
	// Rows is how many rows were written.
	Rows int `json:"rows"`
	// Unchanged rows were written byte for byte as given.
	Unchanged int `json:"unchanged"`
	// LegacyFunctions rows had `functions` / `function_call` / role "function", converted
	// to `tools`, `tool_calls` and role "tool".
	LegacyFunctions int `json:"legacy_functions"`
	// Tools rows carry `tools` (after conversion).
	Tools int `json:"tools"`
	// ToolCalls counts assistant tool calls (not rows).
	ToolCalls int `json:"tool_calls"`
	// ArgumentsDecoded counts tool calls whose `arguments` JSON string was written as the
	// object it encodes, the form Hugging Face chat templates render.
	ArgumentsDecoded int `json:"arguments_decoded"`
	// ParallelToolCalls rows carry `parallel_tool_calls` (kept as written; the trainer
	// ignores it).
	ParallelToolCalls int `json:"parallel_tool_calls"`
	// Weight0Turns counts assistant turns with weight 0 (context, not targets).
	Weight0Turns int `json:"weight0_turns"`
	// TextParts rows had content given as a list of text parts, joined into one string.
	TextParts int `json:"text_parts"`
	// NullContent counts assistant turns whose null or missing content (a turn that only
	// calls a tool) became "".
	NullContent int `json:"null_content"`
	// Skipped rows were dropped with --skip-unsupported (image or other non-text parts).
	Skipped      int   `json:"skipped"`
	SkippedLines []int `json:"skipped_lines,omitempty"`
}

// rowResult is the outcome of converting one line.
type rowResult struct {
	kind rowKind
	out  []byte // the row to write (rowChat)
	// what describes a foreign row's format, or the unsupported part of an image row.
	what string
	// path is the JSON path of the unsupported part.
	path string
	// changes counts what was converted, merged into Counts by the caller.
	changes Counts
}

// convertRow converts one non-blank line. Lines that are not JSON objects, and chat rows
// whose structure is broken, pass through unchanged: the data check that follows reports
// them with the line and the JSON path, as it reports every other mistake.
func convertRow(line []byte) rowResult {
	if plainChat(line) {
		return rowResult{kind: rowChat, out: line, changes: Counts{Unchanged: 1}}
	}
	return convertParsed(line)
}

// convertParsed is convertRow without the plainChat shortcut.
func convertParsed(line []byte) rowResult {
	o, err := parseObject(line)
	if err != nil {
		return rowResult{kind: rowChat, out: line, changes: Counts{Unchanged: 1}}
	}
	switch {
	case o.has("messages"):
		return convertChat(line, o)
	case o.has("input") && (o.has("preferred_output") || o.has("non_preferred_output")):
		if path, what := findUnsupportedPart(o); path != "" {
			return rowResult{kind: rowImage, path: path, what: what}
		}
		return rowResult{kind: rowPreference}
	}
	return rowResult{kind: rowForeign, what: foreignFormat(o)}
}

// convertTriggers are the byte strings at least one of which a row needs before
// convertChat could change or count anything in it (or find a content part).
var convertTriggers = [][]byte{[]byte(`null`), []byte(`"function`), []byte(`"type"`), []byte(`"arguments"`),
	[]byte(`"weight"`), []byte(`"tool`), []byte(`"parallel_tool_calls"`), []byte(`"input"`), []byte(`"preferred_output"`)}

// plainChat reports whether a line is a chat row with nothing to convert, without parsing
// it: most rows are, and parsing them dominated the import. A key spelt with escapes
// ("typ\u0065") is missed here and reaches the data check unconverted, which reports it,
// so the shortcut can cost a conversion but never lets a row through unchecked.
func plainChat(line []byte) bool {
	if !bytes.Contains(line, []byte(`"messages"`)) {
		return false
	}
	for _, t := range convertTriggers {
		if bytes.Contains(line, t) {
			return false
		}
	}
	return true
}

// foreignFormat names the dataset format a row without "messages" looks like.
func foreignFormat(o object) string {
	switch {
	case o.has("prompt") && o.has("completion"):
		return "prompt/completion rows (OpenAI's legacy completions format for babbage-002 and davinci-002, or TRL's)"
	case o.has("instruction") || o.has("output"):
		return "Alpaca rows (instruction/input/output)"
	case o.has("conversations"):
		return "ShareGPT rows (conversations/from/value)"
	case o.has("text"):
		return "plain-text rows (text)"
	case o.has("input"):
		return "rows with \"input\" but no preferred_output/non_preferred_output (incomplete preference data?)"
	}
	keys := make([]string, 0, len(o))
	for _, f := range o {
		keys = append(keys, f.Key)
		if len(keys) == 5 {
			break
		}
	}
	if len(keys) == 0 {
		return "an empty object"
	}
	return "an object with keys " + strings.Join(keys, ", ")
}

// findUnsupportedPart returns the JSON path and type of the first content part that is not
// text (an image, audio, a file) anywhere in a row: loractl trains text models.
func findUnsupportedPart(o object) (path, what string) {
	// Content parts sit a few levels down (input.messages[i].content[j]); the walk stops
	// at maxPartDepth so a hostile, deeply nested line costs linear time, not quadratic.
	const maxPartDepth = 8
	var walk func(v json.RawMessage, p string, depth int) (string, string)
	walk = func(v json.RawMessage, p string, depth int) (string, string) {
		v = bytes.TrimSpace(v)
		switch {
		case len(v) == 0 || depth > maxPartDepth:
		case v[0] == '{':
			obj, err := parseObject(v)
			if err != nil {
				return "", ""
			}
			if t, ok := obj.get("type"); ok {
				var s string
				if json.Unmarshal(t, &s) == nil && isMediaPart(s) {
					return p, s
				}
			}
			for _, f := range obj {
				if q, w := walk(f.Val, p+"."+f.Key, depth+1); q != "" {
					return q, w
				}
			}
		case v[0] == '[':
			var items []json.RawMessage
			if json.Unmarshal(v, &items) != nil {
				return "", ""
			}
			for i, it := range items {
				if q, w := walk(it, fmt.Sprintf("%s[%d]", p, i), depth+1); q != "" {
					return q, w
				}
			}
		}
		return "", ""
	}
	for _, f := range o {
		if q, w := walk(f.Val, f.Key, 1); q != "" {
			return q, w
		}
	}
	return "", ""
}

// isMediaPart reports whether a content part type carries something other than text.
func isMediaPart(t string) bool {
	switch t {
	case "image_url", "input_image", "image", "input_audio", "audio", "file", "input_file":
		return true
	}
	return false
}

// convertChat converts an OpenAI chat row into loractl's format. A row that needs nothing
// is returned byte for byte.
func convertChat(line []byte, o object) rowResult {
	res := rowResult{kind: rowChat}
	if path, what := findUnsupportedPart(o); path != "" {
		return rowResult{kind: rowImage, path: path, what: what}
	}
	changed := false
	c := &res.changes
	if o.has("parallel_tool_calls") {
		c.ParallelToolCalls = 1
	}
	// Legacy functions → tools.
	if fns, ok := o.get("functions"); ok && !o.has("tools") {
		var list []json.RawMessage
		if json.Unmarshal(fns, &list) == nil {
			tools := make([]json.RawMessage, len(list))
			for i, fn := range list {
				tools[i] = object{{"type", jsonString("function")}, {"function", fn}}.marshal()
			}
			b := marshalArray(tools)
			o.rename("functions", "tools")
			o.set("tools", b)
			c.LegacyFunctions, changed = 1, true
		}
	}
	if o.has("tools") {
		c.Tools = 1
	}
	raw, _ := o.get("messages")
	var msgs []json.RawMessage
	if json.Unmarshal(raw, &msgs) != nil {
		return rowResult{kind: rowChat, out: line, changes: Counts{Unchanged: 1}}
	}
	legacy := false
	lastCallID := ""
	for i, m := range msgs {
		mo, err := parseObject(m)
		if err != nil {
			continue // the data check names it
		}
		mchanged := false
		role := ""
		if r, ok := mo.get("role"); ok {
			_ = json.Unmarshal(r, &role)
		}
		// Legacy function_call → tool_calls, with an id the function result can point at.
		if fc, ok := mo.get("function_call"); ok && role == "assistant" && !mo.has("tool_calls") {
			lastCallID = fmt.Sprintf("call_%d", i)
			call := object{{"id", jsonString(lastCallID)}, {"type", jsonString("function")}, {"function", fc}}.marshal()
			mo.rename("function_call", "tool_calls")
			mo.set("tool_calls", json.RawMessage("["+string(call)+"]"))
			legacy, mchanged = true, true
		}
		if role == "function" {
			mo.set("role", jsonString("tool"))
			if !mo.has("tool_call_id") && lastCallID != "" {
				mo.insertAfter("role", "tool_call_id", jsonString(lastCallID))
			}
			legacy, mchanged = true, true
		}
		if tc, ok := mo.get("tool_calls"); ok {
			if out, n, decoded := decodeArguments(tc); n > 0 {
				c.ToolCalls += n
				if decoded > 0 {
					mo.set("tool_calls", out)
					c.ArgumentsDecoded += decoded
					mchanged = true
				}
			}
		}
		// Content: null or missing on a turn that only calls tools → ""; a list of text
		// parts → their text, joined as the model reads them (no separator).
		content, hasContent := mo.get("content")
		calls := mo.has("tool_calls")
		switch {
		case (!hasContent || isNull(content)) && calls:
			if hasContent {
				mo.set("content", jsonString(""))
			} else {
				mo.insertAfter("role", "content", jsonString(""))
			}
			c.NullContent++
			mchanged = true
		case hasContent && kind(content) == "an array":
			if text, ok := joinTextParts(content); ok {
				mo.set("content", jsonString(text))
				c.TextParts = 1
				mchanged = true
			}
		}
		if w, ok := mo.get("weight"); ok && role == "assistant" {
			var f float64
			if json.Unmarshal(w, &f) == nil && f == 0 {
				c.Weight0Turns++
			}
		}
		if mchanged {
			msgs[i] = mo.marshal()
			changed = true
		}
	}
	if legacy {
		c.LegacyFunctions = 1
	}
	if !changed {
		res.out = line
		c.Unchanged = 1
		return res
	}
	o.set("messages", marshalArray(msgs))
	res.out = o.marshal()
	return res
}

// decodeArguments rewrites each tool call's function.arguments from the JSON string the
// OpenAI format holds to the object it encodes, the form Hugging Face chat templates
// expect (they serialise it themselves; a string would be quoted twice). Arguments that
// are not a JSON object stay as written. It returns the calls, how many there are, and
// how many were rewritten.
func decodeArguments(tc json.RawMessage) (json.RawMessage, int, int) {
	var calls []json.RawMessage
	if json.Unmarshal(tc, &calls) != nil {
		return tc, 0, 0
	}
	decoded := 0
	for i, call := range calls {
		co, err := parseObject(call)
		if err != nil {
			continue
		}
		fn, ok := co.get("function")
		if !ok {
			continue
		}
		fo, err := parseObject(fn)
		if err != nil {
			continue
		}
		args, ok := fo.get("arguments")
		if !ok || kind(args) != "a string" {
			continue
		}
		var s string
		if json.Unmarshal(args, &s) != nil {
			continue
		}
		if inner, err := parseObject([]byte(s)); err == nil {
			fo.set("arguments", inner.marshal())
			co.set("function", fo.marshal())
			calls[i] = co.marshal()
			decoded++
		}
	}
	if decoded == 0 {
		return tc, len(calls), 0
	}
	return marshalArray(calls), len(calls), decoded
}

// joinTextParts joins a content list made only of text parts; false when any part is not
// {"type": "text", "text": "..."} (the data check then reports the list).
func joinTextParts(v json.RawMessage) (string, bool) {
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if json.Unmarshal(v, &parts) != nil || len(parts) == 0 {
		return "", false
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type != "text" || p.Text == nil {
			return "", false
		}
		b.WriteString(*p.Text)
	}
	return b.String(), true
}
