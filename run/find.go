package run

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// ErrAmbiguousRun means a run id prefix matches more than one run.
var ErrAmbiguousRun = errors.New("ambiguous run id prefix")

// Resolve returns the id of the run ref names: a run id, or a prefix of exactly one
// run's id (the hex suffix is tedious to type). A ref that matches nothing wraps
// ErrNoRun; one that matches several wraps ErrAmbiguousRun and lists them.
func (s *Store) Resolve(ref string) (string, error) {
	if !validID(ref) {
		return "", fmt.Errorf("%q: %w", ref, ErrNoRun)
	}
	if _, err := os.Stat(s.Dir(ref) + string(os.PathSeparator) + ManifestFile); err == nil {
		return ref, nil
	}
	entries, err := os.ReadDir(s.Base)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	var matches []string
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || strings.HasPrefix(name, ".") || !strings.HasPrefix(name, ref) {
			continue
		}
		if _, err := os.Stat(s.Dir(name) + string(os.PathSeparator) + ManifestFile); err == nil {
			matches = append(matches, name)
		}
	}
	sort.Strings(matches)
	switch len(matches) {
	case 0:
		return "", fmt.Errorf("%q in %s: %w", ref, s.Base, ErrNoRun)
	case 1:
		return matches[0], nil
	}
	shown := matches[:min(len(matches), 5)]
	more := ""
	if len(matches) > len(shown) {
		more = fmt.Sprintf(", and %d more", len(matches)-len(shown))
	}
	return "", fmt.Errorf("%q matches %d runs (%s%s): %w", ref, len(matches), strings.Join(shown, ", "), more, ErrAmbiguousRun)
}
