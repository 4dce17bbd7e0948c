package openaiimport

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzConvertRow: converting any line never panics, a chat row comes out as valid JSON
// whenever it went in as valid JSON, and a row left unchanged is the input byte for byte.
// Run it with: go test ./openaiimport -run '^$' -fuzz FuzzConvertRow
func FuzzConvertRow(f *testing.F) {
	for _, s := range []string{
		`{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"ok","weight":0}]}`,
		`{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]}],"tools":[{"type":"function","function":{"name":"f"}}],"parallel_tool_calls":false}`,
		`{"messages":[{"role":"assistant","function_call":{"name":"f","arguments":"{}"}},{"role":"function","name":"f","content":"x"}],"functions":[{"name":"f"}]}`,
		`{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"u"}}]}]}`,
		`{"input":{"messages":[]},"preferred_output":[],"non_preferred_output":[]}`,
		`{"prompt":"a","completion":"b"}`, `[1]`, `{"messages":`, `{"messages":[{"role":"user","content":[{"type":"text"}]}]}`,
		`{"messages":[{"role":"assistant","tool_calls":[{"function":{"arguments":"{\"x\": [1, {\"y\": \"\\u003c\"}]}"}}]}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		// The shortcut agrees with a full parse (escaped keys aside: see plainChat).
		if plainChat(line) && !bytes.Contains(line, []byte(`\`)) {
			if p := convertParsed(line); p.kind != rowChat || string(p.out) != string(line) || p.changes.Unchanged != 1 {
				t.Fatalf("plainChat passes a row the full parse converts (kind %d):\n in %s\nout %s", p.kind, line, p.out)
			}
		}
		r := convertRow(line)
		if r.kind != rowChat {
			return
		}
		if r.changes.Unchanged == 1 && string(r.out) != string(line) {
			t.Fatalf("unchanged row rewritten:\n in %s\nout %s", line, r.out)
		}
		if json.Valid(line) && !json.Valid(r.out) {
			t.Fatalf("valid JSON in, invalid out:\n in %s\nout %s", line, r.out)
		}
	})
}
