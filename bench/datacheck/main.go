// Command datacheck benchmarks `loractl data check`'s structural checks on a generated
// chat JSONL file (1 GB by default) against a plain Python script doing the same checks
// (baseline.py), and prints both throughputs and their ratio.
//
//	go run ./bench/datacheck [-size 1024] [-python python3] [-dir DIR] [-keep]
//
// The file is generated into a temporary directory and removed afterwards (unless -keep);
// it is never committed. Both checkers must agree on the counts they report, otherwise
// the comparison would be meaningless and the command fails.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/loractl/loractl/dataset"
)

func main() {
	sizeMB := flag.Int("size", 1024, "size of the generated file in MiB")
	py := flag.String("python", "python3", "Python interpreter for the baseline")
	dir := flag.String("dir", "", "directory for the generated file (default: a temp dir)")
	keep := flag.Bool("keep", false, "keep the generated file")
	skipPy := flag.Bool("skip-python", false, "skip the Python baseline")
	flag.Parse()
	if err := run(*sizeMB, *py, *dir, *keep, *skipPy); err != nil {
		fmt.Fprintln(os.Stderr, "datacheck:", err)
		os.Exit(1)
	}
}

func run(sizeMB int, py, dir string, keep, skipPy bool) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "loractl-datacheck-")
		if err != nil {
			return err
		}
		dir = d
		if !keep {
			defer os.RemoveAll(d)
		}
	}
	path := filepath.Join(dir, "bench.jsonl")
	t0 := time.Now()
	lines, err := generate(path, int64(sizeMB)<<20)
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	mb := float64(st.Size()) / 1e6
	fmt.Printf("generated %s: %.0f MB, %d lines in %.1fs\n", path, mb, lines, time.Since(t0).Seconds())
	fmt.Printf("machine: %s/%s, %d CPUs, %s\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())

	// Warm the page cache for both contenders alike.
	if err := exec.Command("cat", path).Run(); err != nil {
		return err
	}
	// The machine may be shared: CPU time is reported beside wall time, as it does not
	// depend on what else runs.
	cpu0 := selfCPU()
	t0 = time.Now()
	rep, err := dataset.Check(context.Background(), dataset.Options{Train: path, Eval: "", EvalSplit: 0.1, MaxLength: 2048})
	if err != nil {
		return err
	}
	goSec, goCPU := time.Since(t0).Seconds(), selfCPU()-cpu0
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	goCounts := counts{Examples: rep.Examples, Valid: rep.Stats.ValidExamples, Errors: rep.ErrorsTotal, Duplicates: rep.Stats.Duplicates}
	fmt.Printf("go      wall %6.2fs %7.1f MB/s   cpu %6.2fs %7.1f MB/s   peak RSS %d MB   %+v\n", goSec, mb/goSec, goCPU, mb/goCPU, ru.Maxrss/1024, goCounts)
	if skipPy {
		return nil
	}

	script := filepath.Join(filepath.Dir(sourceFile()), "baseline.py")
	cmd := exec.Command(py, script, path)
	t0 = time.Now()
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	pySec := time.Since(t0).Seconds()
	pyCPU := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	var pyCounts counts
	if err := json.Unmarshal(out, &pyCounts); err != nil {
		return fmt.Errorf("baseline output %q: %w", out, err)
	}
	fmt.Printf("python  wall %6.2fs %7.1f MB/s   cpu %6.2fs %7.1f MB/s   %+v\n", pySec, mb/pySec, pyCPU, mb/pyCPU, pyCounts)
	fmt.Printf("ratio   %.1f× wall, %.1f× cpu (go over python)\n", pySec/goSec, pyCPU/goCPU)
	if pyCounts != goCounts {
		return fmt.Errorf("the two checkers disagree: go %+v, python %+v", goCounts, pyCounts)
	}
	return nil
}

func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

type counts struct {
	Examples   int `json:"examples"`
	Valid      int `json:"valid"`
	Errors     int `json:"errors"`
	Duplicates int `json:"duplicates"`
}

// sourceFile finds this directory when run with `go run` from the repository root.
func sourceFile() string {
	if _, err := os.Stat("bench/datacheck/baseline.py"); err == nil {
		return "bench/datacheck/main.go"
	}
	exe, _ := os.Executable()
	return exe
}

var words = strings.Fields(`the a of to and in is it you that for on with as are this be
at or have from by not but what all were when we there can an your which their said if do
will each about how up out them then she many some so these would other into has more her
two like him see time could no make than first been its who now people my made over did
down only way find use may water long little very after words called just where most know
model training data loss token adapter learning rate batch epoch gradient layer weight
naïve café résumé 東京 données`)

var systems = []string{
	"You are a helpful assistant for ACME support. Answer briefly and politely.",
	"You are a helpful assistant for ACME support. Answer briefly and politely.",
	"You are a helpful assistant for ACME support. Answer briefly and politely.",
	"You are a terse assistant.",
}

// generate writes realistic chat examples (a system prompt, one to three user/assistant
// turns of 10–300 words with escapes and non-ASCII text) with a sprinkle of faults and
// duplicates, up to size bytes.
func generate(path string, size int64) (int, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	var written int64
	var line []byte
	var prev [][]byte
	n := 0
	for written < size {
		line = line[:0]
		switch k := r.IntN(1000); {
		case k < 10 && len(prev) > 0: // an exact duplicate of a recent example
			line = append(line, prev[r.IntN(len(prev))]...)
		case k < 12:
			line = append(line, `{"messages": [{"role": "user", "content": "broken`...)
		case k < 14:
			line = append(line, `{"messages": [{"role": "human", "content": "hi"}, {"role": "assistant", "content": "hello"}]}`...)
		case k < 16:
			line = append(line, `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ["x"]}]}`...)
		case k < 17:
			line = append(line, `{"instruction": "say hi", "output": "hi"}`...)
		default:
			line = example(line, r)
			if len(prev) < 64 {
				prev = append(prev, append([]byte(nil), line...))
			} else {
				prev[r.IntN(64)] = append([]byte(nil), line...)
			}
		}
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil {
			return n, err
		}
		written += int64(len(line))
		n++
	}
	if err := w.Flush(); err != nil {
		return n, err
	}
	return n, f.Close()
}

func example(b []byte, r *rand.Rand) []byte {
	b = append(b, `{"messages": [{"role": "system", "content": `...)
	b = appendJSONString(b, systems[r.IntN(len(systems))])
	b = append(b, '}')
	for t := 0; t < 1+r.IntN(3); t++ {
		b = append(b, `, {"role": "user", "content": `...)
		b = appendJSONString(b, text(r, 10+r.IntN(80)))
		b = append(b, `}, {"role": "assistant", "content": `...)
		b = appendJSONString(b, text(r, 20+r.IntN(280)))
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

func text(r *rand.Rand, n int) string {
	var sb strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			switch r.IntN(20) {
			case 0:
				sb.WriteString("\n")
			case 1:
				sb.WriteString(", ")
			default:
				sb.WriteString(" ")
			}
		}
		if r.IntN(50) == 0 {
			sb.WriteString(`"quoted"`)
			continue
		}
		sb.WriteString(words[r.IntN(len(words))])
	}
	return sb.String()
}

func appendJSONString(b []byte, s string) []byte {
	j, _ := json.Marshal(s)
	return append(b, j...)
}
