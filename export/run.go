package export

import (
	"os"
	"path/filepath"

	"github.com/loractl/loractl/config"
	"github.com/loractl/loractl/run"
)

// RunInfo is what the export and chat commands read from a run dir besides the manifest.
type RunInfo struct {
	// SystemPrompt is the run's data.system_prompt (@FILE read), "" when none.
	SystemPrompt string
	// Python is the interpreter the run's config names (python:), "" for the default.
	Python string
}

// ReadRunInfo parses the run's config copy with its recorded overrides. A config that
// no longer parses (a prompt file gone) gives what could be read and the error.
func ReadRunInfo(runDir string, m *run.Manifest) (RunInfo, error) {
	src, err := os.ReadFile(filepath.Join(runDir, run.ConfigFile))
	if err != nil {
		return RunInfo{}, err
	}
	cfg, err := config.Parse(m.ConfigPath, src, m.Overrides)
	if err != nil {
		return RunInfo{}, err
	}
	return RunInfo{SystemPrompt: cfg.SystemPrompt, Python: cfg.Spec.Python}, nil
}
