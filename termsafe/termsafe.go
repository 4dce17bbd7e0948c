// Package termsafe makes text read from run files safe to print on a terminal.
//
// A run's files (events.jsonl, train.log, manifest.json) hold text that a trainer, a
// dataset or a remote node wrote: an escape sequence in it would be obeyed by the
// terminal of whoever runs `loractl logs` (clear the screen, set the title, rewrite
// what is shown, and with some terminals worse). Every control character is shown
// escaped instead: C0 (but newline and tab where a text may span lines), DEL, C1
// (U+0080–U+009F, which 8-bit terminals treat as CSI and friends), the bidirectional
// overrides that reorder what is displayed, and bytes that are not UTF-8.
package termsafe

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// unsafe reports whether r must be shown escaped; newline and tab are decided by the caller.
func unsafe(r rune) bool {
	switch {
	case r < 0x20 || r == 0x7f:
		return true
	case r >= 0x80 && r <= 0x9f:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return true
	}
	return false
}

func escapeRune(b *strings.Builder, r rune) {
	if r < 0x80 {
		fmt.Fprintf(b, `\x%02x`, r)
		return
	}
	fmt.Fprintf(b, `\u%04x`, r)
}

func clean(s string, keepNewlines bool) string {
	ok := true
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || (unsafe(r) && !(keepNewlines && (r == '\n' || r == '\t'))) {
			ok = false
			break
		}
		i += n
	}
	if ok {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case keepNewlines && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case unsafe(r):
			escapeRune(&b, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// Text escapes every control character in s but newline and tab.
func Text(s string) string { return clean(s, true) }

// Line escapes every control character in s, newline and tab included: for one cell
// of a table or one field of a line.
func Line(s string) string { return clean(s, false) }

// JSON makes one JSON text safe to print: raw C1 and bidi characters and DEL (legal
// unescaped inside JSON strings) become \u escapes, which decode to the same value,
// and bytes that are not UTF-8 become \ufffd. A valid JSON text stays valid and equal.
func JSON(b []byte) []byte {
	s := string(b)
	var out strings.Builder
	changed := false
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			out.WriteString(`\ufffd`)
			changed = true
		case r == '\r':
			// Only legal between tokens, as white space: a space means the same.
			out.WriteByte(' ')
			changed = true
		case unsafe(r) && r >= 0x7f:
			fmt.Fprintf(&out, `\u%04x`, r)
			changed = true
		case r < 0x20 && r != '\n' && r != '\t':
			// Not legal raw inside a JSON string; escape anyway so nothing reaches the terminal.
			fmt.Fprintf(&out, `\u%04x`, r)
			changed = true
		default:
			out.WriteString(s[i : i+n])
		}
		i += n
	}
	if !changed {
		return b
	}
	return []byte(out.String())
}

// Writer returns a writer that passes text to w with Text's escaping. It holds back
// an incomplete UTF-8 sequence at the end of one Write until the next (Flush ends it).
func Writer(w io.Writer) *SafeWriter { return &SafeWriter{w: w} }

// SafeWriter is the writer Writer returns.
type SafeWriter struct {
	w    io.Writer
	held []byte
}

// Write implements io.Writer; it reports len(p) written when w took the escaped text.
func (s *SafeWriter) Write(p []byte) (int, error) {
	data := append(s.held, p...)
	s.held = nil
	// Keep back a trailing partial rune (at most 3 bytes).
	cut := len(data)
	for k := 1; k <= 3 && k <= len(data); k++ {
		c := data[len(data)-k]
		if c < 0x80 {
			break
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRune(data[len(data)-k:]) {
				cut = len(data) - k
			}
			break
		}
	}
	s.held = append([]byte(nil), data[cut:]...)
	if _, err := io.WriteString(s.w, Text(string(data[:cut]))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes out a held partial rune, escaped.
func (s *SafeWriter) Flush() error {
	if len(s.held) == 0 {
		return nil
	}
	_, err := io.WriteString(s.w, Text(string(s.held)))
	s.held = nil
	return err
}
