package dataset

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/loractl/loractl/python"
)

// Token counts are cached because counting starts Python and imports transformers:
// about five seconds before the first example, every time a run is launched with
// the same data. A cache entry is the helper's output, replayed line for line, under
// a key made of everything the counts depend on.

// tokenCacheEntries bounds the cache: the newest entries are kept.
const tokenCacheEntries = 32

// weightExts are model files a tokenizer never reads; they are left out of the key
// so that a multi-gigabyte checkpoint is not hashed to count tokens.
var weightExts = []string{".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".onnx", ".ckpt"}

// tokenCacheKey hashes what the helper's output depends on: the helper itself, the
// interpreter, the tokenizer directory's files (weights aside), the data files'
// contents, and the request's limits. ok is false when something cannot be read;
// the count then runs uncached and reports the problem itself.
func tokenCacheKey(pythonPath, tokDir string, req TokenRequest) (key string, ok bool) {
	h := sha256.New()
	script, err := python.Read(tokenScript)
	if err != nil {
		return "", false
	}
	w := func(parts ...string) {
		for _, p := range parts {
			io.WriteString(h, p)
			h.Write([]byte{0})
		}
	}
	w("token_stats/1", string(script), pythonPath)
	if real, err := filepath.EvalSymlinks(pythonPath); err == nil {
		w(real)
	}
	entries, err := os.ReadDir(tokDir)
	if err != nil {
		return "", false
	}
	for _, e := range entries {
		name := e.Name()
		if slices.Contains(weightExts, strings.ToLower(filepath.Ext(name))) {
			continue
		}
		p := filepath.Join(tokDir, name)
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		if !hashInto(h, p) {
			return "", false
		}
		w(name)
	}
	b, _ := json.Marshal([]int{req.MaxLength, req.MaxLineBytes, len(req.Files)})
	w(string(b))
	for _, f := range req.Files {
		if !hashInto(h, f) {
			return "", false
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:32], true
}

// hashInto adds a file's contents, framed by a separator, to h.
func hashInto(h io.Writer, path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return false
	}
	_, _ = h.Write([]byte{0, 0})
	return true
}

// pruneTokenCache removes all but the newest tokenCacheEntries entries of dir.
func pruneTokenCache(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type entry struct {
		path string
		mod  int64
	}
	var all []entry
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".jsonl") {
			continue
		}
		if info, err := e.Info(); err == nil {
			all = append(all, entry{filepath.Join(dir, e.Name()), info.ModTime().UnixNano()})
		}
	}
	if len(all) <= tokenCacheEntries {
		return
	}
	// Newest first.
	slices.SortFunc(all, func(a, b entry) int { return cmp.Compare(b.mod, a.mod) })
	for _, e := range all[tokenCacheEntries:] {
		os.Remove(e.path)
	}
}
