// Command checkpoint measures what checkpoint integrity costs on a realistic LoRA
// checkpoint: the trainer hashing every file into the completion marker, and the
// controller verifying it (sizes only, for listing; every sha256, for a resume),
// against the baseline of writing and syncing the checkpoint itself.
//
//	go run ./bench/checkpoint [-adapter-mb 160] [-reps 3] [-dir /tmp]
//
// The default is a Llama-2-7B-sized adapter (r=16 on all linear layers: 40M fp32
// parameters, 160 MB) with AdamW's two moments in optimizer.pt (320 MB).
package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/loractl/loractl/run"
)

func main() {
	adapterMB := flag.Int("adapter-mb", 160, "adapter size in MB (optimizer.pt is twice that)")
	reps := flag.Int("reps", 3, "repetitions")
	dir := flag.String("dir", "", "where to write (default $TMPDIR); its disk is part of the figures")
	flag.Parse()
	root, err := os.MkdirTemp(*dir, "loractl-bench-checkpoint-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(root)
	_, file, _, _ := runtime.Caller(0)
	pyDir := filepath.Join(filepath.Dir(file), "..", "..", "python")
	py, err := exec.LookPath("python3")
	if err != nil {
		fail(fmt.Errorf("python3 is needed for the trainer's side: %w", err))
	}
	files := map[string]int{
		"adapter_model.safetensors": *adapterMB << 20, "optimizer.pt": 2 * *adapterMB << 20,
		"scheduler.pt": 1 << 10, "rng_state.pth": 14 << 10, "trainer_state.json": 2 << 10,
		"adapter_config.json": 1 << 10, "training_args.bin": 6 << 10,
	}
	var write, mark, quick, deep time.Duration
	var total int64
	for i := 0; i < *reps; i++ {
		cp := filepath.Join(root, fmt.Sprintf("checkpoint-%d", i))
		if err := os.MkdirAll(cp, 0o755); err != nil {
			fail(err)
		}
		total = 0
		start := time.Now()
		for name, n := range files {
			b := make([]byte, n)
			_, _ = rand.Read(b)
			f, err := os.Create(filepath.Join(cp, name))
			if err != nil {
				fail(err)
			}
			if _, err := f.Write(b); err != nil {
				fail(err)
			}
			if err := f.Sync(); err != nil {
				fail(err)
			}
			if err := f.Close(); err != nil {
				fail(err)
			}
			total += int64(n)
		}
		write += time.Since(start)
		start = time.Now()
		cmd := exec.Command(py, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import train_lora_support as s; s.mark_complete(sys.argv[2], 1, None, 'x')", pyDir, cp)
		if out, err := cmd.CombinedOutput(); err != nil {
			fail(fmt.Errorf("mark_complete: %v\n%s", err, out))
		}
		mark += time.Since(start)
		start = time.Now()
		if _, err := run.VerifyCheckpoint(cp, false); err != nil {
			fail(err)
		}
		quick += time.Since(start)
		start = time.Now()
		if _, err := run.VerifyCheckpoint(cp, true); err != nil {
			fail(err)
		}
		deep += time.Since(start)
		os.RemoveAll(cp)
	}
	n := time.Duration(*reps)
	mb := float64(total) / 1e6
	fmt.Printf("checkpoint: %.0f MB in %d files, %d repetitions (averages)\n", mb, len(files), *reps)
	fmt.Printf("  write + fsync (baseline)          %8s  %6.0f MB/s\n", (write / n).Round(time.Millisecond), mb/(write/n).Seconds())
	fmt.Printf("  trainer: hash + write marker      %8s  %6.0f MB/s  %.2fx the save\n", (mark / n).Round(time.Millisecond), mb/(mark/n).Seconds(), float64(mark)/float64(write))
	fmt.Printf("  controller: verify sizes (list)   %8s\n", (quick / n).Round(time.Microsecond))
	fmt.Printf("  controller: verify sha256 (resume)%8s  %6.0f MB/s  %.2fx the save\n", (deep / n).Round(time.Millisecond), mb/(deep/n).Seconds(), float64(deep)/float64(write))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "checkpoint bench:", err)
	os.Exit(1)
}
