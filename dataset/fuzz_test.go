package dataset

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// longDigitRun reports a run of more than maxIntDigits digits anywhere in line.
func longDigitRun(line []byte) bool {
	run := 0
	for _, c := range line {
		if '0' <= c && c <= '9' {
			if run++; run > maxIntDigits {
				return true
			}
		} else {
			run = 0
		}
	}
	return false
}

// FuzzCheckLine feeds arbitrary lines to the line checker. Besides never panicking, it
// must agree with encoding/json on what is valid JSON, and decode contents exactly as
// encoding/json does. The seed corpus of bad lines is in testdata/fuzz/FuzzCheckLine.
//
//	go test ./dataset -run '^$' -fuzz FuzzCheckLine -fuzztime 60s
func FuzzCheckLine(f *testing.F) {
	f.Add([]byte(msgs(sys, u, a)))
	f.Add([]byte(msgs(u, `{"role": "assistant", "content": "x", "weight": 0}`, a)))
	var c lineChecker
	var fb factBuilder
	f.Fuzz(func(t *testing.T, line []byte) {
		if bytes.IndexByte(line, '\n') >= 0 || isBlank(line) {
			return // the reader never passes these
		}
		res := c.check(line)
		syntaxOK := true
		for _, e := range res.errors {
			if e.code == CodeInvalidJSON {
				syntaxOK = false
			}
			if e.code == "" || e.msg == "" {
				t.Fatalf("empty error %+v", e)
			}
			if strings.HasPrefix(e.code, "message_") && !strings.HasPrefix(e.path, "messages[") {
				t.Fatalf("%s without a message path: %+v", e.code, e)
			}
		}
		deep := bytes.Count(line, []byte("["))+bytes.Count(line, []byte("{")) > maxDepth
		// Integers Python cannot read are refused though encoding/json reads them.
		longInt := longDigitRun(line)
		if utf8.Valid(line) && !deep && !longInt && syntaxOK != json.Valid(line) {
			t.Fatalf("syntax verdict %v, encoding/json says %v: %+v", syntaxOK, json.Valid(line), res.errors)
		}
		if len(res.errors) > 0 {
			return
		}
		var row struct {
			Messages []struct {
				Content string `json:"content"`
			} `json:"messages"`
		}
		if err := json.Unmarshal(line, &row); err != nil {
			t.Fatalf("accepted a line encoding/json rejects: %v", err)
		}
		if len(row.Messages) != len(res.msgs) {
			t.Fatalf("%d messages, encoding/json sees %d", len(res.msgs), len(row.Messages))
		}
		for i, m := range res.msgs {
			if string(m.content) != row.Messages[i].Content {
				t.Fatalf("message %d content %q, encoding/json decodes %q", i, m.content, row.Messages[i].Content)
			}
		}
		f := fb.build(res.msgs, 16)
		if f.estKept > f.estAssistant || f.estTotal <= 0 || f.messages != len(res.msgs) {
			t.Fatalf("facts %+v", f)
		}
	})
}
