package dataset

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// role is a message role the trainer's chat templates understand.
type role uint8

const (
	roleUnknown role = iota
	roleSystem
	roleUser
	roleAssistant
	roleTool
	numRoles
)

var roleNames = [numRoles]string{"", "system", "user", "assistant", "tool"}

func parseRole(b []byte) role {
	switch string(b) {
	case "system":
		return roleSystem
	case "user":
		return roleUser
	case "assistant":
		return roleAssistant
	case "tool":
		return roleTool
	}
	return roleUnknown
}

// allowedMessageKeys are the message keys besides role/content/weight that chat templates
// read (tool calling, reasoning traces); anything else is a typo or a foreign format.
var allowedMessageKeys = map[string]bool{
	"name": true, "tool_calls": true, "tool_call_id": true,
	"reasoning_content": true, "thinking": true,
}

// message is one checked message of a line. content aliases the line or the checker's arena.
type message struct {
	role    role
	content []byte
	weight  int8 // -1 when absent, else 0 or 1
	// hasContent: content was present and a string (content may still be empty).
	hasContent bool
	// toolCalls: an assistant turn that calls tools may have empty content.
	toolCalls bool
}

// lineIssue is an error or a per-example warning found on one line.
type lineIssue struct {
	code, path, msg string
}

// lineCheck is the outcome of checking one line. It is reused between lines.
type lineCheck struct {
	errors   []lineIssue
	warnings []lineIssue
	msgs     []message // only meaningful when errors is empty
}

// lineChecker checks single JSONL lines against the chat "messages" format. It keeps its
// buffers between lines, so checking a file allocates almost nothing.
type lineChecker struct {
	s      scanner
	arena  []byte // decoded strings; capacity ≥ line length so slices stay valid
	keyBuf []byte
	res    lineCheck

	sawMessages bool
	sawTools    bool
	emptyMsgs   bool
	msgErrors   bool // a message-level or messages-type error was found
	// lastLone: the last decoded string had an unpaired \ud800-\udfff escape;
	// loneSurrogate: some decoded string of the line had one.
	lastLone, loneSurrogate bool
	hint                    string // the foreign format the line looks like, if any
}

// check checks one non-empty line. The result is valid until the next call.
func (c *lineChecker) check(line []byte) *lineCheck {
	r := &c.res
	r.errors, r.warnings, r.msgs = r.errors[:0], r.warnings[:0], r.msgs[:0]
	c.sawMessages, c.sawTools, c.emptyMsgs, c.msgErrors, c.hint = false, false, false, false, ""
	c.lastLone, c.loneSurrogate = false, false
	if cap(c.arena) < len(line) {
		c.arena = make([]byte, 0, len(line))
	}
	c.arena = c.arena[:0]

	if !utf8.Valid(line) {
		c.add(CodeInvalidUTF8, "", fmt.Sprintf("invalid UTF-8 at byte %d (the file must be UTF-8 encoded)", firstInvalidUTF8(line)+1))
		return r
	}
	s := &c.s
	s.reset(line)
	if s.peek() != '{' {
		kind := s.kindAt()
		if s.value(0) && c.atEnd() {
			c.add(CodeNotAnObject, "", fmt.Sprintf("each line must be a JSON object with \"messages\", got %s", kind))
		} else {
			c.syntaxError()
		}
		return r
	}
	if c.object() && c.atEnd() {
		c.semantics()
		if !c.loneSurrogate && c.s.surrogate && hasLoneSurrogate(line) {
			// In a key the checker skips (tool calls, tools): the trainer refuses it too.
			c.add(CodeInvalidUTF8, "", "an unpaired surrogate escape (\\ud800-\\udfff without its pair) is not a character: Python reads it but cannot encode it")
		}
		return r
	}
	c.syntaxError()
	return r
}

// syntaxError replaces whatever was found with the single invalid_json error: schema
// findings on a line that is not JSON would only confuse.
func (c *lineChecker) syntaxError() {
	c.res.errors = append(c.res.errors[:0], lineIssue{CodeInvalidJSON, "", "not valid JSON: " + c.s.err})
	c.res.warnings = c.res.warnings[:0]
}

func (c *lineChecker) atEnd() bool {
	if c.s.err != "" {
		return false
	}
	c.s.ws()
	if c.s.i < len(c.s.b) {
		return c.s.fail("trailing data after the JSON value")
	}
	return true
}

func (c *lineChecker) add(code, path, msg string) {
	c.res.errors = append(c.res.errors, lineIssue{code, path, msg})
}

func (c *lineChecker) warn(code, path, msg string) {
	c.res.warnings = append(c.res.warnings, lineIssue{code, path, msg})
}

// key scans an object key and returns it decoded (valid until the next key).
func (c *lineChecker) key() ([]byte, bool) {
	s := &c.s
	if s.peek() != '"' {
		return nil, s.failKey()
	}
	raw, esc, ok := s.str()
	if !ok || !s.expect(':') {
		return nil, false
	}
	if esc {
		c.keyBuf, _ = appendUnescaped(c.keyBuf[:0], raw)
		return c.keyBuf, true
	}
	return raw, true
}

// stringValue scans a string value and returns it decoded.
func (c *lineChecker) stringValue() ([]byte, bool) {
	raw, esc, ok := c.s.str()
	if !ok {
		return nil, false
	}
	if !esc {
		return raw, true
	}
	start := len(c.arena)
	var lone bool
	c.arena, lone = appendUnescaped(c.arena, raw)
	c.lastLone = lone
	c.loneSurrogate = c.loneSurrogate || lone
	return c.arena[start:len(c.arena):len(c.arena)], true
}

// object walks the top-level object; false on a syntax error.
func (c *lineChecker) object() bool {
	s := &c.s
	s.i++ // '{'
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		k, ok := c.key()
		if !ok {
			return false
		}
		switch string(k) {
		case "messages":
			if c.sawMessages {
				// JSON loaders keep the last one: the trainer would not see what was checked.
				c.msgErrors = true
				c.add(CodeDuplicateKey, "messages", dupKeyMsg("messages"))
				if !s.value(1) {
					return false
				}
				break
			}
			c.sawMessages = true
			if !c.messages() {
				return false
			}
		case "tools":
			if c.sawTools {
				c.add(CodeDuplicateKey, "tools", dupKeyMsg("tools"))
				if !s.value(1) {
					return false
				}
				break
			}
			c.sawTools = true
			if !c.tools() {
				return false
			}
		default:
			c.noteForeignKey(string(k))
			if !s.value(1) {
				return false
			}
		}
		if !s.objectNext() {
			return s.err == ""
		}
	}
}

// tools checks a row's "tools": a list of function schemas (objects) that the chat
// template renders into the prompt. The schemas themselves are the template's business.
func (c *lineChecker) tools() bool {
	s := &c.s
	if s.peek() != '[' {
		kind := s.kindAt()
		if !s.value(1) {
			return false
		}
		c.add(CodeInvalidTools, "tools", "\"tools\" must be a list of function schemas (objects), got "+kind)
		return true
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		return true
	}
	for k := 0; ; k++ {
		isObject := s.peek() == '{'
		kind := s.kindAt()
		if !s.value(2) {
			return false
		}
		if !isObject {
			c.add(CodeInvalidTools, fmt.Sprintf("tools[%d]", k), "a tool must be an object (a function schema), got "+kind)
		}
		if !s.arrayNext() {
			return s.err == ""
		}
	}
}

// hasLoneSurrogate reports whether a valid JSON line holds a \uD800-\uDFFF escape
// without its pair. Backslashes only occur inside strings in valid JSON, so escapes
// can be walked without tracking strings.
func hasLoneSurrogate(line []byte) bool {
	for i := 0; ; {
		j := bytes.IndexByte(line[i:], '\\')
		if j < 0 {
			return false
		}
		i += j
		if i+1 >= len(line) || line[i+1] != 'u' || i+6 > len(line) {
			i += 2
			continue
		}
		r := rune(hex4(line[i+2 : i+6]))
		i += 6
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 > len(line) || line[i] != '\\' || line[i+1] != 'u' {
				return true
			}
			if r2 := rune(hex4(line[i+2 : i+6])); r2 < 0xDC00 || r2 > 0xDFFF {
				return true
			}
			i += 6
		}
		if i >= len(line) {
			return false
		}
	}
}

func dupKeyMsg(key string) string {
	return fmt.Sprintf("%q appears twice in this object: JSON loaders keep only the last one, so the trainer would not see what was checked", key)
}

// noteForeignKey remembers keys of other dataset formats, to point at `loractl data convert`.
func (c *lineChecker) noteForeignKey(k string) {
	switch k {
	case "instruction", "output":
		c.hint = "Alpaca (instruction/input/output)"
	case "conversations":
		c.hint = "ShareGPT (conversations/from/value)"
	case "prompt", "completion":
		c.hint = "prompt/completion"
	case "text":
		if c.hint == "" {
			c.hint = "plain text"
		}
	}
}

func (c *lineChecker) messages() bool {
	s := &c.s
	if s.peek() != '[' {
		kind := s.kindAt()
		if !s.value(1) {
			return false
		}
		c.msgErrors = true
		c.add(CodeMissingMessages, "messages", fmt.Sprintf("\"messages\" must be an array of message objects, got %s", kind))
		return true
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		c.emptyMsgs = true
		return true
	}
	for k := 0; ; k++ {
		if s.peek() == '{' {
			if !c.message(k) {
				return false
			}
		} else {
			kind := s.kindAt()
			if !s.value(2) {
				return false
			}
			c.msgErrors = true
			c.add(CodeMessageNotObject, msgPath(k, ""), fmt.Sprintf("a message must be an object with \"role\" and \"content\", got %s", kind))
		}
		if !s.arrayNext() {
			return s.err == ""
		}
	}
}

// message walks one message object at index k.
func (c *lineChecker) message(k int) bool {
	s := &c.s
	s.i++ // '{'
	m := message{weight: -1}
	hasRole, hasContent, hasWeight, valid := false, false, false, true
	if s.peek() == '}' {
		s.i++
	} else {
		for {
			key, ok := c.key()
			if !ok {
				return false
			}
			dup := string(key) == "role" && hasRole || string(key) == "content" && hasContent || string(key) == "weight" && hasWeight
			switch {
			case dup:
				valid = false
				c.add(CodeDuplicateKey, msgPath(k, string(key)), dupKeyMsg(string(key)))
				if !s.value(3) {
					return false
				}
			case string(key) == "role":
				hasRole = true
				if s.peek() == '"' {
					v, ok := c.stringValue()
					if !ok {
						return false
					}
					if m.role = parseRole(v); m.role == roleUnknown {
						valid = false
						c.add(CodeUnrecognizedRole, msgPath(k, "role"), fmt.Sprintf("unrecognized role %s (expected system, user, assistant or tool)", clip(v)))
					}
				} else {
					kind := s.kindAt()
					if !s.value(3) {
						return false
					}
					valid = false
					c.add(CodeUnrecognizedRole, msgPath(k, "role"), "role must be a string, got "+kind)
				}
			case string(key) == "content":
				hasContent = true
				if s.peek() == '"' {
					c.lastLone = false
					v, ok := c.stringValue()
					if !ok {
						return false
					}
					m.content, m.hasContent = v, true
					if c.lastLone {
						valid = false
						c.add(CodeInvalidUTF8, msgPath(k, "content"), "an unpaired surrogate escape (\\ud800-\\udfff without its pair) is not a character: Python reads it but cannot encode it, so tokenizing fails")
					}
				} else {
					kind := s.kindAt()
					if !s.value(3) {
						return false
					}
					valid = false
					c.add(CodeContentNotString, msgPath(k, "content"), "content must be a string, got "+kind)
				}
			case string(key) == "weight":
				hasWeight = true
				w, ok := c.weight(k)
				if !ok {
					return false
				}
				if w < 0 {
					valid = false
				}
				m.weight = w
			default:
				if string(key) == "tool_calls" {
					m.toolCalls = true
				}
				if !allowedMessageKeys[string(key)] {
					valid = false
					c.add(CodeMessageUnrecognizedKey, msgPath(k, string(key)), fmt.Sprintf("unrecognized key %s in message (expected role, content, and optionally weight)", clip(key)))
				}
				if !s.value(3) {
					return false
				}
			}
			if !s.objectNext() {
				if s.err != "" {
					return false
				}
				break
			}
		}
	}
	if !hasRole {
		valid = false
		c.add(CodeMessageMissingKey, msgPath(k, ""), "message has no \"role\"")
	}
	if !hasContent {
		valid = false
		c.add(CodeMessageMissingKey, msgPath(k, ""), "message has no \"content\"")
	}
	if !valid {
		c.msgErrors = true
	}
	c.res.msgs = append(c.res.msgs, m)
	return true
}

// weight scans a message weight: 0 or 1. It returns -1 (after recording invalid_weight)
// for any other value, and false only on a syntax error.
func (c *lineChecker) weight(k int) (int8, bool) {
	s := &c.s
	if ch := s.peek(); ch == '-' || '0' <= ch && ch <= '9' {
		num, ok := s.number()
		if !ok {
			return 0, false
		}
		if f, err := strconv.ParseFloat(string(num), 64); err == nil && (f == 0 || f == 1) {
			return int8(f), true
		}
		c.add(CodeInvalidWeight, msgPath(k, "weight"), fmt.Sprintf("weight must be 0 or 1, got %s", num))
		return -1, true
	}
	kind := s.kindAt()
	if !s.value(3) {
		return 0, false
	}
	c.add(CodeInvalidWeight, msgPath(k, "weight"), "weight must be the number 0 or 1, got "+kind)
	return -1, true
}

// semantics runs the example-level checks on a syntactically valid line.
func (c *lineChecker) semantics() {
	if !c.sawMessages {
		msg := "no \"messages\" key: each line must be {\"messages\": [{\"role\": ..., \"content\": ...}, ...]}"
		if c.hint != "" {
			msg = fmt.Sprintf("no \"messages\" key; this looks like %s: convert it with `loractl data convert`", c.hint)
		}
		c.add(CodeMissingMessages, "", msg)
		return
	}
	if c.emptyMsgs {
		c.add(CodeEmptyMessages, "messages", "\"messages\" is empty")
		return
	}
	msgs := c.res.msgs
	for k, m := range msgs {
		if m.role == roleAssistant && m.hasContent && !m.toolCalls && isBlank(m.content) {
			c.add(CodeEmptyAssistantContent, msgPath(k, "content"), "assistant content is empty: the model would learn to answer with nothing")
		}
	}
	if c.msgErrors {
		// One broken message explains the rest; example-level findings would be noise.
		return
	}
	hasAssistant, trainable := false, false
	consecutive, sysNotFirst, emptyUser := -1, -1, -1
	for k, m := range msgs {
		switch m.role {
		case roleAssistant:
			hasAssistant = true
			if m.weight != 0 {
				trainable = true
			}
		case roleUser:
			if isBlank(m.content) && emptyUser < 0 {
				emptyUser = k
			}
		case roleSystem:
			if k > 0 && sysNotFirst < 0 {
				sysNotFirst = k
			}
		}
		// Several tool results in a row are normal (parallel tool calls).
		if k > 0 && m.role == msgs[k-1].role && m.role != roleTool && consecutive < 0 {
			consecutive = k
		}
	}
	switch {
	case !hasAssistant:
		c.add(CodeMissingAssistantMessage, "messages", "no assistant message: the example has nothing to learn from")
	case !trainable:
		c.add(CodeMissingAssistantMessage, "messages", "every assistant message has weight 0: the example has nothing to learn from")
	}
	if last := len(msgs) - 1; msgs[last].role != roleAssistant {
		c.warn(CodeLastMessageNotAssistant, msgPath(last, "role"), "the last message is not an assistant reply")
	}
	if consecutive >= 0 {
		c.warn(CodeConsecutiveSameRole, msgPath(consecutive, "role"), "two consecutive "+roleNames[msgs[consecutive].role]+" messages")
	}
	if sysNotFirst >= 0 {
		c.warn(CodeSystemNotFirst, msgPath(sysNotFirst, "role"), "a system message after the first position")
	}
	if emptyUser >= 0 {
		c.warn(CodeEmptyUserContent, msgPath(emptyUser, "content"), "empty user content")
	}
	if len(c.res.errors) > 0 {
		// A rejected example is left out of everything dataset-level, warnings included.
		c.res.warnings = c.res.warnings[:0]
	}
}

func msgPath(k int, key string) string {
	switch {
	case key == "":
		return "messages[" + strconv.Itoa(k) + "]"
	case isIdent(key):
		return "messages[" + strconv.Itoa(k) + "]." + key
	default:
		return "messages[" + strconv.Itoa(k) + "][" + strconv.Quote(key) + "]"
	}
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return false
		}
	}
	return true
}

// clip quotes a user value for a message, shortened so a 1 MB value cannot flood the report.
func clip(b []byte) string {
	const max = 40
	if len(b) <= max {
		return strconv.Quote(string(b))
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return strconv.Quote(string(b[:cut])) + "…"
}

// isBlank reports whether b holds nothing but whitespace (as normalisation defines it).
func isBlank(b []byte) bool {
	for _, c := range b {
		if spaceBit[c] == 0 {
			return false
		}
	}
	return true
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}
