// Package python carries the trainer and its helper scripts inside the loractl binary,
// so the binary always launches the exact trainer it was built and tested with. The
// controller writes them (content-hashed) where a container or a Slurm node reads them.
package python

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
)

//go:embed *.py
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
