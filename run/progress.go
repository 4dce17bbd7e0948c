package run

import (
	"bytes"
	"io"
	"path/filepath"
)

// lastStepWindow is how much of the end of events.jsonl LastStep reads: a few hundred
// events, far more than lie between two log lines.
const lastStepWindow = 256 << 10

// LastStep returns the newest training step a run's events report (its last log,
// checkpoint, start or end event with a step), reading only the end of events.jsonl,
// so `runs` can show live progress without the controller rewriting the manifest at
// every step. ok=false when no event gives one.
func LastStep(runDir string) (step int, ok bool) {
	f, err := OpenNoFollow(filepath.Join(runDir, EventsFile))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, false
	}
	off := max(fi.Size()-lastStepWindow, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return 0, false
	}
	if off > 0 {
		// The window starts inside a line: drop that part.
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	lines := bytes.Split(b, []byte{'\n'})
	for i := len(lines) - 1; i >= 0; i-- {
		e, err := ParseEvent(bytes.TrimSpace(lines[i]))
		if err != nil {
			continue
		}
		switch e.Type {
		case EventLog, EventCheckpoint, EventEnd:
			if e.Step > 0 || e.Type == EventEnd {
				return e.Step, true
			}
		case EventStart:
			return e.ResumeStep, true
		}
	}
	return 0, false
}
