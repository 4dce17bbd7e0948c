package cmdutil

import (
	"os"
	"path/filepath"
	"strings"
)

// CheckOutput refuses (exit 2) an -o FILE that would replace what the command reads:
// one of the input files, or a file a run directory already holds (its manifest,
// events, config: the run's record). An HTML page in a run directory may be replaced,
// as the report itself writes one there. A new file anywhere is fine.
func CheckOutput(out string, inputs []string, runDirs []string) error {
	st, err := os.Stat(out)
	if err != nil {
		return nil // nothing there to lose (or -o's own error comes when writing)
	}
	for _, in := range inputs {
		if ist, err := os.Stat(in); err == nil && os.SameFile(st, ist) {
			return Invalidf("-o %s would overwrite the input %s", out, in)
		}
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return nil
	}
	for _, dir := range runDirs {
		d, err := filepath.Abs(dir)
		if err != nil {
			continue
		}
		rel, err := filepath.Rel(d, abs)
		if err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && filepath.Ext(abs) != ".html" {
			return Invalidf("-o %s would overwrite %s of the run in %s; write the page elsewhere", out, rel, dir)
		}
	}
	return nil
}
