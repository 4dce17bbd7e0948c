package app

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/loractl/loractl/internal/cmdutil"
)

func TestReport(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantCode int
		wantMsg  string
	}{
		{"success", nil, 0, ""},
		{"plain failure", errors.New("boom"), 1, "loractl: boom"},
		{"invalid input", cmdutil.Invalidf("bad flag"), 2, "bad flag"},
		{"reader went away", fmt.Errorf("write /dev/stdout: %w", syscall.EPIPE), 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if got := report(tt.err, &buf); got != tt.wantCode {
				t.Errorf("exit code %d, want %d", got, tt.wantCode)
			}
			if tt.wantMsg == "" && buf.Len() > 0 {
				t.Errorf("printed %q, want nothing", buf.String())
			}
			if tt.wantMsg != "" && !strings.Contains(buf.String(), tt.wantMsg) {
				t.Errorf("printed %q, want it to contain %q", buf.String(), tt.wantMsg)
			}
		})
	}
}

// TestBrokenPipeIsQuiet runs the real command tree with stdout a pipe whose reader has
// gone, the way `loractl runs | head -0` leaves it.
func TestBrokenPipeIsQuiet(t *testing.T) {
	if os.Getenv("LORACTL_APP_HELPER") == "1" {
		os.Exit(Main([]string{"runs", "--runs-dir", os.Getenv("LORACTL_APP_RUNS")}))
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // the reader is gone before anything is written
	cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenPipeIsQuiet$")
	runs := t.TempDir()
	// One run in the store, so `runs` has a table to write.
	if err := os.MkdirAll(runs+"/demo-0123456789", 0o755); err != nil {
		t.Fatal(err)
	}
	manifest := `{"version":1,"run_id":"demo-0123456789","name":"demo","state":"completed","created":"2026-12-01T00:00:00Z"}`
	if err := os.WriteFile(runs+"/demo-0123456789/manifest.json", []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), "LORACTL_APP_HELPER=1", "LORACTL_APP_RUNS="+runs)
	cmd.Stdout = w
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	w.Close()
	if err != nil {
		t.Fatalf("exit: %v (stderr %q)", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "broken pipe") {
		t.Errorf("stderr mentions the broken pipe: %q", stderr.String())
	}
}
