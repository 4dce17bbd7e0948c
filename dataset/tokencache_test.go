package dataset

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTokenCountCache: a second check of the same data with the same tokenizer and
// limits is answered from the cache without starting the interpreter; anything the
// counts depend on misses it, and a damaged entry is counted again, not twice.
func TestTokenCountCache(t *testing.T) {
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	// A stand-in interpreter: one example record per line of the last file given.
	python := filepath.Join(dir, "python")
	body := `#!/bin/sh
echo x >> ` + calls + `
for f; do last=$f; done
echo '{"type":"template","tokenizer":"stand-in","ends_assistant_with_eos":true}'
n=0
while IFS= read -r l; do n=$((n+1)); echo "{\"type\":\"example\",\"file\":0,\"line\":$n,\"total\":30,\"assistant\":5,\"assistant_kept\":5}"; done < "$last"
`
	if err := os.WriteFile(python, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(dir, "tok")
	if err := os.MkdirAll(tok, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(tok, "tokenizer.json"), `{"v":1}`)
	train := writeLines(t, "train.jsonl", examples(0, 20, prod))
	cache := filepath.Join(dir, "cache")

	tc := &PythonTokenCounter{Python: python, Dir: tok, CacheDir: cache}
	stats := func(maxLen int) string {
		t.Helper()
		r := check(t, Options{Train: train, MaxLength: maxLen, Tokenizer: tc})
		b, err := json.Marshal(r.Stats.Tokens)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	nCalls := func() int {
		b, _ := os.ReadFile(calls)
		return strings.Count(string(b), "x")
	}
	first := stats(64)
	if tc.Cached || nCalls() != 1 || !strings.Contains(first, `"method":"tokenizer"`) {
		t.Fatalf("first count: cached=%v calls=%d %s", tc.Cached, nCalls(), first)
	}
	steps := []struct {
		name   string
		change func()
		maxLen int
		cached bool
	}{
		{"unchanged", func() {}, 64, true},
		{"another max_length", func() {}, 32, false},
		{"back to the first", func() {}, 64, true},
		{"weights added", func() { write(filepath.Join(tok, "model.safetensors"), "w") }, 64, true},
		{"tokenizer edited", func() { write(filepath.Join(tok, "tokenizer.json"), `{"v":2}`) }, 64, false},
		{"entry damaged", func() {
			entries, _ := filepath.Glob(filepath.Join(cache, "*.jsonl"))
			for _, e := range entries {
				write(e, `{"type":"example","file":0,"line":1,"total":30}`+"\n{not json")
			}
		}, 64, false},
		{"data edited", func() {
			write(train, strings.Join(examples(0, 21, prod), "\n")+"\n")
		}, 64, false},
	}
	for _, s := range steps {
		before := nCalls()
		s.change()
		got := stats(s.maxLen)
		if tc.Cached != s.cached || (nCalls() == before) != s.cached {
			t.Errorf("%s: cached=%v, interpreter started %d time(s); want cached=%v", s.name, tc.Cached, nCalls()-before, s.cached)
		}
		if s.name == "entry damaged" && got != first {
			t.Errorf("after a damaged entry: %s, want %s", got, first)
		}
	}
}

func TestPruneTokenCache(t *testing.T) {
	dir := t.TempDir()
	base := time.Now().Add(-time.Hour)
	for i := range tokenCacheEntries + 5 {
		p := filepath.Join(dir, fmt.Sprintf("%02d.jsonl", i))
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		at := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	pruneTokenCache(dir)
	left, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if len(left) != tokenCacheEntries {
		t.Fatalf("%d entries left, want %d", len(left), tokenCacheEntries)
	}
	for i := range 5 {
		if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("%02d.jsonl", i))); !os.IsNotExist(err) {
			t.Errorf("oldest entry %d kept", i)
		}
	}
}

// TestTokenCacheSeesTheStack: upgrading transformers under the same interpreter path
// misses the cache; entries are readable by everyone sharing the cache.
func TestTokenCacheSeesTheStack(t *testing.T) {
	dir := t.TempDir()
	venv := filepath.Join(dir, "venv")
	site := filepath.Join(venv, "lib", "python3.11", "site-packages")
	for _, d := range []string{filepath.Join(venv, "bin"), filepath.Join(site, "transformers-5.0.0.dist-info")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	python := filepath.Join(venv, "bin", "python")
	body := "#!/bin/sh\necho x >> " + filepath.Join(dir, "calls") + "\necho '{\"type\":\"template\",\"ends_assistant_with_eos\":true}'\n"
	if err := os.WriteFile(python, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(dir, "tok")
	if err := os.MkdirAll(tok, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tok, "tokenizer.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	train := writeLines(t, "train.jsonl", examples(0, 20, prod))
	cache := filepath.Join(dir, "cache")
	tc := &PythonTokenCounter{Python: python, Dir: tok, CacheDir: cache}
	run := func() bool {
		t.Helper()
		check(t, Options{Train: train, MaxLength: 64, Tokenizer: tc})
		return tc.Cached
	}
	if run() || !run() {
		t.Fatal("first count cached, or second not")
	}
	entries, _ := filepath.Glob(filepath.Join(cache, "*.jsonl"))
	if len(entries) != 1 {
		t.Fatalf("entries %v", entries)
	}
	if st, _ := os.Stat(entries[0]); st.Mode().Perm() != 0o644 {
		t.Errorf("entry mode %v, want 0644", st.Mode().Perm())
	}
	if err := os.Rename(filepath.Join(site, "transformers-5.0.0.dist-info"), filepath.Join(site, "transformers-5.1.0.dist-info")); err != nil {
		t.Fatal(err)
	}
	if run() {
		t.Error("a transformers upgrade hit the cache")
	}
}
