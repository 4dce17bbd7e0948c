package schema

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/internal/cmdtest"
)

func TestSchemaCommand(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		resolved bool
		file     bool
	}{
		{"config to stdout", nil, false, false},
		{"resolved to stdout", []string{"--resolved"}, true, false},
		{"config to a file", []string{"-o", "FILE"}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, out, _ := cmdtest.Factory(t, nil)
			path := filepath.Join(t.TempDir(), "loractl.schema.json")
			args := append([]string(nil), tt.args...)
			for i, a := range args {
				if a == "FILE" {
					args[i] = path
				}
			}
			cmd := NewCmdSchema(f, nil)
			cmd.SetArgs(args)
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			got := out.Bytes()
			if tt.file {
				var err error
				if got, err = os.ReadFile(path); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, config.SchemaJSON(tt.resolved)) {
				t.Fatalf("printed %d bytes that are not the generated schema", len(got))
			}
			var s map[string]any
			if err := json.Unmarshal(got, &s); err != nil || s["$schema"] != config.SchemaDraft || s["additionalProperties"] != false {
				t.Fatalf("not a closed draft 2020-12 schema: %v %v", err, s["$schema"])
			}
		})
	}
}
