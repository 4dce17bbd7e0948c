package launch

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/loractl/loractl/run"
	"github.com/loractl/loractl/runner"
)

// forwardSignals passes the controller's SIGINT/SIGTERM to the trainer. The first asks
// it to checkpoint and stop; a second is only acknowledged (killing the trainer while
// it writes the checkpoint would lose the work); a third kills.
// count is the caller's: a run the user stopped ends with exit 130 even when the
// third signal killed the trainer.
func forwardSignals(ctx context.Context, a *runner.Active, sigs <-chan os.Signal, log *zerolog.Logger, count *atomic.Int32) {
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case s, ok := <-sigs:
				if !ok {
					return
				}
				switch count.Add(1) {
				case 1:
					name := "INT"
					if s.String() == "terminated" {
						name = "TERM"
					}
					log.Warn().Msg("stopping: the trainer is saving a checkpoint (press Ctrl-C twice more to kill it)")
					a.StopEval() // training may be over: then this stops the judge's calls
					if err := a.Signal(ctx, name); err != nil {
						log.Error().Err(err).Msg("could not signal the trainer")
					}
				case 2:
					log.Warn().Msg("still saving the checkpoint; press Ctrl-C once more to kill the trainer (the checkpoint may be lost)")
				default:
					log.Error().Msg("killing the trainer")
					_ = a.Signal(ctx, "KILL")
				}
			}
		}
	}()
}

// resumeWatch checks that a resumed trainer really continues from the checkpoint's
// step instead of silently starting over, a failure users of other tools report.
type resumeWatch struct {
	want    int
	checked bool
	failed  string
}

func (w *resumeWatch) check(e *run.Event) string {
	if w.want == 0 || w.checked {
		return ""
	}
	switch e.Type {
	case "start":
		if e.ResumeStep != w.want {
			w.checked = true
			w.failed = fmt.Sprintf("resume check failed: the trainer reports resume step %d, the checkpoint is at step %d", e.ResumeStep, w.want)
		}
	case "log":
		w.checked = true
		if e.Step <= w.want {
			w.failed = fmt.Sprintf("resume check failed: first logged step %d does not follow the checkpoint's step %d", e.Step, w.want)
		}
	}
	return w.failed
}
