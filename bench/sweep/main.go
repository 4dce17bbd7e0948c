// Command sweep measures the controller's side of a large sweep: the time to load a
// 1,000-point random sweep, expand it, validate and prepare every point (config
// validation, run ids, data hashes), and submit all points as one Slurm job array
// through the real Slurm driver: run dirs, manifests, one batch script per point,
// the dispatcher script and points.json (goal: well under 2 s).
//
//	go run ./bench/sweep [-points 1000] [-reps 5] [-dir /tmp]
//
// Only the controller is timed: sbatch is replaced by a stub that prints a job id,
// so no cluster is needed and none is loaded with a thousand jobs. The data check
// (run once per sweep, whatever its size) is not part of the figure.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"syscall"
	"time"

	"github.com/loractl/loractl/driver/slurm"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/runner"
	"github.com/loractl/loractl/sweep"
)

func main() {
	points := flag.Int("points", 1000, "points in the sweep")
	reps := flag.Int("reps", 5, "repetitions (each in a fresh directory)")
	dir := flag.String("dir", "", "where to make the temp dirs (default $TMPDIR); its disk is part of the figure")
	prof := flag.String("cpuprofile", "", "write a CPU profile of the repetitions to this file")
	flag.Parse()
	if *prof != "" {
		f, err := os.Create(*prof)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := bench(*points, *reps, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// phase timings of one repetition.
type timing struct {
	build, open, submit, total, cpu time.Duration
}

func bench(points, reps int, base string) error {
	root, err := filepath.Abs(".")
	if err != nil {
		return err
	}
	var all []timing
	for i := 0; i < reps; i++ {
		tm, err := once(root, base, points)
		if err != nil {
			return err
		}
		all = append(all, tm)
	}
	med := func(f func(timing) time.Duration) time.Duration {
		v := make([]time.Duration, len(all))
		for i, t := range all {
			v[i] = f(t)
		}
		sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
		return v[len(v)/2]
	}
	host, _ := os.Hostname()
	fmt.Printf("sweep of %d points as one job array, median of %d (%s)\n", points, reps, host)
	fmt.Printf("  expand + validate + prepare  %8s\n", med(func(t timing) time.Duration { return t.build }).Round(time.Millisecond))
	fmt.Printf("  open sweep dir               %8s\n", med(func(t timing) time.Duration { return t.open }).Round(time.Millisecond))
	fmt.Printf("  launch all + submit array    %8s\n", med(func(t timing) time.Duration { return t.submit }).Round(time.Millisecond))
	fmt.Printf("  total (wall)                 %8s\n", med(func(t timing) time.Duration { return t.total }).Round(time.Millisecond))
	fmt.Printf("  total (CPU, user+sys)        %8s\n", med(func(t timing) time.Duration { return t.cpu }).Round(time.Millisecond))
	return nil
}

func once(root, base string, points int) (timing, error) {
	var tm timing
	tmp, err := os.MkdirTemp(base, "loractl-bench-sweep")
	if err != nil {
		return tm, err
	}
	defer os.RemoveAll(tmp)
	if err := setup(root, tmp, points); err != nil {
		return tm, err
	}
	store, err := run.NewStore(filepath.Join(tmp, "runs"))
	if err != nil {
		return tm, err
	}
	d := &slurm.Driver{Bin: filepath.Join(tmp, "bin"), PollInterval: time.Second}

	cpu0 := cpuTime()
	t0 := time.Now()
	f, err := sweep.Load(filepath.Join(tmp, "sweep.yaml"))
	if err != nil {
		return tm, err
	}
	pl, err := sweep.Build(f, nil)
	if err != nil {
		return tm, err
	}
	if len(pl.Points) != points {
		return tm, fmt.Errorf("%d unique points, want %d", len(pl.Points), points)
	}
	t1 := time.Now()
	sw, err := sweep.Open(filepath.Join(tmp, "sweeps"), pl, d.Name())
	if err != nil {
		return tm, err
	}
	defer sw.Close()
	t2 := time.Now()
	x := &sweep.Executor{Store: store, Sweep: sw, Plan: pl, Driver: d, Detach: true,
		Launch: runner.LaunchOptions{Python: "/usr/bin/python3"}}
	sum, err := x.Run(context.Background())
	if err != nil {
		return tm, err
	}
	t3 := time.Now()
	tm = timing{build: t1.Sub(t0), open: t2.Sub(t1), submit: t3.Sub(t2), total: t3.Sub(t0), cpu: cpuTime() - cpu0}
	if sum.Running != points {
		return tm, fmt.Errorf("submitted %d points, want %d", sum.Running, points)
	}
	return tm, nil
}

// setup writes the base config, the sweep file, an (empty) model dir and a stub
// sbatch that accepts the array like Slurm would.
func setup(root, tmp string, points int) error {
	for _, d := range []string{"model", "bin"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			return err
		}
	}
	data := filepath.Join(root, "examples", "data")
	files := map[string]string{
		"base.yaml": `name: bench
model: ./model
data:
  train: ` + filepath.Join(data, "train.jsonl") + `
  eval: ` + filepath.Join(data, "eval.jsonl") + `
train:
  max_steps: 100
driver:
  name: slurm
  slurm:
    time: "01:00:00"
    cpus_per_task: 2
`,
		"sweep.yaml": fmt.Sprintf(`name: bench
base: base.yaml
method: random
count: %d
seed: 1
max_parallel: 8
parameters:
  train.learning_rate:
    distribution: log_uniform
    min: 1.0e-5
    max: 1.0e-3
  lora.dropout:
    distribution: uniform
    min: 0
    max: 0.2
  lora.r:
    distribution: int
    min: 4
    max: 64
  lora.alpha:
    tied: 2 * lora.r
`, points),
		"bin/sbatch": "#!/bin/sh\necho 4242\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(body), 0o755); err != nil {
			return err
		}
	}
	return nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
