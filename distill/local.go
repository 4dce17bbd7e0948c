package distill

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/loractl/loractl/python"
)

// LocalOptions configure StartLocal.
type LocalOptions struct {
	// Python is the interpreter with torch and transformers (the trainer's).
	Python string
	// ModelDir is the teacher's model directory.
	ModelDir string
	// BatchSize is the most requests generated together (0: 8).
	BatchSize int
	// Device is passed to the server ("" : the GPU when there is one).
	Device string
	// Stderr receives the server's log (nil: discarded).
	Stderr io.Writer
	// StartTimeout bounds loading the model (0: 10 minutes).
	StartTimeout time.Duration
}

// LocalServer is python/serve_openai.py serving a local model on 127.0.0.1.
type LocalServer struct {
	// URL is the API root, http://127.0.0.1:PORT/v1.
	URL string
	cmd *exec.Cmd
	dir string
}

// StartLocal writes the embedded serve_openai.py and generation.py to a temporary
// directory and starts the server on a free 127.0.0.1 port, returning once the model
// is loaded. A local teacher thus goes through the same HTTP client as a remote one.
// The model directory is checked first: a missing one is an ErrInput.
func StartLocal(ctx context.Context, o LocalOptions) (*LocalServer, error) {
	st, err := os.Stat(o.ModelDir)
	if err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: --teacher %s: neither an http(s) URL nor a model directory", ErrInput, o.ModelDir)
	}
	if _, err := os.Stat(filepath.Join(o.ModelDir, "config.json")); err != nil {
		return nil, fmt.Errorf("%w: --teacher %s: no config.json: not a transformers model directory", ErrInput, o.ModelDir)
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 8
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 10 * time.Minute
	}
	dir, err := os.MkdirTemp("", "loractl-teacher-")
	if err != nil {
		return nil, err
	}
	for _, name := range python.WithImports("serve_openai.py") {
		b, err := python.Read(name)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	args := []string{filepath.Join(dir, "serve_openai.py"), o.ModelDir, "--host", "127.0.0.1", "--port", "0",
		"--batch-size", strconv.Itoa(o.BatchSize)}
	if o.Device != "" {
		args = append(args, "--device", o.Device)
	}
	// No shell: the model path is one argv element, whatever it holds.
	cmd := exec.Command(o.Python, args...)
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1", "HF_HUB_OFFLINE=1", "TOKENIZERS_PARALLELISM=false")
	cmd.Stderr = o.Stderr
	// Its own process group: a Ctrl-C at the terminal reaches loractl, which finishes
	// the requests in flight before it stops the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting the local teacher with %s: %w", o.Python, err)
	}
	s := &LocalServer{cmd: cmd, dir: dir}
	first := make(chan startLine, 1)
	go func() {
		r := bufio.NewReader(stdout)
		l, err := r.ReadString('\n')
		first <- startLine{l, err}
		_, _ = io.Copy(io.Discard, r)
	}()
	t := time.NewTimer(o.StartTimeout)
	defer t.Stop()
	select {
	case l := <-first:
		if f := strings.Fields(l.s); len(f) == 2 && f[0] == "listening" {
			s.URL = f[1]
			return s, nil
		}
		s.Close()
		return nil, fmt.Errorf("the local teacher (%s) did not start: %s", o.ModelDir, describeExit(l, cmd))
	case <-t.C:
		s.Close()
		return nil, fmt.Errorf("the local teacher (%s) did not load within %s", o.ModelDir, o.StartTimeout)
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
}

// startLine is the server's first line on stdout, or why there was none.
type startLine struct {
	s   string
	err error
}

func describeExit(first startLine, cmd *exec.Cmd) string {
	if first.err == nil {
		return fmt.Sprintf("unexpected first line %q", strings.TrimSpace(first.s))
	}
	if ps := cmd.ProcessState; ps != nil {
		return fmt.Sprintf("it exited (%s); its log is above", ps)
	}
	return first.err.Error()
}

// Close stops the server (SIGTERM, then SIGKILL after 10s) and removes its scripts.
func (s *LocalServer) Close() {
	if s.cmd.Process != nil && s.cmd.ProcessState == nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	_ = os.RemoveAll(s.dir)
}
