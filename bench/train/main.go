// Command train measures what the controller costs: the wall time of `loractl train`
// against running python/train_lora.py directly on the same resolved config (with
// eval.generate false on both sides; goals: ratio ≤ 1.05 the first time, ≤ 1.02 with
// the token counts cached; the first run also without the warm start, to show what
// it saves), what tokenizing while the model loads saves on a larger model and data
// set, where a run's time goes (the trainer's own phase timings,
// from its end event), what the base model's evaluation cache saves a second run with
// the same base model and eval set, and the controller's cold start for `--help` and
// `render`.
//
//	go run ./bench/train [-reps 3] [-steps 40] [-fixed-only]
//
// It builds loractl and a tiny model in a temp dir, alternates the ways of running the
// trainer so machine noise hits them alike, and prints medians and ratios: the ratio of
// the medians, and the median (and range) of each repetition's own ratio against the
// direct run just before it, which a machine whose speed drifts during the bench
// disturbs less. Beside the wall time it prints each way's CPU time (the trainer's and
// loractl's together), steadier than wall time on a machine with noisy neighbours.
// -fixed-only measures the training runs alone.
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
	"time"
)

func main() {
	reps := flag.Int("reps", 3, "training runs per variant")
	steps := flag.Int("steps", 40, "max_steps of each training run")
	starts := flag.Int("starts", 20, "cold starts per command")
	fixedOnly := flag.Bool("fixed-only", false, "only the training runs' fixed costs (no eval cache, overlap or cold-start figures)")
	flag.Parse()
	if err := run(*reps, *steps, *starts, *fixedOnly); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(reps, steps, starts int, fixedOnly bool) error {
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
eval: {generate: false}
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
	direct := &series{name: "train_lora.py directly          "}
	viaCtl := &series{name: "loractl train (data check)     "}
	viaCtlCold := &series{name: "  the same, no warm start      "}
	viaCtlCached := &series{name: "loractl train (counts cached)  "}
	viaCtlNoCheck := &series{name: "loractl train --skip-data-check"}
	var phases []map[string]float64
	for i := 0; i < reps; i++ {
		dir := filepath.Join(tmp, fmt.Sprintf("direct-%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "resolved.json"), resolved, 0o644); err != nil {
			return err
		}
		d, err := direct.run(tmp, env, py, filepath.Join(root, "python", "train_lora.py"), "--config", filepath.Join(dir, "resolved.json"), "--run-dir", dir)
		if err != nil {
			return err
		}
		if ph, err := endTimings(dir); err == nil {
			ph["total (wall)"] = d.Seconds()
			phases = append(phases, ph)
		}
		runs := filepath.Join(tmp, fmt.Sprintf("runs-%d", i))
		// Each repetition starts with an empty token-count cache; the second run
		// checks the same data again and finds its counts there.
		cache := []string{"LORACTL_CACHE=" + filepath.Join(tmp, fmt.Sprintf("cache-%d", i))}
		if _, err := viaCtl.run(tmp, append(env, cache...), bin, "train", cfg, "--runs-dir", runs); err != nil {
			return err
		}
		// The same first run with the trainer started afresh after the pre-flight, as
		// before warm starts (driver/local/warm.go).
		cold := []string{"LORACTL_CACHE=" + filepath.Join(tmp, fmt.Sprintf("cache-cold-%d", i)), "LORACTL_WARM_START=0"}
		if _, err := viaCtlCold.run(tmp, append(env, cold...), bin, "train", cfg, "--runs-dir", runs+"-cold"); err != nil {
			return err
		}
		if _, err := viaCtlCached.run(tmp, append(env, cache...), bin, "train", cfg, "--runs-dir", runs+"-cached"); err != nil {
			return err
		}
		if _, err := viaCtlNoCheck.run(tmp, env, bin, "train", cfg, "--runs-dir", runs+"-nocheck", "--skip-data-check"); err != nil {
			return err
		}
	}
	md, mc := median(direct.wall), median(direct.cpu)
	fmt.Printf("training run (%d steps, tiny model, CPU), median of %d; paired: each repetition against its own direct run;\n", steps, reps)
	fmt.Printf("cpu: user+system time of the command and the processes it waited for\n")
	fmt.Printf("  %s %8.2fs                                   cpu %6.2fs\n", direct.name, md.Seconds(), mc.Seconds())
	for _, v := range []*series{viaCtl, viaCtlCold, viaCtlCached, viaCtlNoCheck} {
		m, c := median(v.wall), median(v.cpu)
		pm, lo, hi := pairedRatios(v.wall, direct.wall)
		cm, _, _ := pairedRatios(v.cpu, direct.cpu)
		fmt.Printf("  %s %8.2fs   ratio %.3f   paired %.3f [%.3f–%.3f]   cpu %6.2fs ratio %.3f paired %.3f\n",
			v.name, m.Seconds(), m.Seconds()/md.Seconds(), pm, lo, hi, c.Seconds(), c.Seconds()/mc.Seconds(), cm)
	}
	printPhases("where train_lora.py's time goes (median seconds per phase)", []string{"direct"}, [][]map[string]float64{phases})
	if fixedOnly {
		return nil
	}
	cacheFirst, cacheSecond, err := benchEvalCache(tmp, root, data, bin, env, reps, steps)
	if err != nil {
		return err
	}
	serial, overlapped, err := benchOverlap(tmp, root, data, py, reps)
	if err != nil {
		return err
	}
	var help, render []time.Duration
	for i := 0; i < starts; i++ {
		d, _ := timed(tmp, env, bin, "--help")
		help = append(help, d)
		d, _ = timed(tmp, env, bin, "render", cfg)
		render = append(render, d)
	}
	printPhases("the base model's evaluation cache: a second run, other LoRA settings, same base and eval set (eval.generate on)",
		[]string{"stores", "reuses"}, [][]map[string]float64{cacheFirst, cacheSecond})
	printOverlap(serial, overlapped)
	fmt.Printf("cold start, median of %d:\n", starts)
	fmt.Printf("  loractl --help                  %8.1fms\n", float64(median(help).Microseconds())/1000)
	fmt.Printf("  loractl render CONFIG           %8.1fms\n", float64(median(render).Microseconds())/1000)
	return nil
}

func timed(dir string, env []string, name string, args ...string) (time.Duration, error) {
	wall, _, err := timedCPU(dir, env, name, args...)
	return wall, err
}

// timedCPU runs a command and returns its wall time and CPU time (user and system, of
// the command and of the processes it waited for, as wait4 reports them): on a machine
// whose speed drifts, the CPU time is the steadier of the two.
func timedCPU(dir string, env []string, name string, args ...string) (wall, cpu time.Duration, err error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall = time.Since(start)
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		return wall, cpu, fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return wall, cpu, nil
}

func sh(dir string, env []string, name string, args ...string) error {
	_, _, err := timedCPU(dir, env, name, args...)
	return err
}

// series is one way of running the trainer, measured once per repetition.
type series struct {
	name      string
	wall, cpu []time.Duration
}

// run runs and records one repetition; it returns the wall time.
func (s *series) run(dir string, env []string, name string, args ...string) (time.Duration, error) {
	wall, cpu, err := timedCPU(dir, env, name, args...)
	if err != nil {
		return 0, err
	}
	s.wall, s.cpu = append(s.wall, wall), append(s.cpu, cpu)
	return wall, nil
}

// pairedRatios is the median, least and greatest of ds[i]/base[i].
func pairedRatios(ds, base []time.Duration) (med, lo, hi float64) {
	r := make([]float64, len(ds))
	for i := range ds {
		r[i] = ds[i].Seconds() / base[i].Seconds()
	}
	sort.Float64s(r)
	return r[len(r)/2], r[0], r[len(r)-1]
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// phaseOrder is the trainer's phases (python/train_lora.py Run.timed) in run order;
// save_checkpoints is part of train.
var phaseOrder = []string{"imports", "read_data", "load_model", "tokenize", "build_trainer", "eval_before", "train",
	"save_checkpoints", "eval_after", "save_adapter", "task_eval"}

// endTimings reads the timings of the end event in dir/events.jsonl, with "other":
// the wall time no phase covers (interpreter start, module imports, exit), when the
// caller adds "total (wall)".
func endTimings(dir string) (map[string]float64, error) {
	b, err := os.ReadFile(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var e struct {
			Type    string             `json:"type"`
			Timings map[string]float64 `json:"timings"`
		}
		if json.Unmarshal([]byte(lines[i]), &e) == nil && e.Type == "end" && e.Timings != nil {
			return e.Timings, nil
		}
	}
	return nil, fmt.Errorf("%s: no end event with timings", dir)
}

// benchEvalCache trains reps pairs of runs in one store, each pair on a fresh store:
// the first stores the base model's evaluation, the second (another rank) reuses it.
func benchEvalCache(tmp, root, data, bin string, env []string, reps, steps int) (first, second []map[string]float64, err error) {
	for i := 0; i < reps; i++ {
		runs := filepath.Join(tmp, fmt.Sprintf("cache-runs-%d", i))
		for k, r := range []int{8, 4} {
			cfg := filepath.Join(tmp, fmt.Sprintf("cache-%d-%d.yaml", i, k))
			yaml := fmt.Sprintf(`name: cache%d
model: ./model
data: {train: %s, eval: %s}
lora: {r: %d, target_modules: all-linear}
train: {max_steps: %d, batch_size: 8, max_length: 128, logging_steps: 5, save_steps: 20, gradient_checkpointing: false}
eval: {max_examples: 40, max_new_tokens: 32, metrics: [chrf]}
`, k, filepath.Join(data, "train.jsonl"), filepath.Join(data, "eval.jsonl"), r, steps)
			if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
				return nil, nil, err
			}
			d, err := timed(tmp, env, bin, "train", cfg, "--runs-dir", runs, "--skip-data-check")
			if err != nil {
				return nil, nil, err
			}
			dirs, _ := filepath.Glob(filepath.Join(runs, fmt.Sprintf("cache%d-*", k)))
			if len(dirs) != 1 {
				return nil, nil, fmt.Errorf("%s: want one run dir, found %v", runs, dirs)
			}
			ph, err := endTimings(dirs[0])
			if err != nil {
				return nil, nil, err
			}
			ph["total (wall)"] = d.Seconds()
			if k == 0 {
				first = append(first, ph)
			} else {
				second = append(second, ph)
			}
		}
	}
	return first, second, nil
}

// printPhases prints one column per set of runs: the median of each phase, the part of
// the total no phase covers, and the total.
func printPhases(title string, names []string, sets [][]map[string]float64) {
	fmt.Printf("%s:\n  %-18s", title, "phase")
	for _, n := range names {
		fmt.Printf(" %9s", n)
	}
	fmt.Println()
	med := func(runs []map[string]float64, key string) float64 {
		var v []float64
		for _, r := range runs {
			v = append(v, r[key])
		}
		if len(v) == 0 {
			return 0
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	row := func(label string, value func(runs []map[string]float64) float64) {
		fmt.Printf("  %-18s", label)
		for _, runs := range sets {
			fmt.Printf(" %8.2fs", value(runs))
		}
		fmt.Println()
	}
	for _, p := range phaseOrder {
		label := p
		if p == "save_checkpoints" {
			label = "  of which saves"
		}
		row(label, func(runs []map[string]float64) float64 { return med(runs, p) })
	}
	row("other (py start)", func(runs []map[string]float64) float64 {
		var v []float64
		for _, r := range runs {
			sum := 0.0
			for _, p := range phaseOrder {
				if p != "save_checkpoints" {
					sum += r[p]
				}
			}
			v = append(v, r["total (wall)"]-sum)
		}
		sort.Float64s(v)
		if len(v) == 0 {
			return 0
		}
		return v[len(v)/2]
	})
	row("total (wall)", func(runs []map[string]float64) float64 { return med(runs, "total (wall)") })
}

// benchOverlap runs the trainer directly on a 252M-parameter model and 3,000 rows (the
// sample data ten times), one step, alternating tokenizing while the model loads
// (LORACTL_OVERLAP_SETUP=1, the default with CUDA) with doing them in turn (=0, the
// CPU's default), and returns each
// run's timings with its wall time.
func benchOverlap(tmp, root, data, py string, reps int) (serial, overlapped []map[string]float64, err error) {
	model := filepath.Join(tmp, "model-252m")
	if err := sh(root, nil, py, "python/make_tiny_model.py", model, "--hidden", "1024", "--layers", "16",
		"--heads", "16", "--kv-heads", "8", "--intermediate", "4096",
		"--data", filepath.Join(data, "train.jsonl"), "--data", filepath.Join(data, "eval.jsonl")); err != nil {
		return nil, nil, err
	}
	src, err := os.ReadFile(filepath.Join(data, "train.jsonl"))
	if err != nil {
		return nil, nil, err
	}
	train := filepath.Join(tmp, "train-x10.jsonl")
	if err := os.WriteFile(train, []byte(strings.Repeat(string(src), 10)), 0o644); err != nil {
		return nil, nil, err
	}
	// A small eval set: the evaluations before and after are not what is measured.
	evalRows, err := os.ReadFile(filepath.Join(data, "eval.jsonl"))
	if err != nil {
		return nil, nil, err
	}
	eval := filepath.Join(tmp, "eval-8.jsonl")
	if err := os.WriteFile(eval, []byte(strings.Join(strings.SplitAfter(string(evalRows), "\n")[:8], "")), 0o644); err != nil {
		return nil, nil, err
	}
	resolved, err := resolvedFor(tmp, root, py, fmt.Sprintf(`name: overlap
model: %s
data: {train: %s, eval: %s}
lora: {r: 8, target_modules: all-linear}
train: {max_steps: 1, batch_size: 2, max_length: 128, logging_steps: 1, save_steps: 0, gradient_checkpointing: false}
eval: {generate: false}
`, model, train, eval))
	if err != nil {
		return nil, nil, err
	}
	for i := 0; i < reps; i++ {
		for _, on := range []bool{false, true} {
			dir := filepath.Join(tmp, fmt.Sprintf("overlap-%d-%v", i, on))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, nil, err
			}
			if err := os.WriteFile(filepath.Join(dir, "resolved.json"), resolved, 0o644); err != nil {
				return nil, nil, err
			}
			env := []string{"LORACTL_OVERLAP_SETUP=0"}
			if on {
				env = []string{"LORACTL_OVERLAP_SETUP=1"}
			}
			d, err := timed(tmp, env, py, filepath.Join(root, "python", "train_lora.py"), "--config", filepath.Join(dir, "resolved.json"), "--run-dir", dir)
			if err != nil {
				return nil, nil, err
			}
			ph, err := endTimings(dir)
			if err != nil {
				return nil, nil, err
			}
			ph["total (wall)"] = d.Seconds()
			if on {
				overlapped = append(overlapped, ph)
			} else {
				serial = append(serial, ph)
			}
		}
	}
	return serial, overlapped, nil
}

// resolvedFor is `loractl render` of a config written to tmp.
func resolvedFor(tmp, root, py, yaml string) ([]byte, error) {
	cfg := filepath.Join(tmp, "overlap.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(tmp, "loractl"), "render", cfg)
	cmd.Env = append(os.Environ(), "LORACTL_PYTHON="+py)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", cfg, err)
	}
	return out, nil
}

// printOverlap prints the setup phases of benchOverlap's runs, in turn and overlapped.
func printOverlap(serial, overlapped []map[string]float64) {
	med := func(runs []map[string]float64, key string) float64 {
		var v []float64
		for _, r := range runs {
			v = append(v, r[key])
		}
		sort.Float64s(v)
		if len(v) == 0 {
			return 0
		}
		return v[len(v)/2]
	}
	fmt.Printf("tokenizing while the model loads (252M-parameter model, 3,000 rows, 1 step), median of %d:\n", len(serial))
	fmt.Printf("  %-30s %9s %10s\n", "", "in turn", "overlapped")
	rows := []struct{ label, key string }{
		{"load the model", "load_model"},
		{"tokenize (not hidden)", "tokenize"},
		{"tokenize (its own time)", "tokenize_total"},
		{"total (wall)", "total (wall)"},
	}
	for _, r := range rows {
		a, b := med(serial, r.key), med(overlapped, r.key)
		if r.key == "tokenize_total" {
			a = med(serial, "tokenize")
		}
		fmt.Printf("  %-30s %8.2fs %9.2fs\n", r.label, a, b)
	}
	ls, lo := med(serial, "load_model")+med(serial, "tokenize"), med(overlapped, "load_model")+med(overlapped, "tokenize")
	fmt.Printf("  %-30s %8.2fs %9.2fs   ratio %.3f\n", "load + tokenize", ls, lo, lo/ls)
}
