package train

import (
	"encoding/json"

	"github.com/loractl/loractl/internal/pyenv"
	"github.com/loractl/loractl/launch"
)

// checkOptions are the flags' say in the checks before launch (launch.Check: the data
// check, the estimate, the GPU pre-flight).
func (o *Options) checkOptions() launch.Options {
	return launch.Options{
		Log: o.Factory.Log, GPUManager: o.GPUManager, GPU: o.GPU,
		Wait: o.WaitGPU, Poll: o.WaitPoll, Status: o.Factory.IO.ErrOut, StatusTTY: o.Factory.IO.IsStderrTTY(),
		ResumedBatch: o.resumedBatch(), SkipDataCheck: o.SkipDataCheck, TokenCacheDir: pyenv.TokenCacheDir(),
	}
}

// resumedBatch is the micro-batch recorded in the manifest of the run being resumed,
// or 0 (a fresh run, or a manifest without one).
func (o *Options) resumedBatch() int {
	if o.Resume == "" {
		return 0
	}
	store, err := o.Factory.Store()
	if err != nil {
		return 0
	}
	m, err := store.Manifest(o.Resume)
	if err != nil || len(m.Estimate) == 0 {
		return 0
	}
	var rec struct {
		BatchSize int `json:"batch_size"`
	}
	if json.Unmarshal(m.Estimate, &rec) != nil {
		return 0
	}
	return rec.BatchSize
}
