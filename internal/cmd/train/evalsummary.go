package train

import (
	"github.com/loractl/loractl/runner"
	"github.com/loractl/loractl/taskeval"
)

// evalLines prints the task evaluation, nothing without one.
func evalLines(s *taskeval.Summary) []string {
	if s == nil {
		return nil
	}
	return s.Lines()
}

// evalWarnings logs what went wrong after training without failing the run.
func (o *Options) evalWarnings(out *runner.Outcome) {
	log := o.Factory.Log
	if out.EvalErr != nil {
		log.Warn().Err(out.EvalErr).Msg("task evaluation not summarised; the verdict is the eval loss's")
	}
	if out.JudgeErr != nil {
		log.Warn().Err(out.JudgeErr).Msg("judge")
	}
	if out.ReportErr != nil {
		log.Warn().Err(out.ReportErr).Msg("report not written")
	}
}
