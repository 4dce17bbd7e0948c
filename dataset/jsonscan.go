package dataset

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds nesting so that a line of a million '[' cannot exhaust the stack.
// Python's json module refuses nesting at about the same depth (its recursion limit).
const maxDepth = 512

// strSpecial marks the bytes that end a fast run inside a JSON string.
var strSpecial = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'] = true
	t['\\'] = true
	return t
}()

// scanner is a validating JSON scanner over one line. It does not build values: callers
// walk the structure they care about (the messages) and skip everything else, which keeps
// the check allocation-free and several times faster than decoding into maps.
type scanner struct {
	b   []byte
	i   int
	err string // first syntax error, with its byte offset
	// surrogate: some string held a \uD800-\uDFFF escape, paired or not. Noted while
	// validating escapes, so the lone-surrogate check only looks at lines that have one.
	surrogate bool
}

func (s *scanner) reset(b []byte) {
	s.b, s.i, s.err, s.surrogate = b, 0, "", false
}

// fail records the first syntax error and returns false so callers can `return s.fail(...)`.
func (s *scanner) fail(format string, a ...any) bool {
	if s.err == "" {
		s.err = fmt.Sprintf(format, a...) + fmt.Sprintf(" at byte %d", s.i+1)
	}
	return false
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end of the line.
func (s *scanner) peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// expect consumes c (after optional space) or fails.
func (s *scanner) expect(c byte) bool {
	got := s.peek()
	if got != c {
		if got == 0 {
			return s.fail("unexpected end of line, expected %q", c)
		}
		return s.fail("invalid character %s, expected %q", quoteByte(got), c)
	}
	s.i++
	return true
}

// str scans the string starting at s.i (a '"') and returns its raw contents (between the
// quotes, escapes undecoded) and whether it contains escapes.
func (s *scanner) str() (raw []byte, esc, ok bool) {
	b := s.b
	start := s.i + 1
	i := start
	for {
		i = skipPlain(b, i)
		if i >= len(b) {
			s.i = i
			return nil, false, s.fail("unterminated string")
		}
		switch c := b[i]; c {
		case '"':
			s.i = i + 1
			return b[start:i], esc, true
		case '\\':
			esc = true
			if i+1 >= len(b) {
				s.i = i
				return nil, false, s.fail("unterminated string")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex4(b[i+2:i+6]) {
					s.i = i
					return nil, false, s.fail("invalid \\u escape in string")
				}
				if d, n := b[i+2]|0x20, b[i+3]|0x20; d == 'd' && (n >= '8' && n <= '9' || n >= 'a' && n <= 'f') {
					s.surrogate = true
				}
				i += 6
			default:
				s.i = i
				return nil, false, s.fail("invalid escape %s in string", quoteByte(b[i+1]))
			}
		default:
			s.i = i
			return nil, false, s.fail("control character %s in string (escape it)", quoteByte(c))
		}
	}
}

// SWAR constants: eight bytes tested at once.
const (
	lo7s  = 0x7f7f7f7f7f7f7f7f
	highs = 0x8080808080808080
)

// skipPlain returns the index of the first byte at or after i that ends a plain run in a
// string ('"', '\\' or a control character), or len(b). Eight bytes are tested per step:
// string contents are most of every line, so this loop decides the checker's speed.
func skipPlain(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q := x ^ 0x2222222222222222 // zero where '"'
		e := x ^ 0x5c5c5c5c5c5c5c5c // zero where '\\'
		// A byte's high bit ends up clear exactly when it is zero (for q, e) or below
		// 0x20 (for x); no carry crosses a byte.
		keep := ((q & lo7s) + lo7s | q) & ((e & lo7s) + lo7s | e) & ((x & lo7s) + 0x6060606060606060 | x)
		if m := ^keep & highs; m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(b) && !strSpecial[b[i]] {
		i++
	}
	return i
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// number scans a JSON number at s.i and returns its text.
// maxIntDigits is Python's default limit on the digits of an int parsed from text.
const maxIntDigits = 4300

func (s *scanner) number() ([]byte, bool) {
	b, start, i := s.b, s.i, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		s.i = i
		return nil, s.fail("invalid number")
	}
	intEnd := i
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			s.i = i
			return nil, s.fail("invalid number")
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			s.i = i
			return nil, s.fail("invalid number")
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	if i == intEnd && intEnd-start > maxIntDigits {
		// Python reads an integer literal through int(), which refuses this many
		// digits (sys.int_info.default_max_str_digits): the trainer could not load it.
		s.i = start
		return nil, s.fail("an integer of more than %d digits, which Python's JSON reader refuses", maxIntDigits)
	}
	s.i = i
	return b[start:i], true
}

func (s *scanner) literal(word string) bool {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return s.fail("invalid character %s looking for a value", quoteByte(s.b[s.i]))
	}
	s.i += len(word)
	return true
}

// value scans (validates and skips) any JSON value.
func (s *scanner) value(depth int) bool {
	switch c := s.peek(); c {
	case '{':
		if depth >= maxDepth {
			return s.fail("nesting deeper than %d", maxDepth)
		}
		s.i++
		if s.peek() == '}' {
			s.i++
			return true
		}
		for {
			if s.peek() != '"' {
				return s.failKey()
			}
			if _, _, ok := s.str(); !ok {
				return false
			}
			if !s.expect(':') || !s.value(depth+1) {
				return false
			}
			if !s.objectNext() {
				return s.err == ""
			}
		}
	case '[':
		if depth >= maxDepth {
			return s.fail("nesting deeper than %d", maxDepth)
		}
		s.i++
		if s.peek() == ']' {
			s.i++
			return true
		}
		for {
			if !s.value(depth + 1) {
				return false
			}
			if !s.arrayNext() {
				return s.err == ""
			}
		}
	case '"':
		_, _, ok := s.str()
		return ok
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	case 0:
		return s.fail("unexpected end of line, expected a value")
	default:
		if c == '-' || '0' <= c && c <= '9' {
			_, ok := s.number()
			return ok
		}
		return s.fail("invalid character %s looking for a value", quoteByte(c))
	}
}

func (s *scanner) failKey() bool {
	if c := s.peek(); c != 0 {
		return s.fail("invalid character %s, expected a string key", quoteByte(c))
	}
	return s.fail("unexpected end of line, expected a string key")
}

// objectNext consumes ',' (returns true: another member follows) or '}' (returns false).
// On a syntax error it returns false with s.err set.
func (s *scanner) objectNext() bool {
	switch c := s.peek(); c {
	case ',':
		s.i++
		return true
	case '}':
		s.i++
		return false
	case 0:
		return s.fail("unexpected end of line, expected ',' or '}'")
	default:
		return s.fail("invalid character %s after object member, expected ',' or '}'", quoteByte(c))
	}
}

// arrayNext consumes ',' (returns true) or ']' (returns false), like objectNext.
func (s *scanner) arrayNext() bool {
	switch c := s.peek(); c {
	case ',':
		s.i++
		return true
	case ']':
		s.i++
		return false
	case 0:
		return s.fail("unexpected end of line, expected ',' or ']'")
	default:
		return s.fail("invalid character %s after array element, expected ',' or ']'", quoteByte(c))
	}
}

// kindAt names the JSON type of the value starting at s.i, for messages such as
// "content must be a string, got array".
func (s *scanner) kindAt() string {
	switch c := s.peek(); c {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("%q", rune(c))
	}
	return fmt.Sprintf("0x%02x", c)
}

// appendUnescaped appends the decoded form of a raw JSON string body (already validated by
// str) to dst. Decoding never lengthens the text, so a dst with spare capacity ≥ len(raw)
// never reallocates.
func appendUnescaped(dst, raw []byte) ([]byte, bool) {
	lone := false
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			j := bytes.IndexByte(raw[i:], '\\')
			if j < 0 {
				return append(dst, raw[i:]...), lone
			}
			dst = append(dst, raw[i:i+j]...)
			i += j
			continue
		}
		switch raw[i+1] {
		case 'n':
			dst = append(dst, '\n')
		case 't':
			dst = append(dst, '\t')
		case 'r':
			dst = append(dst, '\r')
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'u':
			r := rune(hex4(raw[i+2 : i+6]))
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					if r2 := rune(hex4(raw[i+2 : i+6])); utf16.DecodeRune(r, r2) != utf8.RuneError {
						dst = utf8.AppendRune(dst, utf16.DecodeRune(r, r2))
						i += 6
						continue
					}
				}
				r, lone = utf8.RuneError, true
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, raw[i+1])
		}
		i += 2
	}
	return dst, lone
}

func hex4(b []byte) uint16 {
	var v uint16
	for _, c := range b {
		v <<= 4
		switch {
		case c <= '9':
			v |= uint16(c - '0')
		case c >= 'a':
			v |= uint16(c - 'a' + 10)
		default:
			v |= uint16(c - 'A' + 10)
		}
	}
	return v
}
