package cmdutil

import (
	"github.com/rs/zerolog"

	"github.com/loractl/loractl/internal/iostreams"
)

// Factory carries the dependencies commands share. main builds one; tests build their
// own with buffers and fakes. Fields are functions where building the value costs
// something (opening NVML, scanning for plugins) so commands that do not need it do
// not pay for it.
type Factory struct {
	IO  *iostreams.IOStreams
	Log *zerolog.Logger
	// RunsDir returns the base directory of the run store (--runs-dir,
	// LORACTL_RUNS_DIR, default ./runs).
	RunsDir func() string
}
