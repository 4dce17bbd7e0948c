// Command taskeval measures what the end-of-run task evaluation costs: the share of
// `loractl train`'s wall time it adds on the quickstart (goal: ≤ 25%), generation's
// examples per second on the CPU tiny model, and the controller's bootstrap summary.
//
//	go run ./bench/taskeval [-reps 3]
//
// It builds loractl and the quickstart's tiny model in a temp dir, then alternates the
// quickstart config with eval.generate: false and with generation and chrF (the
// quickstart's metric), so machine noise hits both alike, and prints medians.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/taskeval"
)

func main() {
	reps := flag.Int("reps", 3, "training runs per variant")
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
	tmp, err := os.MkdirTemp("", "loractl-bench-taskeval")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "loractl")
	if err := sh(root, nil, "go", "build", "-o", bin, "./cmd/loractl"); err != nil {
		return err
	}
	data := filepath.Join(root, "examples", "data")
	// The quickstart's model (scripts/quickstart.sh) and settings (configs/quickstart.yaml).
	if err := sh(root, nil, py, "python/make_tiny_model.py", filepath.Join(tmp, "model"), "--hidden", "64", "--intermediate", "128",
		"--data", filepath.Join(data, "train.jsonl"), "--data", filepath.Join(data, "eval.jsonl")); err != nil {
		return err
	}
	base := fmt.Sprintf(`model: ./model
data:
  train: %s
  eval: %s
lora: {r: 16, alpha: 32, target_modules: all-linear}
train: {epochs: 2, batch_size: 8, max_length: 128, learning_rate: 2.0e-2, warmup: 0, logging_steps: 5, save_steps: 25, gradient_checkpointing: false}
`, filepath.Join(data, "train.jsonl"), filepath.Join(data, "eval.jsonl"))
	variants := []struct{ name, yaml string }{
		{"without", "name: without\n" + base + "eval: {generate: false}\n"},
		{"with", "name: with\n" + base + "eval: {metrics: [chrf]}\n"},
	}
	for _, v := range variants {
		if err := os.WriteFile(filepath.Join(tmp, v.name+".yaml"), []byte(v.yaml), 0o644); err != nil {
			return err
		}
	}
	env := []string{"LORACTL_PYTHON=" + py}
	walls := map[string][]time.Duration{}
	var genSeconds []float64
	var genN int
	var summarise []time.Duration
	for r := range reps {
		for _, v := range variants {
			runs := filepath.Join(tmp, fmt.Sprintf("runs-%s-%d", v.name, r))
			t0 := time.Now()
			if err := sh(tmp, env, bin, "train", v.name+".yaml", "--runs-dir", runs, "--skip-data-check"); err != nil {
				return err
			}
			walls[v.name] = append(walls[v.name], time.Since(t0))
			if v.name != "with" {
				continue
			}
			dirs, _ := filepath.Glob(filepath.Join(runs, "with-*"))
			if len(dirs) != 1 {
				return fmt.Errorf("want one run in %s, found %v", runs, dirs)
			}
			n, secs, err := taskEvalEvent(filepath.Join(dirs[0], "events.jsonl"))
			if err != nil {
				return err
			}
			genN = n
			genSeconds = append(genSeconds, secs)
			ev, seed, err := taskeval.ReadRunEval(dirs[0])
			if err != nil {
				return err
			}
			t1 := time.Now()
			if _, err := taskeval.Summarize(filepath.Join(dirs[0], taskeval.Dir), taskeval.Options{Eval: ev, Seed: seed}); err != nil {
				return err
			}
			summarise = append(summarise, time.Since(t1))
		}
	}
	without, with := median(walls["without"]), median(walls["with"])
	gen := medianF(genSeconds)
	fmt.Printf("quickstart (2 epochs, 76 steps), %d eval examples, median of %d, --skip-data-check\n", genN, reps)
	fmt.Printf("  train, eval.generate: false   %6.2f s\n", without.Seconds())
	fmt.Printf("  train, generation + chrF      %6.2f s\n", with.Seconds())
	fmt.Printf("  share of the run's wall time the evaluation adds: %.1f%% (goal <= 25%%)\n", 100*(with-without).Seconds()/with.Seconds())
	fmt.Printf("  the trainer's task evaluation (task_eval event): %.2f s, %.1f examples/s (base and adapter each answer),\n", gen, float64(genN)/gen)
	fmt.Printf("    %.1f%% of the run with it: the share measured inside the run, free of run-to-run noise\n", 100*gen/with.Seconds())
	fmt.Printf("  the controller's bootstrap summary (%s): %s\n", config.MetricChrF, median(summarise).Round(time.Microsecond))
	return nil
}

// taskEvalEvent finds the trainer's task_eval event: how many examples, how long.
func taskEvalEvent(path string) (int, float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e struct {
			Type    string  `json:"type"`
			N       int     `json:"n"`
			Seconds float64 `json:"seconds"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Type == "task_eval" {
			return e.N, e.Seconds, nil
		}
	}
	return 0, 0, fmt.Errorf("%s has no task_eval event: this trainer does not generate", path)
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

func medianF(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
