// Command distill benchmarks `loractl distill`'s client against a fast canned
// OpenAI-compatible server (llm/llmtest) running in a separate process, so the server's
// CPU is not counted as the client's. It prints, for each prompt count:
//
//   - rows per second at the given concurrency (goal: >= 1,000/s at 64),
//   - the client's CPU time per row (user+system of the client process),
//   - the client process's peak RSS and peak live Go heap (after each GC),
//
// then the bytes of heap per finished prompt (the slope between the two sizes: what
// grows with the set of done-prompt hashes), and the ratio of distill's rate to a bare
// llm.Client loop against the same server (the baseline: no files, no state).
//
//	go run ./bench/distill [-sizes 10000,100000] [-concurrency 64]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/loractl/loractl/distill"
	"github.com/loractl/loractl/llm"
	"github.com/loractl/loractl/llm/llmtest"
)

type figures struct {
	Mode       string  `json:"mode"`
	Prompts    int     `json:"prompts"`
	Rows       int     `json:"rows"`
	WallSec    float64 `json:"wall_s"`
	RowsPerSec float64 `json:"rows_per_s"`
	CPUSec     float64 `json:"cpu_s"`
	CPUPerRow  float64 `json:"cpu_us_per_row"`
	MaxRSS     int64   `json:"max_rss_bytes"`
	PeakHeap   uint64  `json:"peak_heap_bytes"`
}

func main() {
	serve := flag.Bool("serve", false, "(internal) run the canned server and print its URL")
	client := flag.String("client", "", "(internal) run one client measurement: distill or baseline")
	url := flag.String("url", "", "(internal) server URL")
	n := flag.Int("n", 0, "(internal) prompts")
	promptsPath := flag.String("prompts", "", "(internal) prompts file")
	sizes := flag.String("sizes", "10000,100000", "prompt counts to measure")
	conc := flag.Int("concurrency", 64, "requests in flight")
	flag.Parse()
	var err error
	switch {
	case *serve:
		err = runServer()
	case *client != "":
		err = runClient(*client, *url, *promptsPath, *n, *conc)
	default:
		err = orchestrate(*sizes, *conc)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/distill:", err)
		os.Exit(1)
	}
}

func runServer() error {
	s, err := llmtest.New(llmtest.Options{})
	if err != nil {
		return err
	}
	fmt.Println(s.URL)
	select {}
}

func orchestrate(sizesFlag string, conc int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	srv := exec.Command(self, "-serve")
	srv.Stderr = os.Stderr
	stdout, err := srv.StdoutPipe()
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	buf := make([]byte, 256)
	k, err := stdout.Read(buf)
	if err != nil {
		return err
	}
	url := strings.TrimSpace(string(buf[:k]))
	fmt.Printf("canned server (separate process): %s\nclient: GOMAXPROCS %d, concurrency %d\n\n", url, runtime.GOMAXPROCS(0), conc)
	fmt.Printf("%-9s %8s %8s %10s %12s %12s %12s\n", "mode", "prompts", "wall", "rows/s", "cpu/row", "max RSS", "peak live heap")
	var results []figures
	var sizes []int
	for _, s := range strings.Split(sizesFlag, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || v < 1 {
			return fmt.Errorf("-sizes: %q", s)
		}
		sizes = append(sizes, v)
	}
	// A discarded warm-up run: the server's first connections and page faults are not
	// charged to whichever mode would run first.
	tmp, err := os.MkdirTemp("", "loractl-bench-distill-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := exec.Command(self, "-client", "baseline", "-url", url, "-n", "5000", "-concurrency", strconv.Itoa(conc)).Run(); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	for _, size := range sizes {
		// The prompts file is written here, not in the measured process, so its RSS is
		// the client's alone.
		prompts := filepath.Join(tmp, fmt.Sprintf("prompts-%d.txt", size))
		if err := writePrompts(prompts, size); err != nil {
			return err
		}
		for _, mode := range []string{"baseline", "distill"} {
			out, err := exec.Command(self, "-client", mode, "-url", url, "-prompts", prompts, "-n", strconv.Itoa(size), "-concurrency", strconv.Itoa(conc)).Output()
			if err != nil {
				if ee, ok := err.(*exec.ExitError); ok {
					return fmt.Errorf("%s %d: %v\n%s", mode, size, err, ee.Stderr)
				}
				return err
			}
			var f figures
			if err := json.Unmarshal(out, &f); err != nil {
				return fmt.Errorf("%s %d: %v: %q", mode, size, err, out)
			}
			results = append(results, f)
			fmt.Printf("%-9s %8d %7.1fs %10.0f %10.1fµs %10.1fMiB %10.1fMiB\n", f.Mode, f.Prompts, f.WallSec, f.RowsPerSec,
				f.CPUPerRow, float64(f.MaxRSS)/(1<<20), float64(f.PeakHeap)/(1<<20))
		}
	}
	fmt.Println()
	byKey := map[string]figures{}
	for _, f := range results {
		byKey[fmt.Sprintf("%s/%d", f.Mode, f.Prompts)] = f
	}
	for _, size := range sizes {
		d, b := byKey[fmt.Sprintf("distill/%d", size)], byKey[fmt.Sprintf("baseline/%d", size)]
		fmt.Printf("%d prompts: distill %.0f rows/s = %.2f× the bare client's %.0f req/s; CPU per row %.1fµs vs %.1fµs\n",
			size, d.RowsPerSec, d.RowsPerSec/b.RowsPerSec, b.RowsPerSec, d.CPUPerRow, b.CPUPerRow)
	}
	if len(sizes) >= 2 {
		lo, hi := byKey[fmt.Sprintf("distill/%d", sizes[0])], byKey[fmt.Sprintf("distill/%d", sizes[len(sizes)-1])]
		slope := (float64(hi.PeakHeap) - float64(lo.PeakHeap)) / float64(hi.Prompts-lo.Prompts)
		rss := (float64(hi.MaxRSS) - float64(lo.MaxRSS)) / float64(hi.Prompts-lo.Prompts)
		fmt.Printf("memory per done prompt (slope %d -> %d prompts): %.0f bytes of peak live heap, %.0f bytes of RSS\n",
			lo.Prompts, hi.Prompts, slope, rss)
	}
	return nil
}

// runClient measures one run in this (fresh) process.
func runClient(mode, url, prompts string, n, conc int) error {
	dir, err := os.MkdirTemp("", "loractl-bench-distill-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		// The live heap after the last GC: what the run holds, not garbage awaiting collection.
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	cpu0 := cpuTime()
	start := time.Now()
	rows := 0
	switch mode {
	case "distill":
		res, err := distill.Run(context.Background(), distill.Options{Prompts: prompts, Out: filepath.Join(dir, "out.jsonl"),
			Teacher: url, TeacherKind: "endpoint", Model: "bench", SystemPrompt: "You are a helpful support assistant.",
			Concurrency: conc, MaxTokens: 256, MaxRetries: 3, Timeout: 30 * time.Second, RefusalPattern: distill.DefaultRefusalPattern})
		if err != nil {
			return err
		}
		rows = res.Provenance.Totals.OK
	case "baseline":
		rows, err = baseline(url, prompts, n, conc)
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	wall := time.Since(start).Seconds()
	cpu := cpuTime() - cpu0
	close(stop)
	wg.Wait()
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	if rows != n {
		return fmt.Errorf("%s: %d rows for %d prompts", mode, rows, n)
	}
	return json.NewEncoder(os.Stdout).Encode(figures{Mode: mode, Prompts: n, Rows: rows, WallSec: wall, RowsPerSec: float64(rows) / wall,
		CPUSec: cpu, CPUPerRow: cpu / float64(rows) * 1e6, MaxRSS: ru.Maxrss * 1024, PeakHeap: peak.Load()})
}

func writePrompts(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i := range n {
		if _, err := fmt.Fprintf(w, "Prompt number %d: summarise the order history of customer %d in two sentences.\n", i, i*31); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// baseline sends the same requests with a bare llm.Client: no prompt parsing, no
// output, no state.
func baseline(url, _ string, n, conc int) (int, error) {
	c, err := llm.New(llm.Config{BaseURL: url, Model: "bench", MaxRetries: 3, Timeout: 30 * time.Second})
	if err != nil {
		return 0, err
	}
	jobs := make(chan int)
	var ok atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				msgs := []llm.Message{{Role: "system", Content: "You are a helpful support assistant."},
					{Role: "user", Content: fmt.Sprintf("Prompt number %d: summarise the order history of customer %d in two sentences.", i, i*31)}}
				if _, err := c.Chat(context.Background(), llm.Request{Messages: msgs, MaxTokens: 256}); err != nil {
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if e, _ := firstErr.Load().(error); e != nil {
		return int(ok.Load()), e
	}
	return int(ok.Load()), nil
}

func cpuTime() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return tv(ru.Utime) + tv(ru.Stime)
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
