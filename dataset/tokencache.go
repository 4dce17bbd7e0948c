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
	"time"

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
	w := func(parts ...string) {
		for _, p := range parts {
			io.WriteString(h, p)
			h.Write([]byte{0})
		}
	}
	w("token_stats/2")
	for _, name := range tokenScriptFiles {
		src, err := python.Read(name)
		if err != nil {
			return "", false
		}
		w(name, string(src))
	}
	w(pythonPath)
	real, err := filepath.EvalSymlinks(pythonPath)
	if err == nil {
		w(real)
	}
	// The installed tokenizer stack: upgrading transformers in place under the same
	// interpreter path changes the counts too.
	w(stackVersions(pythonPath, real)...)
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

// stackPackages are the distributions whose versions decide the token counts.
var stackPackages = []string{"transformers-", "tokenizers-", "jinja2-", "trl-"}

// stackVersions lists the dist-info directories of stackPackages in the site-packages
// of the interpreter (a venv's, found from its unresolved path, and the base install's,
// from the resolved one). Listing a directory is cheap; running Python is what the
// cache avoids.
func stackVersions(paths ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range paths {
		if p == "" {
			continue
		}
		prefix := filepath.Dir(filepath.Dir(p))
		dirs, _ := filepath.Glob(filepath.Join(prefix, "lib", "python3*", "site-packages"))
		dirs = append(dirs, filepath.Join(prefix, "lib", "python3", "dist-packages"))
		for _, d := range dirs {
			if seen[d] {
				continue
			}
			seen[d] = true
			entries, _ := os.ReadDir(d)
			for _, e := range entries {
				name := strings.ToLower(e.Name())
				if !strings.HasSuffix(name, ".dist-info") {
					continue
				}
				for _, pkg := range stackPackages {
					if strings.HasPrefix(name, pkg) {
						out = append(out, d+"/"+name)
					}
				}
			}
		}
	}
	return out
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
		if strings.HasPrefix(e.Name(), ".tmp-") {
			// Left by a count that was killed; one still being written is younger.
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Hour {
				os.Remove(filepath.Join(dir, e.Name()))
			}
			continue
		}
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
