package preflight_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/gpu/gputest"
	"github.com/loractl/loractl/gpu/preflight"
)

const gib = uint64(1 << 30)

func workstation() *gputest.Manager {
	return gputest.New(
		gputest.GPU("RTX 4090", 24*gib, 6*gib),
		gputest.GPU("RTX 4090", 24*gib, 22*gib),
		gputest.GPU("RTX 3090", 24*gib, 20*gib),
	)
}

func TestRunPicks(t *testing.T) {
	tests := []struct {
		name        string
		need        uint64
		opts        preflight.Options
		wantVisible string
		wantForced  bool
		wantErr     string // the refusal's type; "": a decision
	}{
		{"most free when unspecified", 10 * gib, preflight.Options{GPU: preflight.AnyGPU}, "1", false, ""},
		{"requested gpu that fits", 10 * gib, preflight.Options{GPU: 2}, "2", false, ""},
		{"requested busy gpu refused", 10 * gib, preflight.Options{GPU: 0}, "", false, "nofit"},
		{"requested busy gpu forced", 10 * gib, preflight.Options{GPU: 0, Force: true}, "0", true, ""},
		{"too big for any", 23 * gib, preflight.Options{GPU: preflight.AnyGPU}, "", false, "nofit"},
		{"exactly the free memory fits", 22 * gib, preflight.Options{GPU: preflight.AnyGPU}, "1", false, ""},
		{"no such gpu", gib, preflight.Options{GPU: 7}, "", false, "request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := preflight.Run(context.Background(), workstation(), tt.need, tt.opts)
			if tt.wantErr != "" {
				if kind := errKind(err); kind != tt.wantErr {
					t.Fatalf("err = %v (%s), want a %s refusal", err, kind, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Visible != tt.wantVisible || d.Forced != tt.wantForced || d.Fits == tt.wantForced || d.Need != tt.need {
				t.Errorf("decision = %+v", d)
			}
			if env := d.Env(); env["CUDA_VISIBLE_DEVICES"] != tt.wantVisible {
				t.Errorf("env = %v", env)
			}
		})
	}
}

func TestNoFitErrorSaysWhy(t *testing.T) {
	_, err := preflight.Run(context.Background(), workstation(), 23*gib, preflight.Options{GPU: preflight.AnyGPU})
	var nf *preflight.NoFitError
	if !errors.As(err, &nf) {
		t.Fatalf("error %v is not a NoFitError", err)
	}
	if nf.Best.Index != 1 || nf.Need != 23*gib || nf.TooBig {
		t.Errorf("no-fit = %+v", nf)
	}
	for _, want := range []string{"23.0 GiB", "GPU 1", "22.0 GiB free", "--force", "loractl plan"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err.Error(), want)
		}
	}
}

func TestNoGPUMeansCPU(t *testing.T) {
	d, err := preflight.Run(context.Background(), gpu.None{}, 8*gib, preflight.Options{GPU: preflight.AnyGPU})
	if err != nil || !d.CPU {
		t.Fatalf("decision = %+v, %v", d, err)
	}
	if v, ok := d.Env()["CUDA_VISIBLE_DEVICES"]; !ok || v != "" {
		t.Errorf("CPU env = %v", d.Env())
	}
	_, err = preflight.Run(context.Background(), gpu.None{}, 8*gib, preflight.Options{GPU: 0})
	if errKind(err) != "request" {
		t.Errorf("asking for a GPU on a machine without one: %v", err)
	}
}

func TestMIGDevicesAreCandidates(t *testing.T) {
	info := gputest.GPU("H100", 80*gib, 80*gib)
	info.MIGEnabled = true
	info.MIGDevices = []gpu.MIGDevice{
		{UUID: "MIG-small", MemoryTotalBytes: 10 * gib, MemoryFreeBytes: 10 * gib},
		{UUID: "MIG-big", MemoryTotalBytes: 40 * gib, MemoryFreeBytes: 39 * gib},
	}
	d, err := preflight.Run(context.Background(), gputest.New(info), 20*gib, preflight.Options{GPU: 0})
	if err != nil {
		t.Fatal(err)
	}
	if d.Visible != "MIG-big" || !d.MIG || d.Free != 39*gib {
		t.Errorf("decision = %+v", d)
	}
}

func TestWaitUntilMemoryFrees(t *testing.T) {
	m := workstation()
	// Another job on GPU 1 ends after a few polls.
	m.Device(1).SetFree(4 * gib)
	m.Device(1).OnRead = func(reads int, info *gpu.Info) {
		if reads >= 4 {
			info.MemoryFreeBytes, info.MemoryUsedBytes = 23*gib, gib
		}
	}
	var status bytes.Buffer
	d, err := preflight.Run(context.Background(), m, 21*gib, preflight.Options{
		GPU: preflight.AnyGPU, Wait: 10 * time.Second, Poll: 5 * time.Millisecond, Status: &status})
	if err != nil {
		t.Fatal(err)
	}
	if d.Visible != "1" || !d.Fits || d.Waited <= 0 {
		t.Errorf("decision = %+v", d)
	}
	// Without a terminal the status is printed once per change, not once per poll.
	lines := strings.Split(strings.TrimSpace(status.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "waiting for GPU memory: need 21.0 GiB") {
		t.Errorf("status = %q", status.String())
	}
}

func TestWaitStatusOnTerminalRewritesLine(t *testing.T) {
	m := workstation()
	m.Device(1).OnRead = func(reads int, info *gpu.Info) {
		if reads >= 3 {
			info.MemoryFreeBytes = 23 * gib
		}
	}
	var status bytes.Buffer
	_, err := preflight.Run(context.Background(), m, 23*gib, preflight.Options{
		GPU: preflight.AnyGPU, Wait: 10 * time.Second, Poll: time.Millisecond, Status: &status, StatusTTY: true})
	if err != nil {
		t.Fatal(err)
	}
	out := status.String()
	if strings.Count(out, "\r\033[K") != 2 || !strings.HasSuffix(out, "\n") {
		t.Errorf("status = %q", out)
	}
}

func TestWaitTimesOut(t *testing.T) {
	// 23 GiB could fit a 24 GiB card once its memory frees up; none does in time.
	start := time.Now()
	_, err := preflight.Run(context.Background(), workstation(), 23*gib, preflight.Options{
		GPU: preflight.AnyGPU, Wait: 50 * time.Millisecond, Poll: 10 * time.Millisecond})
	var nf *preflight.NoFitError
	if !errors.As(err, &nf) || nf.Waited < 40*time.Millisecond || nf.TooBig {
		t.Fatalf("err = %v (%+v)", err, nf)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("wait took %s", el)
	}
}

// A run larger than every GPU's total memory is refused at once, even with a long
// --wait-gpu: no other job finishing can make it fit.
func TestTooBigForEveryGPURefusedWithoutWaiting(t *testing.T) {
	tests := []struct {
		name string
		opts preflight.Options
		want int // the GPU named in the refusal
	}{
		{"any gpu", preflight.Options{GPU: preflight.AnyGPU, Wait: time.Hour, Poll: time.Millisecond}, 0},
		{"requested gpu", preflight.Options{GPU: 2, Wait: time.Hour, Poll: time.Millisecond}, 2},
		{"without waiting", preflight.Options{GPU: preflight.AnyGPU}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := preflight.Run(ctx, workstation(), 40*gib, tt.opts)
			var nf *preflight.NoFitError
			if !errors.As(err, &nf) {
				t.Fatalf("err = %v, want a NoFitError at once", err)
			}
			if !nf.TooBig || nf.Waited != 0 || nf.Best.Index != tt.want || nf.Best.Total != 24*gib {
				t.Errorf("no-fit = %+v", nf)
			}
			for _, want := range []string{"40.0 GiB", "24.0 GiB", "in total", "waiting cannot help"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q lacks %q", err.Error(), want)
				}
			}
		})
	}
	// --force still places it.
	d, err := preflight.Run(context.Background(), workstation(), 40*gib, preflight.Options{GPU: preflight.AnyGPU, Force: true})
	if err != nil || !d.Forced {
		t.Fatalf("forced: %+v, %v", d, err)
	}
}

// A MIG-enabled GPU without MIG instances offers CUDA no device: the pre-flight says
// so (exit 3) instead of sending the run to the CPU.
func TestMIGWithoutInstancesIsNotTheCPU(t *testing.T) {
	mig := gputest.GPU("H100", 80*gib, 80*gib)
	mig.MIGEnabled = true
	tests := []struct {
		name    string
		mgr     *gputest.Manager
		gpu     int
		wantErr string
		wantVis string
	}{
		{"only gpu", gputest.New(mig), preflight.AnyGPU, "unusable", ""},
		{"requested", gputest.New(gputest.GPU("L4", 24*gib, 20*gib), mig), 1, "unusable", ""},
		{"another gpu is usable", gputest.New(gputest.GPU("L4", 24*gib, 20*gib), mig), preflight.AnyGPU, "", "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := preflight.Run(context.Background(), tt.mgr, gib, preflight.Options{GPU: tt.gpu})
			if kind := errKind(err); kind != tt.wantErr {
				t.Fatalf("err %v (%s), decision %+v; want %q", err, kind, d, tt.wantErr)
			}
			if tt.wantErr != "" {
				if !strings.Contains(err.Error(), "MIG enabled but no MIG instance") {
					t.Errorf("message %q does not say why", err)
				}
				return
			}
			if d.CPU || d.Visible != tt.wantVis {
				t.Errorf("decision = %+v", d)
			}
		})
	}
}

func TestWaitHonoursCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := preflight.Run(ctx, workstation(), 23*gib, preflight.Options{
		GPU: preflight.AnyGPU, Wait: time.Hour, Poll: 5 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

// errKind names a pre-flight error's type, which the CLI maps to an exit code.
func errKind(err error) string {
	var (
		noFit    *preflight.NoFitError
		request  *preflight.RequestError
		unusable *preflight.UnusableError
	)
	switch {
	case errors.As(err, &noFit):
		return "nofit"
	case errors.As(err, &request):
		return "request"
	case errors.As(err, &unusable):
		return "unusable"
	case err != nil:
		return "other"
	}
	return ""
}
