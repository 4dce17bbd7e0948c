package report

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkWriteLargeRun renders a run the size of a long GPU fine-tune: 20,000 logged
// steps, 200 evaluations, 40 checkpoints and 200 generations.
func BenchmarkWriteLargeRun(b *testing.B) {
	dir := b.TempDir()
	for _, f := range []string{"manifest.json", "resolved.json", "config.yaml"} {
		data, err := os.ReadFile(filepath.Join(fixture, f))
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	var ev strings.Builder
	for s := 1; s <= 20000; s++ {
		fmt.Fprintf(&ev, `{"type":"log","time":"2026-01-01T00:00:00Z","step":%d,"loss":%g,"metrics":{"mean_token_accuracy":%g}}`+"\n", s, 1+1/float64(s), 1-1/float64(s))
		if s%100 == 0 {
			fmt.Fprintf(&ev, `{"type":"eval","time":"2026-01-01T00:00:00Z","step":%d,"phase":"during","eval_loss":%g}`+"\n", s, 1.1+1/float64(s))
		}
		if s%500 == 0 {
			fmt.Fprintf(&ev, `{"type":"checkpoint","time":"2026-01-01T00:00:00Z","step":%d,"path":"/x"}`+"\n", s)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "events.jsonl"), []byte(ev.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "eval"), 0o755); err != nil {
		b.Fatal(err)
	}
	var gen strings.Builder
	for i := range 200 {
		fmt.Fprintf(&gen, `{"index":%d,"messages":[{"role":"user","content":"question %d %s"}],"reference":"%s","base":{"text":"%s","tokens":200,"stopped":"max_tokens","scores":{"chrf":%d}},"adapter":{"text":"%s","tokens":80,"stopped":"eos","scores":{"chrf":%d}}}`+"\n",
			i, i, strings.Repeat("word ", 50), strings.Repeat("ref ", 60), strings.Repeat("base ", 150), i%50, strings.Repeat("adapter ", 60), (i*7)%60)
	}
	if err := os.WriteFile(filepath.Join(dir, GenerationsFile), []byte(gen.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if err := Write(dir, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
