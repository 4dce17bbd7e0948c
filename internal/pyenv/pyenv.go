// Package pyenv finds the Python interpreter that runs the trainer.
package pyenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/loractl/loractl/python"
)

// EnvPython names the interpreter explicitly; EnvCache moves the venv cache.
const (
	EnvPython = "LORACTL_PYTHON"
	EnvCache  = "LORACTL_CACHE"
)

// Source says where an interpreter came from, for `loractl doctor`.
type Source string

// Where an interpreter was found, in the order they are tried.
const (
	FromConfig Source = "config (python:)"
	FromEnv    Source = "$" + EnvPython
	FromVenv   Source = "setup venv"
)

// VenvDir is where scripts/setup-python.sh builds the venv for this build's pinned
// requirements: $LORACTL_CACHE (default ~/.cache/loractl)/venv-<hash>.
func VenvDir() string {
	return filepath.Join(CacheDir(), "venv-"+python.RequirementsHash())
}

// CacheDir is loractl's cache: $LORACTL_CACHE, default ~/.cache/loractl.
func CacheDir() string {
	if cache := os.Getenv(EnvCache); cache != "" {
		return cache
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "."
	}
	return filepath.Join(home, ".cache", "loractl")
}

// TokenCacheDir keeps the data check's token counts (see dataset.PythonTokenCounter).
func TokenCacheDir() string { return filepath.Join(CacheDir(), "tokens") }

// ErrNotFound means no interpreter was configured and the setup venv does not exist.
var ErrNotFound = errors.New("no Python environment for the trainer: run scripts/setup-python.sh, or set " + EnvPython)

// Find returns the trainer's interpreter: the config's python:, then $LORACTL_PYTHON,
// then the setup venv.
func Find(configured string) (string, Source, error) {
	if configured != "" {
		return resolve(configured, FromConfig)
	}
	if p := os.Getenv(EnvPython); p != "" {
		return resolve(p, FromEnv)
	}
	venv := VenvDir()
	py := filepath.Join(venv, "bin", "python")
	if _, err := os.Stat(filepath.Join(venv, ".loractl-complete")); err == nil {
		return py, FromVenv, nil
	}
	return "", "", ErrNotFound
}

func resolve(p string, src Source) (string, Source, error) {
	path, err := exec.LookPath(p)
	if err != nil {
		return "", src, fmt.Errorf("python from %s: %w", src, err)
	}
	return path, src, nil
}
