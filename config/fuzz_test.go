package config

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the config loader. It must never panic, must
// refuse anything over the size cap or nested past MaxDepth before parsing, and must
// report every refusal as a FieldError naming the file. The limits keep each input
// cheap: an input the fuzzer finds slow is a finding.
//
//	go test ./config -run '^$' -fuzz FuzzParse -fuzztime 30s
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"model: ./m\ndata:\n  train: t.jsonl\n",
		"model: ./m\ndata: {train: t.jsonl, eval: e.jsonl}\nlora: {r: 8, target_modules: [q_proj, v_proj]}\n",
		"a: &x [1, 2]\nb: [*x, *x]\n",
		"a: " + strings.Repeat("[", 70),
		"- - - - - x\n",
		"name: \"[[[[\" # {{{{\n",
		"model: m\n---\nmodel: n\n",
		"\xef\xbb\xbfmodel: m\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		_, err := Parse("/cfg/f.yaml", src, nil)
		if err == nil {
			return
		}
		var fe *FieldError
		var es Errors
		if !errors.As(err, &fe) && !errors.As(err, &es) {
			t.Fatalf("error %T is not a FieldError/Errors: %v", err, err)
		}
		if !strings.Contains(err.Error(), "f.yaml") && !strings.Contains(err.Error(), "--set") {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}

// FuzzSetValue: a --set value is guarded like a file and never panics.
func FuzzSetValue(f *testing.F) {
	for _, s := range []string{"1e-4", "[q_proj, v_proj]", "{a: 1}", "1\n---\n2", "@file", strings.Repeat("{", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		_, _ = setValue(raw)
		_ = applySet(map[string]any{}, "train.epochs="+raw)
	})
}
