package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"

	"github.com/loractl/loractl/python"
	"github.com/loractl/loractl/run"
)

// EnsureScripts installs every embedded Python script (the trainer, its modules and the
// tools beside it: eval_task.py) into a content-addressed dir of the run store at base
// and returns the dir. Tools run there import the trainer's modules as siblings.
func EnsureScripts(base string) (string, error) {
	entries, err := fs.Glob(python.FS(), "*.py")
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, name := range entries {
		b, err := python.Read(name)
		if err != nil {
			return "", err
		}
		h.Write([]byte(name))
		h.Write([]byte{0})
		h.Write(b)
	}
	dir := run.TrainerDir(base, hex.EncodeToString(h.Sum(nil)))
	// Verified like the trainer before each use: an edited copy is replaced (the notice
	// of a replacement is the trainer launch's to give; a tool run just gets the right files).
	_, err = ensureFiles(dir, entries)
	return dir, err
}
