package runner

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/python"
	"github.com/loractl/loractl/run"
)

// trainerComplete marks a trainer dir whose files are all written.
const trainerComplete = ".complete"

// notInstalled is checkFiles' answer for a trainer dir that does not exist yet.
const notInstalled = "not installed"

// trainerDir is the trainer dir of the store that holds run dir dir.
func trainerDir(runDir string, p *Prepared) string {
	return run.TrainerDir(filepath.Dir(runDir), p.Trainer.SHA256)
}

// ensureTrainer makes dir hold exactly the binary's embedded trainer files before a
// launch. The dir is named by the files' hash and the manifest records that hash, so
// a copy edited in place would run code the manifest does not name: every file is
// compared with the embedded copy (links refused, no other file allowed beside them,
// since Python imports from the script's directory first), and a copy that differs
// is replaced. notice is non-empty when an existing copy was replaced, saying why.
//
// A fresh copy is built in a temp dir and renamed into place, so concurrent
// controllers (a sweep's parallel points, two shells) never see a half-written one.
func ensureTrainer(dir string) (notice string, err error) {
	return ensureFiles(dir, python.TrainerFiles)
}

// ensureFiles is ensureTrainer for any set of embedded scripts.
func ensureFiles(dir string, names []string) (notice string, err error) {
	problem := checkFiles(dir, names)
	if problem == "" {
		return "", nil
	}
	_, statErr := os.Lstat(dir)
	existed := statErr == nil
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	for _, name := range names {
		b, err := python.Read(name)
		if err != nil {
			return "", err
		}
		if err := run.WriteFileAtomic(filepath.Join(tmp, name), b, 0o644); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, trainerComplete), nil, 0o644); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if existed {
		// Move the damaged copy aside first: rename cannot replace a non-empty dir.
		aside, err := os.MkdirTemp(filepath.Dir(dir), ".replaced-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(aside)
		if err := os.Rename(dir, filepath.Join(aside, "old")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("move the modified trainer copy aside: %w", err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another controller installed it first: accept theirs only if it verifies.
		if p := checkFiles(dir, names); p != "" {
			return "", fmt.Errorf("%w (and the copy there: %s)", err, p)
		}
	}
	if existed {
		notice = fmt.Sprintf("the trainer copy in %s did not match this loractl's (%s): reinstalled it from the copy built into loractl", dir, problem)
	}
	return notice, nil
}

// checkFiles says how dir differs from the embedded files names, or "" when it matches.
func checkFiles(dir string, names []string) string {
	fi, err := os.Lstat(dir)
	if err != nil {
		return notInstalled
	}
	if !fi.IsDir() {
		return "not a directory"
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	want := map[string]bool{trainerComplete: true}
	for _, name := range names {
		want[name] = true
	}
	for _, e := range entries {
		switch {
		case e.Name() == "__pycache__":
			// Bytecode a trainer wrote before PYTHONDONTWRITEBYTECODE was set: a .pyc
			// stamped with the source's size and mtime would run instead of the source.
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return "cannot remove __pycache__: " + err.Error()
			}
		case !want[e.Name()]:
			return fmt.Sprintf("unexpected file %s", e.Name())
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, trainerComplete)); err != nil {
		return "incomplete install"
	}
	for _, name := range names {
		emb, err := python.Read(name)
		if err != nil {
			return err.Error()
		}
		f, err := run.OpenNoFollow(filepath.Join(dir, name))
		if err != nil {
			return fmt.Sprintf("%s: %v", name, err)
		}
		got, err := io.ReadAll(io.LimitReader(f, int64(len(emb))+1))
		f.Close()
		if err != nil {
			return fmt.Sprintf("%s: %v", name, err)
		}
		if !bytes.Equal(got, emb) {
			return fmt.Sprintf("%s was modified", name)
		}
	}
	return ""
}

// WarmStartEnv set to 0 turns Prewarm off: every trainer starts afresh.
const WarmStartEnv = "LORACTL_WARM_START"

// Prewarm starts run p's trainer ahead of its launch when the driver can (a
// driver.Prewarmer: the local one), so that its imports overlap the pre-flight, and
// returns it (nil when it did not), to Drop unless Launch's start took it over. A run
// that resumes or detaches starts afresh, and so does one whose trainer copy in the
// store was edited (Launch reinstalls that, and says so). Warming only saves time: any
// failure here leaves the launch as it would have been.
func Prewarm(store *run.Store, p *Prepared, o LaunchOptions) driver.Warm {
	pw, ok := o.Driver.(driver.Prewarmer)
	if !ok || o.Resume != "" || o.Detach || os.Getenv(WarmStartEnv) == "0" {
		return nil
	}
	dir := store.Dir(p.RunID)
	trainer := trainerDir(dir, p)
	switch checkFiles(trainer, python.TrainerFiles) {
	case "":
	case notInstalled:
		if _, err := ensureTrainer(trainer); err != nil {
			return nil
		}
	default:
		return nil
	}
	w, err := pw.Prewarm(TaskFor(dir, p, o, ""))
	if err != nil || w == nil {
		return nil
	}
	return w
}
