package train

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/runner"
)

// sampleGPU records the run's GPU (memory used, utilisation, power, temperature)
// into events.jsonl every few seconds while the trainer runs, so the progress line,
// `logs` and the manifest's reader see what the GPU did. It returns the stop function.
func (o *Options) sampleGPU(ctx context.Context, a *runner.Active) func() {
	if o.gpuIndex < 0 {
		return func() {}
	}
	mgr, err := gpu.Open(o.GPUManager())
	if err != nil || gpu.IsNone(mgr) {
		return func() {}
	}
	devs, err := mgr.Devices()
	var dev gpu.Device
	for _, d := range devs {
		if d.Index() == o.gpuIndex {
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
		o.nvmlPeak = max(o.nvmlPeak, smp.MemoryUsedBytes)
		write(at, smp)
	}
	s := &gpu.Sampler{Device: dev, Interval: gpu.DefaultSampleInterval, Emit: emit,
		OnError: func(err error) { o.Factory.Log.Debug().Err(err).Msg("gpu sample") }}
	go func() {
		defer wg.Done()
		s.Run(ctx)
	}()
	return func() {
		cancel()
		wg.Wait()
		fh.Close()
		_ = mgr.Shutdown()
	}
}
