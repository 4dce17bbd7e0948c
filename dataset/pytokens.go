package dataset

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/loractl/loractl/python"
)

// tokenScript is the embedded helper PythonTokenCounter runs; it imports the trainer's
// support module, so that the counts are made by the code that trains.
const tokenScript = "token_stats.py"

// tokenScriptFiles are written together into one temp dir to run the helper.
var tokenScriptFiles = python.WithImports(tokenScript)

// PythonTokenCounter counts tokens by running the embedded python/token_stats.py with a
// local tokenizer directory (transformers' AutoTokenizer and apply_chat_template).
type PythonTokenCounter struct {
	// Python is the interpreter (see internal/pyenv); Dir the tokenizer directory.
	Python string
	Dir    string
	// Stderr, when set, receives the helper's stderr as it runs.
	Stderr io.Writer
	// CacheDir, when set, keeps the helper's output for the same helper, interpreter,
	// tokenizer files, data and limits: a second check of unchanged data does not
	// start Python at all.
	CacheDir string
	// Cached reports whether the last CountTokens was answered from the cache.
	Cached bool
}

// tokenLine is one line of the helper's output: a template record or an example record.
type tokenLine struct {
	Type string `json:"type"`
	TemplateInfo
	ExampleTokens
}

// CountTokens implements TokenCounter.
func (p *PythonTokenCounter) CountTokens(ctx context.Context, req TokenRequest, each func(ExampleTokens) error) (*TemplateInfo, error) {
	if st, err := os.Stat(p.Dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: tokenizer %s: not a directory", ErrInput, p.Dir)
	}
	p.Cached = false
	var cachePath string
	if p.CacheDir != "" {
		if key, ok := tokenCacheKey(p.Python, p.Dir, req); ok {
			cachePath = filepath.Join(p.CacheDir, key+".jsonl")
			if info, err := replayCached(cachePath, each); err == nil {
				p.Cached = true
				// The same tokenizer files may sit in another directory now.
				info.Tokenizer = p.Dir
				return info, nil
			} else if !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
		}
	}
	scriptDir, err := writeScript()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scriptDir)
	script := filepath.Join(scriptDir, tokenScript)

	args := []string{script, "--tokenizer", p.Dir,
		"--max-length", strconv.Itoa(req.MaxLength),
		"--max-line-bytes", strconv.Itoa(max(req.MaxLineBytes, 1)), "--"}
	args = append(args, req.Files...)
	cmd := exec.CommandContext(ctx, p.Python, args...)
	// The tokenizer is local; never let a missing file turn into a download attempt.
	cmd.Env = append(os.Environ(), "HF_HUB_OFFLINE=1", "TRANSFORMERS_VERBOSITY=error", "TOKENIZERS_PARALLELISM=false")
	tail := &tailBuffer{max: 4096}
	cmd.Stderr = tail
	if p.Stderr != nil {
		cmd.Stderr = io.MultiWriter(tail, p.Stderr)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", p.Python, err)
	}
	var src io.Reader = stdout
	var keep *os.File
	if cachePath != "" {
		if keep, err = cacheTemp(p.CacheDir); err == nil {
			defer os.Remove(keep.Name())
			defer keep.Close()
			src = io.TeeReader(stdout, keep)
		}
	}
	info, perr := readTokenLines(src, each)
	if perr != nil {
		// Stop the helper rather than leave it writing into a closed pipe.
		_ = cmd.Process.Kill()
		_, _ = io.Copy(io.Discard, stdout)
	}
	werr := cmd.Wait()
	switch {
	case perr != nil:
		return nil, perr
	case werr != nil:
		msg := bytes.TrimSpace(tail.Bytes())
		var ee *exec.ExitError
		if errors.As(werr, &ee) && ee.ExitCode() == 2 {
			return nil, fmt.Errorf("%w: %s", ErrInput, msg)
		}
		return nil, fmt.Errorf("%s %s: %v: %s", p.Python, tokenScript, werr, msg)
	case info == nil:
		return nil, fmt.Errorf("%s printed no template record", tokenScript)
	}
	// 0644: CreateTemp's 0600 would make the entry useless to anyone sharing the cache.
	if keep != nil && keep.Chmod(0o644) == nil && keep.Sync() == nil && keep.Close() == nil && os.Rename(keep.Name(), cachePath) == nil {
		pruneTokenCache(p.CacheDir)
	}
	return info, nil
}

// replayCached feeds a cached output to each. An entry that does not parse to the
// end is removed and reported as missing, before each sees any of it, so the count
// runs again from the start.
func replayCached(path string, each func(ExampleTokens) error) (*TemplateInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		// Missing, or not ours to read (a shared cache): count afresh.
		return nil, os.ErrNotExist
	}
	defer f.Close()
	if info, err := readTokenLines(f, func(ExampleTokens) error { return nil }); err != nil || info == nil {
		f.Close()
		os.Remove(path)
		return nil, os.ErrNotExist
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	info, err := readTokenLines(f, each)
	if err != nil {
		return nil, err
	}
	// Touch it: pruning keeps the most recently used entries.
	now := time.Now()
	_ = os.Chtimes(path, now, now)
	return info, nil
}

// cacheTemp opens a temporary file in the cache dir (made if needed).
func cacheTemp(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return os.CreateTemp(dir, ".tmp-*")
}

func readTokenLines(r io.Reader, each func(ExampleTokens) error) (*TemplateInfo, error) {
	var info *TemplateInfo
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var tl tokenLine
		if err := json.Unmarshal(sc.Bytes(), &tl); err != nil {
			return nil, fmt.Errorf("%s: bad output line %q: %v", tokenScript, clip(sc.Bytes()), err)
		}
		switch tl.Type {
		case "template":
			t := tl.TemplateInfo
			info = &t
		case "example":
			if err := each(tl.ExampleTokens); err != nil {
				return nil, err
			}
		}
	}
	return info, sc.Err()
}

// writeScript writes the embedded helper and the module it imports into a new temp
// dir and returns the dir.
func writeScript() (string, error) {
	dir, err := os.MkdirTemp("", "loractl-token_stats-")
	if err != nil {
		return "", err
	}
	for _, name := range tokenScriptFiles {
		src, err := python.Read(name)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, name), src, 0o644)
		}
		if err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	return dir, nil
}

// tailBuffer keeps the last max bytes written to it: a failing helper's last words.
type tailBuffer struct {
	max int
	buf []byte
}

// Write keeps the tail of p.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// Bytes returns what is kept.
func (t *tailBuffer) Bytes() []byte { return t.buf }
