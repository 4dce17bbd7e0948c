package run

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/gofrs/flock"
)

// Names of the files in a run directory (docs/run-dir.md).
const (
	ConfigFile     = "config.yaml"
	ResolvedFile   = "resolved.json"
	ManifestFile   = "manifest.json"
	EventsFile     = "events.jsonl"
	LogFile        = "train.log"
	CheckpointsDir = "checkpoints"
	AdapterDir     = "adapter"
	TrainerFile    = "train_lora.py"
	lockFile       = ".lock"
)

// TrainerDir is where the trainer scripts whose content hash is sum live, once per
// run store: every run executes the trainer from there instead of from a copy of its
// own (a 1,000-point sweep would otherwise write 2,000 identical files). The directory
// is named by content, so a run's manifest hash still names the exact code it ran.
func TrainerDir(base, sum string) string { return filepath.Join(base, ".trainer", sum[:16]) }

// BaseEvalCacheEnv names, for the trainer, the directory of the base model's evaluation
// cache (python/eval_cache.py); unset, every run evaluates the base model itself.
const BaseEvalCacheEnv = "LORACTL_BASE_EVAL_CACHE"

// BaseEvalCacheDir is that directory in the store at base: shared by its runs, safe to
// delete at any time (it is only ever a shortcut).
func BaseEvalCacheDir(base string) string { return filepath.Join(base, ".cache", "base-eval") }

// EnvRunsDir overrides the default run store location.
const EnvRunsDir = "LORACTL_RUNS_DIR"

// DefaultBase is the run store's base directory: $LORACTL_RUNS_DIR or ./runs.
func DefaultBase() string {
	if d := os.Getenv(EnvRunsDir); d != "" {
		return d
	}
	return "runs"
}

// Store is a directory of run directories, one per run id.
type Store struct {
	Base string
}

// NewStore returns the store rooted at base (made absolute: run dirs are handed to
// containers and cluster nodes that do not share our working directory).
func NewStore(base string) (*Store, error) {
	abs, err := filepath.Abs(base)
	if err != nil {
		return nil, err
	}
	return &Store{Base: abs}, nil
}

// Dir is the run directory of id.
func (s *Store) Dir(id string) string { return filepath.Join(s.Base, id) }

// ErrNoRun means no run with that id exists in the store.
var ErrNoRun = errors.New("no such run")

// Manifest loads the manifest of run id.
func (s *Store) Manifest(id string) (*Manifest, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%q: %w", id, ErrNoRun)
	}
	m, err := ReadManifest(s.Dir(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%q in %s: %w", id, s.Base, ErrNoRun)
	}
	return m, err
}

// ErrAmbiguousRun is what an *AmbiguousError matches with errors.Is.
var ErrAmbiguousRun = errors.New("ambiguous run id prefix")

// AmbiguousError means a run-id prefix matches several runs.
type AmbiguousError struct {
	Prefix  string
	Matches []string
}

func (e *AmbiguousError) Error() string {
	shown := e.Matches
	more := ""
	if len(shown) > 10 {
		shown, more = shown[:10], fmt.Sprintf(" and %d more", len(e.Matches)-10)
	}
	return fmt.Sprintf("%q matches %d runs: %s%s; give more of the run id", e.Prefix, len(e.Matches), strings.Join(shown, ", "), more)
}

// Unwrap makes errors.Is(err, ErrAmbiguousRun) hold.
func (e *AmbiguousError) Unwrap() error { return ErrAmbiguousRun }

// Resolve turns what a user typed for a run (a whole run id or a unique prefix of
// one) into the run id. A whole id always wins, even when it is also the prefix of
// another id; several matches are an *AmbiguousError listing them; none is ErrNoRun.
// Code that knows exact ids (sweeps, the runner) uses them directly, not this.
func (s *Store) Resolve(ref string) (string, error) {
	if !validID(ref) {
		return "", fmt.Errorf("%q: %w", ref, ErrNoRun)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(ref), ManifestFile)); err == nil {
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
		if _, err := os.Stat(filepath.Join(s.Dir(name), ManifestFile)); err == nil {
			matches = append(matches, name)
		}
	}
	switch len(matches) {
	case 0:
		return "", fmt.Errorf("%q in %s: %w", ref, s.Base, ErrNoRun)
	case 1:
		return matches[0], nil
	}
	sort.Strings(matches)
	return "", &AmbiguousError{Prefix: ref, Matches: matches}
}

// List returns the manifests of every run in the store, newest first. Directories
// without a readable manifest are skipped (Scan reports them).
func (s *Store) List() ([]*Manifest, error) {
	ms, _, err := s.Scan()
	return ms, err
}

// Scan is List that also returns, by run dir name, the runs whose manifest exists but
// cannot be read: a user must hear of a run that vanished from the list. Dot-dirs
// (.trainer, .superseded) and dirs without a manifest yet are not runs.
func (s *Store) Scan() (ms []*Manifest, unreadable map[string]error, err error) {
	entries, err := os.ReadDir(s.Base)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		m, err := ReadManifest(s.Dir(e.Name()))
		switch {
		case err == nil:
			ms = append(ms, m)
		case !errors.Is(err, os.ErrNotExist):
			if unreadable == nil {
				unreadable = map[string]error{}
			}
			unreadable[e.Name()] = err
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].CreatedAt.After(ms[j].CreatedAt) })
	return ms, unreadable, nil
}

// validID rejects ids that could escape the store ("../x", "a/b").
func validID(id string) bool {
	return id != "" && id != "." && id != ".." && filepath.Base(id) == id
}

// Lock is held by the one controller that drives a run directory.
type Lock struct{ fl *flock.Flock }

// ErrLocked means another controller is driving the run.
var ErrLocked = errors.New("run is being driven by another loractl process")

// LockDir takes the run directory's lock without waiting.
func LockDir(dir string) (*Lock, error) {
	// O_NOFOLLOW: a .lock planted as a link must not make us create or lock another file.
	fl := flock.New(filepath.Join(dir, lockFile), flock.SetFlag(os.O_CREATE|os.O_RDONLY|syscall.O_NOFOLLOW))
	ok, err := fl.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if !ok {
		return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
	}
	return &Lock{fl: fl}, nil
}

// Unlock releases the lock.
func (l *Lock) Unlock() error { return l.fl.Unlock() }
