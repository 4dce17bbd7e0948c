package openaiimport

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// TestConvertRow covers each documented OpenAI row shape: what is converted, what passes
// through byte for byte, and what is recognised as another format.
func TestConvertRow(t *testing.T) {
	tests := []struct {
		name string
		in   string
		kind rowKind
		// want is the converted row (compact JSON), or "" for "byte for byte as given".
		want   string
		counts Counts
		what   string
	}{
		{name: "plain chat with weights passes through",
			in:     `{"messages": [{"role": "user", "content": "hi <b>"}, {"role": "assistant", "content": "draft", "weight": 0}, {"role": "user", "content": "again"}, {"role": "assistant", "content": "ok", "weight": 1}]}`,
			kind:   rowChat,
			counts: Counts{Unchanged: 1, Weight0Turns: 1}},
		{name: "tool call with null content and string arguments",
			in:     `{"messages":[{"role":"user","content":"w?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get","arguments":"{\"city\": \"Oslo\", \"n\": 1.50}"}}]},{"role":"tool","tool_call_id":"c1","content":"rain"},{"role":"assistant","content":"Rain."}],"tools":[{"type":"function","function":{"name":"get"}}],"parallel_tool_calls":false}`,
			kind:   rowChat,
			want:   `{"messages":[{"role":"user","content":"w?"},{"role":"assistant","content":"","tool_calls":[{"id":"c1","type":"function","function":{"name":"get","arguments":{"city":"Oslo","n":1.50}}}]},{"role":"tool","tool_call_id":"c1","content":"rain"},{"role":"assistant","content":"Rain."}],"tools":[{"type":"function","function":{"name":"get"}}],"parallel_tool_calls":false}`,
			counts: Counts{Tools: 1, ToolCalls: 1, ArgumentsDecoded: 1, ParallelToolCalls: 1, NullContent: 1}},
		{name: "tool call without content, arguments not an object stay a string",
			in:     `{"messages":[{"role":"user","content":"w?"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"get","arguments":"not json"}}]},{"role":"tool","tool_call_id":"c1","content":"x"},{"role":"assistant","content":"X."}]}`,
			kind:   rowChat,
			want:   `{"messages":[{"role":"user","content":"w?"},{"role":"assistant","content":"","tool_calls":[{"id":"c1","type":"function","function":{"name":"get","arguments":"not json"}}]},{"role":"tool","tool_call_id":"c1","content":"x"},{"role":"assistant","content":"X."}]}`,
			counts: Counts{ToolCalls: 1, NullContent: 1}},
		{name: "legacy functions and function_call become tools and tool_calls",
			in:     `{"messages":[{"role":"user","content":"w?"},{"role":"assistant","function_call":{"name":"get","arguments":"{\"city\":\"Oslo\"}"}},{"role":"function","name":"get","content":"rain"},{"role":"assistant","content":"Rain."}],"functions":[{"name":"get","parameters":{"type":"object"}}]}`,
			kind:   rowChat,
			want:   `{"messages":[{"role":"user","content":"w?"},{"role":"assistant","content":"","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get","arguments":{"city":"Oslo"}}}]},{"role":"tool","tool_call_id":"call_1","name":"get","content":"rain"},{"role":"assistant","content":"Rain."}],"tools":[{"type":"function","function":{"name":"get","parameters":{"type":"object"}}}]}`,
			counts: Counts{LegacyFunctions: 1, Tools: 1, ToolCalls: 1, ArgumentsDecoded: 1, NullContent: 1}},
		{name: "text parts are joined",
			in:     `{"messages":[{"role":"user","content":[{"type":"text","text":"a "},{"type":"text","text":"b"}]},{"role":"assistant","content":"c"}]}`,
			kind:   rowChat,
			want:   `{"messages":[{"role":"user","content":"a b"},{"role":"assistant","content":"c"}]}`,
			counts: Counts{TextParts: 1}},
		{name: "broken chat row passes through for the data check",
			in:     `{"messages": "nope"}`,
			kind:   rowChat,
			counts: Counts{Unchanged: 1}},
		{name: "not JSON passes through for the data check",
			in:     `{"messages": [`,
			kind:   rowChat,
			counts: Counts{Unchanged: 1}},
		{name: "image part",
			in:   `{"messages":[{"role":"user","content":[{"type":"text","text":"what?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},{"role":"assistant","content":"a cat"}]}`,
			kind: rowImage, what: "image_url"},
		{name: "preference row",
			in:   `{"input":{"messages":[{"role":"user","content":"q"}]},"preferred_output":[{"role":"assistant","content":"good"}],"non_preferred_output":[{"role":"assistant","content":"bad"}]}`,
			kind: rowPreference},
		{name: "preference row with an image is an image row",
			in:   `{"input":{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]},"preferred_output":[{"role":"assistant","content":"good"}],"non_preferred_output":[{"role":"assistant","content":"bad"}]}`,
			kind: rowImage, what: "image_url"},
		{name: "legacy prompt/completion", in: `{"prompt":"a","completion":"b"}`, kind: rowForeign, what: "prompt/completion"},
		{name: "alpaca", in: `{"instruction":"a","input":"","output":"b"}`, kind: rowForeign, what: "Alpaca"},
		{name: "sharegpt", in: `{"conversations":[{"from":"human","value":"a"}]}`, kind: rowForeign, what: "ShareGPT"},
		{name: "other object", in: `{"question":"a","answer":"b"}`, kind: rowForeign, what: "keys question, answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := convertRow([]byte(tt.in))
			if r.kind != tt.kind {
				t.Fatalf("kind %d, want %d (what %q)", r.kind, tt.kind, r.what)
			}
			if tt.what != "" && !strings.Contains(r.what, tt.what) {
				t.Errorf("what %q, want it to mention %q", r.what, tt.what)
			}
			if tt.kind != rowChat {
				return
			}
			want := tt.want
			if want == "" {
				want = tt.in
			}
			if string(r.out) != want {
				t.Errorf("out\n got %s\nwant %s", r.out, want)
			}
			if !reflect.DeepEqual(r.changes, tt.counts) {
				t.Errorf("counts %+v, want %+v", r.changes, tt.counts)
			}
			if tt.want != "" && !json.Valid(r.out) {
				t.Errorf("output is not JSON: %s", r.out)
			}
		})
	}
}

func TestReadLine(t *testing.T) {
	// Lines end at "\n" only; a CR before it goes; a line over the limit is an error.
	f := strings.NewReader("a\r\nb\rc\n\nlast")
	r := newTestReader(f)
	var got []string
	for {
		l, err := readLine(r, 100)
		if l == nil && err != nil {
			break
		}
		got = append(got, string(l))
	}
	if strings.Join(got, "|") != "a|b\rc||last" {
		t.Errorf("lines %q", got)
	}
	if _, err := readLine(newTestReader(strings.NewReader(strings.Repeat("x", 200)+"\n")), 100); err != errLineTooLong {
		t.Errorf("long line: %v", err)
	}
}

// TestConvertRowDeepNesting: a hostile line nested thousands of levels deep passes through
// unchanged, for the data check to reject (its nesting limit is 512). The content-part walk
// stops at maxPartDepth, so this costs linear time.
func TestConvertRowDeepNesting(t *testing.T) {
	const depth = 9000
	line := `{"messages":[{"role":"user","content":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}]}`
	if r := convertRow([]byte(line)); r.kind != rowChat || string(r.out) != line {
		t.Errorf("kind %d, output changed: %v", r.kind, string(r.out) != line)
	}
}
