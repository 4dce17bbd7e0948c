package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

func TestHCLogAdapter(t *testing.T) {
	tests := []struct {
		name  string
		log   func(hclog.Logger)
		level zerolog.Level
		want  map[string]any // fields the entry must hold; nil means no entry
	}{
		{"info with fields", func(l hclog.Logger) { l.Info("task started", "pid", 42, "run_id", "r1") },
			zerolog.DebugLevel, map[string]any{"level": "info", "message": "task started", "pid": 42.0, "run_id": "r1"}},
		{"named and with", func(l hclog.Logger) { l.Named("loractl-driver-exec").With("driver", "exec").Warn("slow") },
			zerolog.DebugLevel, map[string]any{"level": "warn", "plugin": "loractl-driver-exec", "driver": "exec"}},
		{"error values", func(l hclog.Logger) { l.Error("failed", "error", errors.New("boom")) },
			zerolog.DebugLevel, map[string]any{"level": "error", "error": "boom"}},
		{"odd argument count", func(l hclog.Logger) { l.Info("odd", "lonely") },
			zerolog.DebugLevel, map[string]any{"EXTRA_VALUE_AT_END": "lonely"}},
		{"go-plugin's replayed timestamp is dropped", func(l hclog.Logger) { l.Info("x", "timestamp", "2026-01-01") },
			zerolog.DebugLevel, map[string]any{"message": "x"}},
		{"below the level", func(l hclog.Logger) { l.Debug("chatty") }, zerolog.InfoLevel, nil},
		{"trace maps to trace", func(l hclog.Logger) { l.Trace("t") }, zerolog.TraceLevel, map[string]any{"level": "trace"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tc.log(NewHCLogger(zerolog.New(&buf).Level(tc.level)))
			if tc.want == nil {
				if buf.Len() != 0 {
					t.Fatalf("logged %s, want nothing", buf.String())
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("not one JSON entry: %q", buf.String())
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v (entry %s)", k, got[k], v, strings.TrimSpace(buf.String()))
				}
			}
			if _, ok := got["timestamp"]; ok {
				t.Errorf("entry keeps go-plugin's timestamp field: %s", buf.String())
			}
		})
	}
}

func TestHCLogAdapterLevel(t *testing.T) {
	l := NewHCLogger(zerolog.New(nil).Level(zerolog.WarnLevel))
	if l.GetLevel() != hclog.Warn || l.IsInfo() || !l.IsWarn() {
		t.Errorf("level %v, IsInfo %v, IsWarn %v; want warn", l.GetLevel(), l.IsInfo(), l.IsWarn())
	}
	l.SetLevel(hclog.Error)
	if l.GetLevel() != hclog.Error {
		t.Errorf("after SetLevel(Error): %v", l.GetLevel())
	}
	var buf bytes.Buffer
	std := NewHCLogger(zerolog.New(&buf)).StandardLogger(nil)
	std.Println("from the standard library")
	if !strings.Contains(buf.String(), `"message":"from the standard library"`) {
		t.Errorf("standard logger wrote %q", buf.String())
	}
}
