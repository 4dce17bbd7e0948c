// Command export measures `loractl export --merge` on the CPU for a model of Qwen2.5-0.5B's
// shape (random bf16 weights, a rank-16 adapter on every linear layer): wall time and peak
// RSS above the process's RSS after its imports, against the naive merge a user writes by
// hand (load, PeftModel, merge_and_unload, save_pretrained; no verification) in the same
// run. Goal: loractl's peak above imports <= 1.3x the merged model's size, although it
// also computes reference logits, saves, reloads the saved model and compares.
//
//	go run ./bench/export [-reps 2]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

type sample struct {
	Mode         string  `json:"mode"`
	AfterImports float64 `json:"after_imports"`
	Peak         float64 `json:"peak"`
	Seconds      float64 `json:"seconds"`
	ModelBytes   float64 `json:"model_bytes"`
}

func main() {
	reps := flag.Int("reps", 2, "merges per variant")
	flag.Parse()
	if err := run(*reps); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(reps int) error {
	root, err := filepath.Abs(".")
	if err != nil {
		return err
	}
	py := os.Getenv("LORACTL_PYTHON")
	if py == "" {
		out, err := exec.Command(filepath.Join(root, "scripts", "setup-python.sh")).Output()
		if err != nil {
			return fmt.Errorf("setup-python: %w", err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		py = lines[len(lines)-1]
	}
	tmp, err := os.MkdirTemp("", "loractl-bench-export")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	data := filepath.Join(root, "examples", "data")
	tiny := filepath.Join(tmp, "tiny")
	if out, err := exec.Command(py, "python/make_tiny_model.py", tiny, "--data", filepath.Join(data, "train.jsonl"),
		"--data", filepath.Join(data, "eval.jsonl")).CombinedOutput(); err != nil {
		return fmt.Errorf("make_tiny_model: %v\n%s", err, out)
	}
	fmt.Println("building the 0.5B-shape model and adapter ...")
	out, err := exec.Command(py, "bench/export/prepare.py", tiny, data, tmp).Output()
	if err != nil {
		return fmt.Errorf("prepare: %v", err)
	}
	runDir := strings.TrimSpace(string(out))
	got := map[string][]sample{}
	for i := 0; i < reps; i++ {
		for _, mode := range []string{"loractl", "naive"} {
			dest := filepath.Join(tmp, fmt.Sprintf("%s-%d", mode, i))
			cmd := exec.Command(py, "bench/export/measure.py", mode, runDir, dest)
			cmd.Env = append(os.Environ(), "HF_HUB_OFFLINE=1", "TRANSFORMERS_VERBOSITY=error", "HF_HUB_DISABLE_PROGRESS_BARS=1")
			cmd.Stderr = os.Stderr
			b, err := cmd.Output()
			if err != nil {
				return fmt.Errorf("%s: %v", mode, err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			var s sample
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil {
				return fmt.Errorf("%s: %v: %s", mode, err, b)
			}
			got[mode] = append(got[mode], s)
			os.RemoveAll(dest)
		}
	}
	const mib = 1 << 20
	fmt.Printf("\n%-8s %10s %14s %14s %12s %10s\n", "variant", "seconds", "after imports", "peak", "peak-imports", "/ model")
	med := map[string]sample{}
	for _, mode := range []string{"loractl", "naive"} {
		s := median(got[mode])
		med[mode] = s
		above := s.Peak - s.AfterImports
		fmt.Printf("%-8s %10.1f %11.0f MiB %11.0f MiB %8.0f MiB %9.2fx\n", mode, s.Seconds, s.AfterImports/mib, s.Peak/mib, above/mib, above/s.ModelBytes)
	}
	l, n := med["loractl"], med["naive"]
	fmt.Printf("\nmerged model %.0f MiB; loractl/naive: time %.2fx, peak above imports %.2fx; goal <= 1.30x the model: %s\n",
		l.ModelBytes/mib, l.Seconds/n.Seconds, (l.Peak-l.AfterImports)/(n.Peak-n.AfterImports),
		map[bool]string{true: "met", false: "NOT met"}[(l.Peak-l.AfterImports)/l.ModelBytes <= 1.3])
	return nil
}

// median picks the sample with the median peak (its time goes with it).
func median(s []sample) sample {
	sort.Slice(s, func(i, j int) bool { return s[i].Peak < s[j].Peak })
	return s[len(s)/2]
}
