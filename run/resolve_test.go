package run

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestResolve(t *testing.T) {
	s, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"demo-0123456789", "demo-01abcdef01", "other-fedcba9876", "demo"} {
		if err := os.MkdirAll(s.Dir(id), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.Dir(id), ManifestFile), []byte(`{"run_id":"`+id+`"}`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A directory without a manifest is not a run, and dot-dirs never are.
	if err := os.MkdirAll(s.Dir("demo-0199999999"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(s.Dir(".trainer"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ref, want string
		ambiguous bool
		none      bool
	}{
		{ref: "demo-0123456789", want: "demo-0123456789"},
		{ref: "demo-012", want: "demo-0123456789"},
		{ref: "other", want: "other-fedcba9876"},
		{ref: "demo", want: "demo"}, // a whole id wins over being a prefix of others
		{ref: "demo-01", ambiguous: true},
		{ref: "demo-019", none: true},
		{ref: "nope", none: true},
		{ref: ".tr", none: true},
		{ref: "../x", none: true},
		{ref: "", none: true},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := s.Resolve(tt.ref)
			var amb *AmbiguousError
			switch {
			case tt.ambiguous:
				if !errors.As(err, &amb) || len(amb.Matches) != 2 {
					t.Fatalf("got %q, %v; want an ambiguity listing 2 runs", got, err)
				}
			case tt.none:
				if !errors.Is(err, ErrNoRun) {
					t.Fatalf("got %q, %v; want ErrNoRun", got, err)
				}
			case err != nil || got != tt.want:
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
