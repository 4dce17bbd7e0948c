package run

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestResolve(t *testing.T) {
	s, _ := NewStore(t.TempDir())
	for _, id := range []string{"qs-aaa111", "qs-aab222", "other-ccc"} {
		os.MkdirAll(s.Dir(id), 0o755)
		if err := WriteManifest(s.Dir(id), &Manifest{RunID: id}); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(s.Base, "qs-no-manifest"), 0o755)
	tests := []struct {
		ref, want string
		err       error
	}{
		{"qs-aaa111", "qs-aaa111", nil},
		{"qs-aaa", "qs-aaa111", nil},
		{"oth", "other-ccc", nil},
		{"qs-aa", "", ErrAmbiguousRun},
		{"qs-no", "", ErrNoRun},
		{"zzz", "", ErrNoRun},
		{"../qs-aaa111", "", ErrNoRun},
		{"", "", ErrNoRun},
	}
	for _, tt := range tests {
		got, err := s.Resolve(tt.ref)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("Resolve(%q) = %q, %v; want %q, %v", tt.ref, got, err, tt.want, tt.err)
		}
	}
}
