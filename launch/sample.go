package launch

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/runner"
)

// sampling names the GPU a run was placed on and how to open NVML.
type sampling struct {
	gpu     int // -1: none (the CPU, or a trainer on another machine)
	manager func() gpu.Manager
}

// start records the run's GPU (memory used, utilisation, power, temperature) into
// events.jsonl every few seconds while the trainer runs, so the progress line, `logs`
// and the summary see what the GPU did; peak gets the most memory seen in use. It
// returns the stop function, after which peak is final.
func (s *sampling) start(ctx context.Context, a *runner.Active, log *zerolog.Logger, peak *uint64) func() {
	if s == nil || s.gpu < 0 || s.manager == nil {
		return func() {}
	}
	mgr, err := gpu.Open(s.manager())
	if err != nil || gpu.IsNone(mgr) {
		return func() {}
	}
	devs, err := mgr.Devices()
	var dev gpu.Device
	for _, d := range devs {
		if d.Index() == s.gpu {
			dev = d
		}
	}
	if err != nil || dev == nil {
		_ = mgr.Shutdown()
		return func() {}
	}
	fh, err := run.OpenFileNoFollow(filepath.Join(a.Dir, run.EventsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		_ = mgr.Shutdown()
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	write := gpu.EventWriter(fh)
	emit := func(at time.Time, smp gpu.Sample) {
		*peak = max(*peak, smp.MemoryUsedBytes)
		write(at, smp)
	}
	sm := &gpu.Sampler{Device: dev, Interval: gpu.DefaultSampleInterval, Emit: emit,
		OnError: func(err error) { log.Debug().Err(err).Msg("gpu sample") }}
	go func() {
		defer wg.Done()
		sm.Run(ctx)
	}()
	return func() {
		cancel()
		wg.Wait()
		fh.Close()
		_ = mgr.Shutdown()
	}
}
