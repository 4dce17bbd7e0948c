package runner

import (
	"os"
	"path/filepath"
	"sync"

	"github.com/loractl/loractl/python"
	"github.com/loractl/loractl/run"
)

// trainerComplete marks a trainer dir whose files are all written.
const trainerComplete = ".complete"

// trainerDir is the trainer dir of the store that holds run dir dir.
func trainerDir(runDir string, p *Prepared) string {
	return run.TrainerDir(filepath.Dir(runDir), p.Trainer.SHA256)
}

// installed remembers trainer dirs this process has checked, so a sweep checks once.
var installed sync.Map

// ensureTrainer writes the embedded trainer files into dir unless they are there. It
// builds them in a temp dir and renames it into place, so concurrent controllers (a
// sweep's parallel points, two shells) never see a half-written trainer.
func ensureTrainer(dir string) error { return ensureFiles(dir, python.TrainerFiles) }

// ensureFiles writes the named embedded files into dir unless they are there.
func ensureFiles(dir string, names []string) error {
	if _, ok := installed.Load(dir); ok {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, trainerComplete)); err == nil {
		installed.Store(dir, true)
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, name := range names {
		b, err := python.Read(name)
		if err != nil {
			return err
		}
		if err := run.WriteFileAtomic(filepath.Join(tmp, name), b, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, trainerComplete), nil, 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another controller installed it first: theirs is the same content.
		if _, statErr := os.Stat(filepath.Join(dir, trainerComplete)); statErr != nil {
			return err
		}
	}
	installed.Store(dir, true)
	return nil
}
