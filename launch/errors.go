package launch

import (
	"fmt"
	"io"

	"github.com/loractl/loractl/dataset"
)

// InputError is a run that cannot be launched as configured (QLoRA on a machine without
// CUDA, data files the check cannot read): the user's input, exit 2 at the CLI edge.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputErrorf(format string, a ...any) error { return &InputError{Err: fmt.Errorf(format, a...)} }

// DataCheckError is a data check that found errors: nothing was launched. Write lists
// them for the user (the CLI prints it and exits 2).
type DataCheckError struct{ Report *dataset.Report }

func (e *DataCheckError) Error() string {
	return fmt.Sprintf("data check found %d error(s); nothing was launched", e.Report.ErrorsTotal)
}

// Write prints the errors as `file:line: path: message (code)`, one per line, under a
// header; the report keeps the first ones, and the rest are counted.
func (e *DataCheckError) Write(w io.Writer) {
	rep := e.Report
	fmt.Fprintf(w, "%s:\n", e.Error())
	for _, de := range rep.Errors {
		file := de.File
		if file == "" {
			file = rep.File
		}
		where := file // an error about the whole file has no line: never "file:0"
		if de.Line > 0 {
			where = fmt.Sprintf("%s:%d", file, de.Line)
		}
		if de.Path != "" {
			where += ": " + de.Path
		}
		fmt.Fprintf(w, "  %s: %s (%s)\n", where, de.Message, de.Code)
	}
	if more := rep.ErrorsTotal - len(rep.Errors); more > 0 {
		fmt.Fprintf(w, "  ... and %d more (loractl data check %s)\n", more, rep.File)
	}
}
