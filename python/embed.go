// Package python carries the trainer and its helper scripts inside the loractl binary,
// so the binary always launches the exact trainer it was built and tested with. The
// controller writes them (content-hashed) where a container or a Slurm node reads them.
package python

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"regexp"
)

//go:embed *.py requirements.txt
var files embed.FS

// FS is the embedded Python scripts (train_lora.py and its helpers), at the root.
func FS() fs.FS { return files }

// Read returns one embedded script by file name.
func Read(name string) ([]byte, error) { return files.ReadFile(name) }

// Hash returns the hex SHA-256 of one embedded script.
func Hash(name string) (string, error) {
	b, err := files.ReadFile(name)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// RequirementsHash is the short hash that keys the trainer's virtualenv
// (scripts/setup-python.sh computes the same from python/requirements.txt).
func RequirementsHash() string {
	b, _ := files.ReadFile("requirements.txt")
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:12]
}

// TrainerFiles are the scripts a run needs beside it: the trainer and the modules it
// imports (generation.py also serves chat; eval_task.py, which imports them all, is
// installed beside them for on-demand evaluation). The controller copies them into
// every run dir; warm_start.py starts the trainer ahead of its launch (driver/local).
var TrainerFiles = []string{"train_lora.py", "train_lora_support.py", "train_lora_dist.py", "generation.py", "task_metrics.py", "task_eval.py", "eval_cache.py", "resolved_schema.py", "warm_start.py"}

// TrainerHash is the SHA-256 over the trainer files (name and content), recorded in
// the manifest so a run names the exact trainer code it ran.
func TrainerHash() (string, int64, error) {
	h := sha256.New()
	var n int64
	for _, name := range TrainerFiles {
		b, err := files.ReadFile(name)
		if err != nil {
			return "", 0, err
		}
		h.Write([]byte(name))
		h.Write([]byte{0})
		h.Write(b)
		n += int64(len(b))
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// localImport matches an import statement's module name, at any indentation because
// several scripts import lazily inside functions (to keep torch off the start-up path).
var localImport = regexp.MustCompile(`(?m)^\s*(?:from\s+(\w+)\s+import|import\s+(\w+))`)

// WithImports returns names plus every embedded script they import, transitively, in a
// stable order. Each helper is written into a temp dir with only the files it needs; a
// list kept by hand missed a module that a shared one began to import, so the closure
// is computed from the sources instead.
func WithImports(names ...string) []string {
	seen := map[string]bool{}
	var out []string
	var visit func(string)
	visit = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		b, err := files.ReadFile(name)
		if err != nil {
			return // not embedded: a standard or third-party module
		}
		out = append(out, name)
		for _, m := range localImport.FindAllSubmatch(b, -1) {
			mod := string(m[1])
			if mod == "" {
				mod = string(m[2])
			}
			visit(mod + ".py")
		}
	}
	for _, n := range names {
		visit(n)
	}
	return out
}
