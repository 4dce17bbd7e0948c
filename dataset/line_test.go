package dataset

import (
	"strings"
	"testing"
)

// u and a build messages for test lines.
const (
	u   = `{"role": "user", "content": "What is LoRA?"}`
	a   = `{"role": "assistant", "content": "A low-rank adapter."}`
	sys = `{"role": "system", "content": "You are terse."}`
)

func msgs(m ...string) string { return `{"messages": [` + strings.Join(m, ", ") + `]}` }

func TestLineCheckerErrors(t *testing.T) {
	tests := []struct {
		name, line string
		code, path string // the first error expected
		nErrors    int
		msgHas     string
	}{
		{"not json", `{"messages": [}`, CodeInvalidJSON, "", 1, "invalid character '}' looking for a value at byte 15"},
		{"trailing garbage", msgs(u, a) + ` x`, CodeInvalidJSON, "", 1, "trailing data"},
		{"two objects", msgs(u, a) + msgs(u, a), CodeInvalidJSON, "", 1, "trailing data"},
		{"unterminated string", `{"messages": "abc`, CodeInvalidJSON, "", 1, "unterminated string"},
		{"bad escape", `{"messages": [{"role": "user", "content": "\x"}]}`, CodeInvalidJSON, "", 1, "invalid escape"},
		{"raw control char", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\tb\"}]}", CodeInvalidJSON, "", 1, "control character"},
		{"single quotes", `{'messages': []}`, CodeInvalidJSON, "", 1, "expected a string key"},
		{"NaN", `{"messages": [], "x": NaN}`, CodeInvalidJSON, "", 1, "looking for a value"},
		{"leading zero", `{"x": 01}`, CodeInvalidJSON, "", 1, "after object member"},
		{"too deep", strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1), CodeInvalidJSON, "", 1, "nesting deeper"},
		{"schema errors dropped on syntax error", `{"messages": [{"role": "x"}], oops}`, CodeInvalidJSON, "", 1, ""},
		{"invalid utf8", "{\"messages\": [{\"role\": \"user\", \"content\": \"caf\xe9\"}]}", CodeInvalidUTF8, "", 1, "at byte 47"},
		{"array", `[1, 2]`, CodeNotAnObject, "", 1, "got array"},
		{"string", `"hello"`, CodeNotAnObject, "", 1, "got string"},
		{"number", `42`, CodeNotAnObject, "", 1, "got number"},
		{"missing messages", `{"text": "hi"}`, CodeMissingMessages, "", 1, "plain text"},
		{"alpaca hint", `{"instruction": "a", "input": "", "output": "b"}`, CodeMissingMessages, "", 1, "Alpaca"},
		{"sharegpt hint", `{"conversations": []}`, CodeMissingMessages, "", 1, "ShareGPT"},
		{"messages not array", `{"messages": {"role": "user"}}`, CodeMissingMessages, "messages", 1, "got object"},
		{"empty messages", `{"messages": []}`, CodeEmptyMessages, "messages", 1, ""},
		{"message not object", msgs(u, `"hi"`, a), CodeMessageNotObject, "messages[1]", 1, "got string"},
		{"missing role", msgs(`{"content": "hi"}`, a), CodeMessageMissingKey, "messages[0]", 1, `no "role"`},
		{"missing content", msgs(u, `{"role": "assistant"}`), CodeMessageMissingKey, "messages[1]", 1, `no "content"`},
		{"missing both", msgs(u, `{}`), CodeMessageMissingKey, "messages[1]", 2, ""},
		{"unrecognized key", msgs(u, `{"role": "assistant", "content": "x", "conent": "y"}`), CodeMessageUnrecognizedKey, "messages[1].conent", 1, `"conent"`},
		{"unrecognized odd key", msgs(u, `{"role": "assistant", "content": "x", "a b": 1}`), CodeMessageUnrecognizedKey, `messages[1]["a b"]`, 1, ""},
		{"unrecognized role", msgs(`{"role": "human", "content": "hi"}`, a), CodeUnrecognizedRole, "messages[0].role", 1, `"human"`},
		{"role not string", msgs(`{"role": 1, "content": "hi"}`, a), CodeUnrecognizedRole, "messages[0].role", 1, "got number"},
		{"content not string", msgs(u, `{"role": "assistant", "content": [{"type": "text"}]}`), CodeContentNotString, "messages[1].content", 1, "got array"},
		{"content null", msgs(u, `{"role": "assistant", "content": null}`), CodeContentNotString, "messages[1].content", 1, "got null"},
		{"no assistant", msgs(sys, u), CodeMissingAssistantMessage, "messages", 1, "nothing to learn"},
		{"all weights zero", msgs(u, `{"role": "assistant", "content": "x", "weight": 0}`), CodeMissingAssistantMessage, "messages", 1, "weight 0"},
		{"empty assistant", msgs(u, `{"role": "assistant", "content": " \n "}`), CodeEmptyAssistantContent, "messages[1].content", 1, ""},
		{"messages twice", `{"messages": [` + u + `, ` + a + `], "messages": [` + u + `]}`, CodeDuplicateKey, "messages", 1, "keep only the last"},
		{"content twice", msgs(u, `{"role": "assistant", "content": "x", "content": "y"}`), CodeDuplicateKey, "messages[1].content", 1, "appears twice"},
		{"role twice", msgs(u, `{"role": "assistant", "content": "x", "role": "user"}`), CodeDuplicateKey, "messages[1].role", 1, ""},
		{"weight twice", msgs(u, `{"role": "assistant", "content": "x", "weight": 1, "weight": 0}`), CodeDuplicateKey, "messages[1].weight", 1, ""},
		{"lone surrogate", msgs(u, `{"role": "assistant", "content": "a\ud800b"}`), CodeInvalidUTF8, "messages[1].content", 1, "unpaired surrogate"},
		{"low surrogate first", msgs(u, `{"role": "assistant", "content": "\udc00\ud800"}`), CodeInvalidUTF8, "messages[1].content", 1, ""},
		{"tools not a list", `{"tools": {"name": "f"}, "messages": [` + u + `, ` + a + `]}`, CodeInvalidTools, "tools", 1, "got object"},
		{"tool not an object", `{"tools": [{"type": "function"}, "f"], "messages": [` + u + `, ` + a + `]}`, CodeInvalidTools, "tools[1]", 1, "got string"},
		{"tools twice", `{"tools": [], "tools": [], "messages": [` + u + `, ` + a + `]}`, CodeDuplicateKey, "tools", 1, ""},
		{"surrogate in a tool call", msgs(u, `{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f\udc00"}}]}`), CodeInvalidUTF8, "", 1, "unpaired surrogate"},
		{"surrogate in tools", `{"tools": [{"d": "\ud800x"}], "messages": [` + u + `, ` + a + `]}`, CodeInvalidUTF8, "", 1, ""},
		{"integer Python refuses", `{"id": ` + strings.Repeat("7", 4301) + `, "messages": [` + u + `, ` + a + `]}`, CodeInvalidJSON, "", 1, "more than 4300 digits"},
		{"weight 2", msgs(u, `{"role": "assistant", "content": "x", "weight": 2}`), CodeInvalidWeight, "messages[1].weight", 1, "got 2"},
		{"weight 0.5", msgs(u, `{"role": "assistant", "content": "x", "weight": 0.5}`), CodeInvalidWeight, "messages[1].weight", 1, "0.5"},
		{"weight string", msgs(u, `{"role": "assistant", "content": "x", "weight": "1"}`), CodeInvalidWeight, "messages[1].weight", 1, "got string"},
		{"weight bool", msgs(u, `{"role": "assistant", "content": "x", "weight": true}`), CodeInvalidWeight, "messages[1].weight", 1, "got boolean"},
		{"every error of a line", msgs(`{"role": "bot", "content": 1}`, `7`, `{"role": "assistant", "content": ""}`), CodeUnrecognizedRole, "messages[0].role", 4, ""},
	}
	var c lineChecker
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := c.check([]byte(tt.line))
			if len(res.errors) != tt.nErrors {
				t.Fatalf("got %d errors %+v, want %d", len(res.errors), res.errors, tt.nErrors)
			}
			e := res.errors[0]
			if e.code != tt.code || e.path != tt.path {
				t.Errorf("got %s at %q, want %s at %q (%s)", e.code, e.path, tt.code, tt.path, e.msg)
			}
			if !strings.Contains(e.msg, tt.msgHas) {
				t.Errorf("message %q does not mention %q", e.msg, tt.msgHas)
			}
			if len(res.warnings) != 0 {
				t.Errorf("a rejected line got warnings %+v", res.warnings)
			}
		})
	}
}

func TestLineCheckerValid(t *testing.T) {
	tests := []struct {
		name, line string
		warnings   []string
	}{
		{"plain", msgs(u, a), nil},
		{"system and weights", msgs(sys, u, `{"role": "assistant", "content": "x", "weight": 0}`, u, `{"role": "assistant", "content": "y", "weight": 1.0}`), nil},
		{"tool keys", msgs(u, `{"role": "assistant", "content": "", "tool_calls": [{"id": "1"}], "weight": 0}`, `{"role": "tool", "content": "42", "tool_call_id": "1"}`, `{"role": "tool", "content": "43", "name": "f"}`, a), nil},
		{"long float and a 4300-digit integer", `{"x": 0.` + strings.Repeat("7", 5000) + `, "y": ` + strings.Repeat("7", 4300) + `, "messages": [` + u + `, ` + a + `]}`, nil},
		{"tools and a paired surrogate", `{"tools": [{"type": "function", "function": {"name": "f", "description": "\ud83d\ude00 \\ud800"}}], "messages": [` + u + `, ` + a + `]}`, nil},
		{"escaped key and values", `{"m\u0065ssages": [{"r\u006fle": "us\u0065r", "content": "\ud83d\ude00 \"q\" \\ \/"}, ` + a + `]}`, nil},
		{"other top-level keys", `{"id": 7, "meta": {"a": [1, 2.5e3, -0.1, true, null]}, "messages": [` + u + `, ` + a + `]}`, nil},
		{"whitespace around", "  \t" + msgs(u, a) + " \r", nil},
		{"last not assistant", msgs(u, a, u), []string{CodeLastMessageNotAssistant}},
		{"consecutive roles", msgs(u, u, a), []string{CodeConsecutiveSameRole}},
		{"system not first", msgs(u, sys, a), []string{CodeSystemNotFirst}},
		{"empty user", msgs(`{"role": "user", "content": "  "}`, a), []string{CodeEmptyUserContent}},
		{"several", msgs(u, sys, `{"role": "user", "content": ""}`, a, a, u), []string{CodeLastMessageNotAssistant, CodeConsecutiveSameRole, CodeSystemNotFirst, CodeEmptyUserContent}},
	}
	var c lineChecker
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := c.check([]byte(tt.line))
			if len(res.errors) != 0 {
				t.Fatalf("unexpected errors %+v", res.errors)
			}
			var got []string
			for _, w := range res.warnings {
				got = append(got, w.code)
			}
			if strings.Join(got, ",") != strings.Join(tt.warnings, ",") {
				t.Errorf("warnings %v, want %v", got, tt.warnings)
			}
		})
	}
}

func TestLineCheckerDecodesContent(t *testing.T) {
	var c lineChecker
	res := c.check([]byte(`{"messages": [{"role": "user", "content": "a\nb \u00e9\t\"\ud83d\ude00\" x"}, ` + a + `]}`))
	if len(res.errors) != 0 {
		t.Fatal(res.errors)
	}
	if got, want := string(res.msgs[0].content), "a\nb é\t\"😀\" x"; got != want {
		t.Errorf("content %q, want %q", got, want)
	}
}

func TestAppendNormalized(t *testing.T) {
	tests := []struct {
		in, want string
		words    int
	}{
		{"", "", 0},
		{"   \n\t ", "", 0},
		{"a", "a", 1},
		{"  hello   world \n", "hello world", 2},
		{"one two three four five six seven eight", "one two three four five six seven eight", 8},
		{"long\n\nparagraphs of text\r\nwith windows\vline\fends", "long paragraphs of text with windows line ends", 8},
		{"abcdefgh  ijklmnop", "abcdefgh ijklmnop", 2},
		{"abcdefg  hijklmnop qrstuvw ", "abcdefg hijklmnop qrstuvw", 3},
		{"café  東京\u00a0x", "café 東京\u00a0x", 2}, // only ASCII whitespace is collapsed
	}
	for _, tt := range tests {
		got, words := appendNormalized([]byte("P:"), []byte(tt.in))
		if string(got) != "P:"+tt.want || words != tt.words {
			t.Errorf("%q: got %q (%d words), want %q (%d)", tt.in, got[2:], words, tt.want, tt.words)
		}
	}
}

// TestAppendNormalizedMatchesSimple cross-checks the eight-bytes-at-a-time loop against a
// plain definition on every string of a small alphabet up to length 9.
func TestAppendNormalizedMatchesSimple(t *testing.T) {
	alphabet := []byte("ab \n\t")
	var rec func(prefix []byte)
	count := 0
	rec = func(s []byte) {
		got, words := appendNormalized(nil, s)
		fields := strings.FieldsFunc(string(s), func(r rune) bool { return r < 128 && spaceBit[r] == 1 })
		if string(got) != strings.Join(fields, " ") || words != len(fields) {
			t.Fatalf("%q: got %q/%d, want %q/%d", s, got, words, strings.Join(fields, " "), len(fields))
		}
		count++
		if len(s) == 9 {
			return
		}
		for _, c := range alphabet {
			rec(append(s, c))
		}
	}
	rec(nil)
	if count < 1e5 {
		t.Fatalf("only %d strings tried", count)
	}
}

// TestSystemPositionCounts: the same messages with the system prompt first or last
// are different conversations, not duplicates.
func TestSystemPositionCounts(t *testing.T) {
	hash := func(line string) hashKey {
		var c lineChecker
		res := c.check([]byte(line))
		if len(res.errors) != 0 {
			t.Fatal(res.errors)
		}
		var b factBuilder
		return b.build(res.msgs, 0).full
	}
	first, last := hash(msgs(sys, u, a)), hash(msgs(u, a, sys))
	if first == last {
		t.Error("a leading and a trailing system message hash alike")
	}
	if hash(msgs(sys, u, a)) != first {
		t.Error("the hash is not stable")
	}
}
