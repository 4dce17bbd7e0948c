// Package cmdutil holds what every loractl command shares: the Factory of
// dependencies, typed exit codes, and small flag helpers.
package cmdutil

import (
	"errors"
	"fmt"

	"github.com/loractl/loractl/gpu/preflight"
	"github.com/loractl/loractl/launch"
)

// Documented exit codes (see `loractl help exit-codes`).
const (
	ExitOK          = 0   // success
	ExitFailed      = 1   // the run (or the data check) failed
	ExitInvalid     = 2   // invalid input: config, data, flags
	ExitNoFit       = 3   // GPU pre-flight refused: the run would not fit
	ExitInterrupted = 130 // interrupted by SIGINT/SIGTERM (a checkpoint was saved)
)

// ExitError carries an exit code up to main. Commands return it (wrapped or not);
// main prints the message and exits with Code.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Invalid wraps err as an invalid-input error (exit 2).
func Invalid(err error) error { return &ExitError{Code: ExitInvalid, Err: err} }

// Invalidf formats an invalid-input error (exit 2).
func Invalidf(format string, a ...any) error { return Invalid(fmt.Errorf(format, a...)) }

// Failed wraps err as a failed-run error (exit 1).
func Failed(err error) error { return &ExitError{Code: ExitFailed, Err: err} }

// SilentExit ends the command with code without printing anything more: the command
// already reported what happened.
func SilentExit(code int) error { return &ExitError{Code: code} }

// ExitCode maps an error returned by a command to the process exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	// The typed errors of the packages below the commands, decided here at the edge.
	var (
		noFit    *preflight.NoFitError
		unusable *preflight.UnusableError
		request  *preflight.RequestError
		input    *launch.InputError
		data     *launch.DataCheckError
	)
	switch {
	case errors.As(err, &noFit), errors.As(err, &unusable):
		return ExitNoFit
	case errors.As(err, &request), errors.As(err, &input), errors.As(err, &data):
		return ExitInvalid
	}
	return ExitFailed
}
