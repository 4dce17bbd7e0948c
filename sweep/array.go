package sweep

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/loractl/loractl/driver"
)

// batch is a driver that turns the Start calls of n concurrent run launches into one
// job array. Every point still goes through runner.Launch (run dir, manifest, lock,
// the same refusals as `loractl train`); only the driver's Start is deferred until
// all n launches have reached it, then StartArray submits them together and each
// launch gets its own handle back. A launch that fails before it reaches Start
// withdraws, so the others are never left waiting.
//
// Launches hold a slot of sem while they write their run dirs, and give it up while
// they wait in Start: a thousand goroutines creating files in one runs directory at
// once spend their time contending for it in the kernel.
type batch struct {
	driver.Driver
	arr         driver.ArraySubmitter
	maxParallel int
	sem         chan struct{}

	// order ranks run ids: array task i is the i-th point in sweep order, whatever
	// order the launches reached Start in.
	order map[string]int

	mu      sync.Mutex
	left    int // launches that have neither called Start nor withdrawn
	tasks   []*driver.Task
	waiters []chan startResult
	called  map[string]bool
	fresh   map[*driver.Handle]bool
}

type startResult struct {
	h   *driver.Handle
	err error
}

// newBatch gathers the launches of runIDs (in sweep order) for d, which must
// implement driver.ArraySubmitter.
func newBatch(d driver.Driver, runIDs []string, maxParallel int) *batch {
	order := make(map[string]int, len(runIDs))
	for i, id := range runIDs {
		order[id] = i
	}
	return &batch{
		Driver: d, arr: d.(driver.ArraySubmitter), maxParallel: maxParallel, left: len(runIDs), order: order,
		sem:    make(chan struct{}, launchConcurrency),
		called: map[string]bool{}, fresh: map[*driver.Handle]bool{},
	}
}

// launchConcurrency is how many launches write their run dirs at once: enough to
// keep the disk's journal committing many fsyncs together, few enough that they do
// not queue on the runs directory's lock (measured with bench/sweep).
const launchConcurrency = 16

// acquire and release bracket a launch's file work (see batch).
func (b *batch) acquire() { b.sem <- struct{}{} }
func (b *batch) release() { <-b.sem }

// Start queues the task and blocks until the array holding it is submitted.
func (b *batch) Start(ctx context.Context, t *driver.Task) (*driver.Handle, error) {
	ch := make(chan startResult, 1)
	b.mu.Lock()
	b.called[t.RunID] = true
	b.tasks = append(b.tasks, t)
	b.waiters = append(b.waiters, ch)
	b.left--
	last := b.left == 0
	b.mu.Unlock()
	b.release()
	defer b.acquire()
	if last {
		b.submit(ctx)
	}
	select {
	case r := <-ch:
		return r.h, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// withdraw is called by a launch that failed before reaching Start.
func (b *batch) withdraw(ctx context.Context, runID string) {
	b.mu.Lock()
	if b.called[runID] {
		b.mu.Unlock()
		return
	}
	b.left--
	last := b.left == 0 && len(b.tasks) > 0
	b.mu.Unlock()
	if last {
		b.submit(ctx)
	}
}

// submit sends every gathered task as one array and hands out the handles.
func (b *batch) submit(ctx context.Context) {
	b.mu.Lock()
	idx := make([]int, len(b.tasks))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(i, j int) bool { return b.order[b.tasks[idx[i]].RunID] < b.order[b.tasks[idx[j]].RunID] })
	tasks := make([]*driver.Task, len(idx))
	waiters := make([]chan startResult, len(idx))
	for i, k := range idx {
		tasks[i], waiters[i] = b.tasks[k], b.waiters[k]
	}
	b.mu.Unlock()
	handles, err := b.arr.StartArray(ctx, tasks, b.maxParallel)
	if err == nil && len(handles) != len(tasks) {
		err = errors.New("the driver returned a handle count that does not match the array")
	}
	b.mu.Lock()
	for i, ch := range waiters {
		if err != nil {
			ch <- startResult{err: err}
			continue
		}
		b.fresh[handles[i]] = true
		ch <- startResult{h: handles[i]}
	}
	b.mu.Unlock()
}

// Inspect answers "pending" for a task of the array just submitted: Launch asks once
// per run, and a thousand scheduler queries for tasks submitted a moment ago would
// cost seconds and tell nothing new. Anything else goes to the real driver.
func (b *batch) Inspect(ctx context.Context, h *driver.Handle) (*driver.Status, error) {
	b.mu.Lock()
	fresh := b.fresh[h]
	b.mu.Unlock()
	if fresh {
		return &driver.Status{State: driver.StatePending}, nil
	}
	return b.Driver.Inspect(ctx, h)
}
