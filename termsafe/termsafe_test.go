package termsafe

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestEscaping(t *testing.T) {
	cases := []struct {
		name, in, text, line string
	}{
		{"plain", "loss 1.5 — ok ✓", "loss 1.5 — ok ✓", "loss 1.5 — ok ✓"},
		{"clear screen and title", "\x1b[2J\x1b]0;pwned\x07", `\x1b[2J\x1b]0;pwned\x07`, `\x1b[2J\x1b]0;pwned\x07`},
		{"newline and tab", "a\n\tb", "a\n\tb", `a\x0a\x09b`},
		{"carriage return", "shown\rhidden", `shown\x0dhidden`, `shown\x0dhidden`},
		{"C1 CSI", "a\u009b2Jb", `a\u009b2Jb`, `a\u009b2Jb`},
		{"DEL", "a\x7fb", `a\x7fb`, `a\x7fb`},
		{"bidi override", "abc\u202edef", `abc\u202edef`, `abc\u202edef`},
		{"invalid UTF-8", "a\xff\x9bb", `a\xff\x9bb`, `a\xff\x9bb`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Text(tc.in); got != tc.text {
				t.Errorf("Text(%q) = %q, want %q", tc.in, got, tc.text)
			}
			if got := Line(tc.in); got != tc.line {
				t.Errorf("Line(%q) = %q, want %q", tc.in, got, tc.line)
			}
		})
	}
}

func TestJSONKeepsTheValue(t *testing.T) {
	for _, in := range []string{
		`{"type":"warning","message":"\u001b[2J plain"}`,
		"{\"type\":\"warning\",\"message\":\"a\u009b2Jb\u202e\x7f\"}",
		"{\"type\":\"x\",\r\"n\":1}",
	} {
		got := JSON([]byte(in))
		for _, c := range got {
			if c < 0x20 || c == 0x7f {
				t.Errorf("JSON(%q) = %q still has a control byte", in, got)
			}
		}
		if strings.ContainsRune(string(got), 0x9b) || strings.ContainsRune(string(got), 0x202e) {
			t.Errorf("JSON(%q) = %q still has C1/bidi", in, got)
		}
		var a, b any
		if err := json.Unmarshal([]byte(in), &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(got, &b); err != nil {
			t.Fatalf("JSON(%q) = %q no longer parses: %v", in, got, err)
		}
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if !bytes.Equal(ja, jb) {
			t.Errorf("value changed: %s vs %s", ja, jb)
		}
	}
}

func TestWriterSplitsRunesAcrossWrites(t *testing.T) {
	var out bytes.Buffer
	w := Writer(&out)
	in := []byte("é\x1b[31mred ✓\n")
	for i := range in {
		if _, err := w.Write(in[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "é\\x1b[31mred ✓\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
