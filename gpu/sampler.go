package gpu

import (
	"context"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// DefaultSampleInterval is how often a live run's GPU is sampled: often enough to see
// the memory ramp of the first steps, rare enough to cost nothing.
const DefaultSampleInterval = 5 * time.Second

// Sampler polls one device until its context ends and hands every sample to Emit.
type Sampler struct {
	Device   Device
	Interval time.Duration
	// Emit receives each sample with the time it was taken. It is called from the
	// sampler's goroutine only.
	Emit func(time.Time, Sample)
	// OnError, when set, receives failed reads; sampling goes on regardless,
	// because a transient NVML error should not end the record of a long run.
	OnError func(error)
}

// Run samples immediately, then every Interval, until ctx is done.
func (s *Sampler) Run(ctx context.Context) {
	interval := s.Interval
	if interval <= 0 {
		interval = DefaultSampleInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		sample, err := s.Device.Sample()
		if err != nil && s.OnError != nil {
			s.OnError(err)
		}
		// A partial sample (memory read, power not) is still recorded.
		if err == nil || sample.MemoryUsedBytes > 0 {
			s.Emit(time.Now(), sample)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Event is the `gpu` line the controller appends to events.jsonl (see
// docs/trainer-contract.md).
type Event struct {
	Type string `json:"type"`
	Time string `json:"time"`
	Sample
}

// NewEvent wraps a sample as a `gpu` event stamped with t in RFC 3339 UTC.
func NewEvent(t time.Time, s Sample) Event {
	return Event{Type: "gpu", Time: t.UTC().Format(time.RFC3339Nano), Sample: s}
}

// EventWriter returns an Emit function that appends `gpu` events as JSON lines to w.
// Writes are serialised so w may be shared with other writers that use the same lock
// discipline (one whole line per Write).
func EventWriter(w io.Writer) func(time.Time, Sample) {
	var mu sync.Mutex
	return func(t time.Time, s Sample) {
		b, err := json.Marshal(NewEvent(t, s))
		if err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		_, _ = w.Write(append(b, '\n'))
	}
}
