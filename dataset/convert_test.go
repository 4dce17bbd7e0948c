package dataset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestConvert(t *testing.T) {
	tests := []struct {
		name, from, system string
		in                 []string
		want               []string
		errors             []string // line:code:path
	}{
		{
			name: "alpaca", from: FormatAlpaca,
			in: []string{
				`{"instruction": "Translate to French", "input": "cat", "output": "chat"}`,
				`{"instruction": "Say hi & <wave>", "input": "", "output": "hi", "system": "Be kind."}`,
				`{"instruction": "no output"}`,
				`{"instruction": 3, "output": "x"}`,
				`{"conversations": []}`,
			},
			want: []string{
				`{"messages":[{"role":"user","content":"Translate to French\n\ncat"},{"role":"assistant","content":"chat"}]}`,
				`{"messages":[{"role":"system","content":"Be kind."},{"role":"user","content":"Say hi & <wave>"},{"role":"assistant","content":"hi"}]}`,
			},
			errors: []string{"3:missing_field:output", "4:wrong_type:instruction", "5:missing_field:instruction"},
		},
		{
			name: "sharegpt", from: FormatShareGPT,
			in: []string{
				`{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}], "system": "S"}`,
				`{"conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}`,
				`{"conversations": [{"from": "human", "value": "hi"}, {"from": "robot", "value": "beep"}]}`,
				`{"conversations": [{"from": "human"}]}`,
				`{"conversations": []}`,
				`{"conversations": "hi"}`,
			},
			want: []string{
				`{"messages":[{"role":"system","content":"S"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}`,
				`{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}`,
			},
			errors: []string{"3:unrecognized_role:conversations[1].from", "4:missing_field:conversations[0].value", "5:empty_messages:conversations", "6:wrong_type:conversations"},
		},
		{
			name: "prompt/completion", from: FormatPromptCompletion,
			in: []string{
				`{"prompt": "2+2?", "completion": "4"}`,
				`{"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}]}`,
				`{"prompt": "only"}`,
				`{"prompt": 1, "completion": "x"}`,
			},
			want: []string{
				`{"messages":[{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}]}`,
				`{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}`,
			},
			errors: []string{"3:missing_field:completion", "4:wrong_type:prompt"},
		},
		{
			name: "auto detects per line, passes messages through", from: FormatAuto,
			in: []string{
				`{"instruction": "i", "output": "o"}`,
				`{"conversations": [{"from": "human", "value": "h"}, {"from": "gpt", "value": "g"}]}`,
				`{"prompt": "p", "completion": "c"}`,
				`{"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a", "weight": 1}]}`,
				`{"text": "plain"}`,
				`[1]`,
				`{"instruction": "broken`,
				"",
				"caf\xe9",
			},
			want: []string{
				`{"messages":[{"role":"user","content":"i"},{"role":"assistant","content":"o"}]}`,
				`{"messages":[{"role":"user","content":"h"},{"role":"assistant","content":"g"}]}`,
				`{"messages":[{"role":"user","content":"p"},{"role":"assistant","content":"c"}]}`,
				`{"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a", "weight": 1}]}`,
			},
			errors: []string{"5:unknown_format:", "6:not_an_object:", "7:invalid_json:", "9:invalid_utf8:"},
		},
		{
			name: "system prompt replaces the source's", from: FormatAuto, system: "Prod.",
			in: []string{
				`{"instruction": "i", "output": "o", "system": "old"}`,
				`{"messages": [{"role": "system", "content": "old"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a", "weight": 0}, {"role": "assistant", "content": "b"}]}`,
			},
			want: []string{
				`{"messages":[{"role":"system","content":"Prod."},{"role":"user","content":"i"},{"role":"assistant","content":"o"}]}`,
				`{"messages":[{"role":"system","content":"Prod."},{"role":"user","content":"u"},{"role":"assistant","content":"a","weight":0},{"role":"assistant","content":"b"}]}`,
			},
		},
		{
			name: "a new system prompt keeps every other key", from: FormatAuto, system: "Prod <v2>",
			in: []string{
				`{"id": 7, "messages": [{"role": "user", "content": "weather & <city>?"}, {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "c1", "content": "sun"}, {"role": "assistant", "content": "Sunny."}]}`,
			},
			want: []string{
				`{"id":7,"messages":[{"role":"system","content":"Prod <v2>"},{"role":"user","content":"weather & <city>?"},{"role":"assistant","content":"","tool_calls":[{"id":"c1","type":"function","function":{"name":"w","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"sun"},{"role":"assistant","content":"Sunny."}]}`,
			},
		},
		{
			name: "conversational prompt/completion is checked", from: FormatPromptCompletion,
			in: []string{
				`{"prompt": [{"role": "Human", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}]}`,
				`{"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": null}]}`,
				`{"prompt": [{"role": "bot", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}]}`,
				`{"prompt": [], "completion": [{"role": "assistant", "content": "a"}]}`,
			},
			want: []string{
				`{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}`,
			},
			errors: []string{"2:missing_field:completion[0].content", "3:unrecognized_role:prompt[0].role", "4:empty_messages:prompt"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := writeLines(t, "in.jsonl", tt.in)
			var out bytes.Buffer
			res, err := Convert(context.Background(), ConvertOptions{Input: in, From: tt.from, SystemPrompt: tt.system}, &out)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if !slices.Equal(got, tt.want) {
				t.Errorf("output\n got %q\nwant %q", got, tt.want)
			}
			var errs []string
			for _, e := range res.Errors {
				errs = append(errs, fmt.Sprintf("%d:%s:%s", e.Line, e.Code, e.Path))
			}
			if !slices.Equal(errs, tt.errors) || res.ErrorsTotal != len(tt.errors) || res.Converted != len(tt.want) {
				t.Errorf("errors %v (total %d, converted %d), want %v", errs, res.ErrorsTotal, res.Converted, tt.errors)
			}
			// What Convert writes passes the check.
			checked := check(t, Options{Train: writeLines(t, "out.jsonl", got), EvalSplit: 0.1})
			for _, e := range checked.Errors {
				if e.Code != CodeTooFewExamples {
					t.Errorf("converted output fails the check: %+v", e)
				}
			}
		})
	}
}

func TestConvertBadOptions(t *testing.T) {
	in := writeLines(t, "in.jsonl", []string{`{"prompt": "p", "completion": "c"}`})
	if _, err := Convert(context.Background(), ConvertOptions{Input: in, From: "csv"}, &bytes.Buffer{}); !errors.Is(err, ErrInput) {
		t.Errorf("unknown format: %v", err)
	}
	if _, err := Convert(context.Background(), ConvertOptions{Input: t.TempDir()}, &bytes.Buffer{}); !errors.Is(err, ErrInput) {
		t.Errorf("directory: %v", err)
	}
}
