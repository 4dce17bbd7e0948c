package train

import (
	"context"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/internal/runner"
)

// preLaunch runs the checks that must pass before anything is launched: the data
// check and the GPU pre-flight. They fill in lo (warnings and the estimate for the
// manifest, the chosen GPU).
func (o *Options) preLaunch(ctx context.Context, cfg *config.Config, p *runner.Prepared, lo *runner.LaunchOptions) error {
	return nil
}
