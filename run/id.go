// Package run is the run store: run ids, run directories, the manifest, the lock
// that keeps two controllers off one run, checkpoints and the event stream.
package run

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// ID derives a run id from the resolved trainer config and the content hashes of its
// data: the same config and data always give the same id, wherever the files live.
// resolvedJSON must be the canonical resolved.json bytes.
func ID(name string, resolvedJSON []byte, dataHashes []string) (string, error) {
	// Paths are replaced by content: moving the data does not change the run.
	var doc map[string]any
	if err := json.Unmarshal(resolvedJSON, &doc); err != nil {
		return "", fmt.Errorf("run id: %w", err)
	}
	if d, ok := doc["data"].(map[string]any); ok {
		delete(d, "train")
		delete(d, "eval")
	}
	canon, err := json.Marshal(doc) // map keys marshal sorted: canonical
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(canon)
	for _, dh := range dataHashes {
		h.Write([]byte{0})
		h.Write([]byte(dh))
	}
	return name + "-" + hex.EncodeToString(h.Sum(nil))[:10], nil
}

// HashFile returns the hex SHA-256 and size of a file.
func HashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// HashBytes returns the hex SHA-256 of b.
func HashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
