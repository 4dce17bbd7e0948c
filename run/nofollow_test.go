package run

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Run files are never followed through links, and a FIFO where a file should be is
// refused at once instead of hanging the reader.
func TestRunFilesRefuseLinksAndFIFOs(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := func(name string) {
		t.Helper()
		if err := os.Symlink(victim, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	link(EventsFile)
	link(ManifestFile)
	link(lockFile)
	fifo := filepath.Join(t.TempDir(), "events.jsonl")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		op   func() error
		want string
	}{
		{"append an event", func() error { return AppendEvent(filepath.Join(dir, EventsFile), map[string]string{"type": "gpu"}) }, "symbolic link"},
		{"read events", func() error { _, err := ReadEvents(filepath.Join(dir, EventsFile)); return err }, "symbolic link"},
		{"follow events", func() error { _, err := NewFollower(filepath.Join(dir, EventsFile)).Poll(); return err }, "symbolic link"},
		{"read the manifest", func() error { _, err := ReadManifest(dir); return err }, "symbolic link"},
		{"lock", func() error { _, err := LockDir(dir); return err }, "lock"},
		{"events file is a FIFO", func() error { _, err := ReadEvents(fifo); return err }, "not a regular file"},
		{"follow a FIFO", func() error { _, err := NewFollower(fifo).Poll(); return err }, "not a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { done <- tc.op() }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err %v, want %q", err, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("hung")
			}
		})
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep\n" {
		t.Errorf("the link's target changed: %q", b)
	}
	if _, err := ReadManifest(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing manifest: %v, want ErrNotExist", err)
	}
}
