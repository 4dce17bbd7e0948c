// Command train measures what the controller costs: the wall time of `loractl train`
// against running python/train_lora.py directly on the same resolved config (goal:
// ratio ≤ 1.02), and the controller's cold start for `--help` and `render`.
//
//	go run ./bench/train [-reps 3] [-steps 40]
//
// It builds loractl and a tiny model in a temp dir, alternates the two ways of running
// the trainer so machine noise hits both alike, and prints medians and ratios.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

func main() {
	reps := flag.Int("reps", 3, "training runs per variant")
	steps := flag.Int("steps", 40, "max_steps of each training run")
	starts := flag.Int("starts", 20, "cold starts per command")
	flag.Parse()
	if err := run(*reps, *steps, *starts); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(reps, steps, starts int) error {
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
	tmp, err := os.MkdirTemp("", "loractl-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "loractl")
	if err := sh(root, nil, "go", "build", "-o", bin, "./cmd/loractl"); err != nil {
		return err
	}
	data := filepath.Join(root, "examples", "data")
	if err := sh(root, nil, py, "python/make_tiny_model.py", filepath.Join(tmp, "model"),
		"--data", filepath.Join(data, "train.jsonl"), "--data", filepath.Join(data, "eval.jsonl")); err != nil {
		return err
	}
	cfg := filepath.Join(tmp, "bench.yaml")
	yaml := fmt.Sprintf(`name: bench
model: ./model
data:
  train: %s
  eval: %s
lora: {r: 8, target_modules: all-linear}
train: {max_steps: %d, batch_size: 8, max_length: 128, logging_steps: 5, save_steps: 20, gradient_checkpointing: false}
`, filepath.Join(data, "train.jsonl"), filepath.Join(data, "eval.jsonl"), steps)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		return err
	}
	env := []string{"LORACTL_PYTHON=" + py}

	// Direct: the trainer on the resolved.json that `loractl render` prints.
	resolved, err := exec.Command(bin, "render", cfg).Output()
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	var direct, viaCtl, viaCtlCached, viaCtlNoCheck []time.Duration
	for i := 0; i < reps; i++ {
		dir := filepath.Join(tmp, fmt.Sprintf("direct-%d", i))
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "resolved.json"), resolved, 0o644)
		d, err := timed(tmp, env, py, filepath.Join(root, "python", "train_lora.py"), "--config", filepath.Join(dir, "resolved.json"), "--run-dir", dir)
		if err != nil {
			return err
		}
		direct = append(direct, d)
		runs := filepath.Join(tmp, fmt.Sprintf("runs-%d", i))
		// Each repetition starts with an empty token-count cache; the second run
		// checks the same data again and finds its counts there.
		cache := []string{"LORACTL_CACHE=" + filepath.Join(tmp, fmt.Sprintf("cache-%d", i))}
		d, err = timed(tmp, append(env, cache...), bin, "train", cfg, "--runs-dir", runs)
		if err != nil {
			return err
		}
		viaCtl = append(viaCtl, d)
		d, err = timed(tmp, append(env, cache...), bin, "train", cfg, "--runs-dir", runs+"-cached")
		if err != nil {
			return err
		}
		viaCtlCached = append(viaCtlCached, d)
		d, err = timed(tmp, env, bin, "train", cfg, "--runs-dir", runs+"-nocheck", "--skip-data-check")
		if err != nil {
			return err
		}
		viaCtlNoCheck = append(viaCtlNoCheck, d)
	}
	var help, render []time.Duration
	for i := 0; i < starts; i++ {
		d, _ := timed(tmp, env, bin, "--help")
		help = append(help, d)
		d, _ = timed(tmp, env, bin, "render", cfg)
		render = append(render, d)
	}
	md, mc, mw, mn := median(direct), median(viaCtl), median(viaCtlCached), median(viaCtlNoCheck)
	fmt.Printf("training run (%d steps, tiny model, CPU), median of %d:\n", steps, reps)
	fmt.Printf("  train_lora.py directly          %8.2fs\n", md.Seconds())
	fmt.Printf("  loractl train (data check)      %8.2fs   ratio %.3f\n", mc.Seconds(), mc.Seconds()/md.Seconds())
	fmt.Printf("  loractl train (counts cached)   %8.2fs   ratio %.3f\n", mw.Seconds(), mw.Seconds()/md.Seconds())
	fmt.Printf("  loractl train --skip-data-check %8.2fs   ratio %.3f\n", mn.Seconds(), mn.Seconds()/md.Seconds())
	fmt.Printf("cold start, median of %d:\n", starts)
	fmt.Printf("  loractl --help                  %8.1fms\n", float64(median(help).Microseconds())/1000)
	fmt.Printf("  loractl render CONFIG           %8.1fms\n", float64(median(render).Microseconds())/1000)
	return nil
}

func timed(dir string, env []string, name string, args ...string) (time.Duration, error) {
	start := time.Now()
	err := sh(dir, env, name, args...)
	return time.Since(start), err
}

func sh(dir string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
