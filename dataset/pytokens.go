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
	// Runner, when set, runs the helper instead of a fresh interpreter: the local
	// trainer's warm process, which imports the tokenizer's library anyway. A count it
	// cannot run, or that fails there, runs afresh, so that failures read the same.
	Runner PythonRunner
	// Cached reports whether the last CountTokens was answered from the cache, Warm
	// whether it ran in Runner.
	Cached, Warm bool
}

// PythonRunner runs a Python script to its end as `python script args...` with env
// added would, its stdout copied to stdout, and returns its exit status and the tail
// of its stderr; an error means it could not run the script. driver.Warm is one.
type PythonRunner interface {
	RunPython(ctx context.Context, script string, args []string, env map[string]string, stdout io.Writer) (exitCode int, stderr []byte, err error)
}

// helperEnv is set for the helper: the tokenizer is local, so a missing file must never
// turn into a download attempt, and its warnings are noise here.
var helperEnv = map[string]string{"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}

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
	p.Cached, p.Warm = false, false
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

	args := []string{"--tokenizer", p.Dir,
		"--max-length", strconv.Itoa(req.MaxLength),
		"--max-line-bytes", strconv.Itoa(max(req.MaxLineBytes, 1)), "--"}
	args = append(args, req.Files...)
	if p.Runner != nil {
		info, ran, err := p.countWarm(ctx, script, args, cachePath, each)
		if ran {
			return info, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err // interrupted: no count, and no fresh one either
		}
	}
	cmd := exec.CommandContext(ctx, p.Python, append([]string{script}, args...)...)
	cmd.Env = os.Environ()
	for k, v := range helperEnv {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
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
	keep := p.cacheWriter(cachePath)
	defer keep.cleanup()
	info, perr := readTokenLines(keep.tee(stdout), each)
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
	keep.commit()
	return info, nil
}

// countWarm runs the helper in p.Runner. ran is false when the count should run afresh
// instead: the runner could not run it, or it failed there (the fresh run then fails
// with its own words). Output reaches each only after the helper succeeded.
func (p *PythonTokenCounter) countWarm(ctx context.Context, script string, args []string, cachePath string, each func(ExampleTokens) error) (info *TemplateInfo, ran bool, err error) {
	// Spooled to a file, not memory: a line per example, read only once the helper
	// succeeded (a failure leaves the count to a fresh run, each called once).
	out, err := os.CreateTemp("", "loractl-tokens-")
	if err != nil {
		return nil, false, nil
	}
	defer os.Remove(out.Name())
	defer out.Close()
	code, stderr, err := p.Runner.RunPython(ctx, script, args, helperEnv, out)
	if err != nil || code != 0 {
		return nil, false, nil
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return nil, false, nil
	}
	if p.Stderr != nil {
		_, _ = p.Stderr.Write(stderr)
	}
	keep := p.cacheWriter(cachePath)
	defer keep.cleanup()
	if info, err = readTokenLines(keep.tee(out), each); err != nil {
		return nil, true, err
	}
	if info == nil {
		return nil, true, fmt.Errorf("%s printed no template record", tokenScript)
	}
	keep.commit()
	p.Warm = true
	return info, true, nil
}

// cacheEntry is a token cache entry being written: a temp file in the cache dir,
// renamed into place once the helper's output was read to its end. Nil (no cache, or
// none can be written) keeps nothing.
type cacheEntry struct {
	f          *os.File
	dir, final string
}

func (p *PythonTokenCounter) cacheWriter(cachePath string) *cacheEntry {
	if cachePath == "" {
		return nil
	}
	f, err := cacheTemp(p.CacheDir)
	if err != nil {
		return nil
	}
	return &cacheEntry{f: f, dir: p.CacheDir, final: cachePath}
}

// tee copies what is read from r into the entry.
func (c *cacheEntry) tee(r io.Reader) io.Reader {
	if c == nil {
		return r
	}
	return io.TeeReader(r, c.f)
}

// commit puts the entry in place.
func (c *cacheEntry) commit() {
	if c == nil {
		return
	}
	// 0644: CreateTemp's 0600 would make the entry useless to anyone sharing the cache.
	if c.f.Chmod(0o644) == nil && c.f.Sync() == nil && c.f.Close() == nil && os.Rename(c.f.Name(), c.final) == nil {
		pruneTokenCache(c.dir)
	}
}

// cleanup removes the temp file unless commit renamed it.
func (c *cacheEntry) cleanup() {
	if c != nil {
		c.f.Close()
		os.Remove(c.f.Name())
	}
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
