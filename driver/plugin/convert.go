package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loractl/loractl/driver"
	pb "github.com/loractl/loractl/driver/proto"
)

func taskToPB(t *driver.Task) *pb.Task {
	if t == nil {
		return nil
	}
	gpus := make([]int32, len(t.GPUs))
	for i, g := range t.GPUs {
		gpus[i] = int32(g)
	}
	return &pb.Task{
		RunId:    t.RunID,
		RunDir:   t.RunDir,
		Command:  t.Command,
		Env:      t.Env,
		PassEnv:  t.PassEnv,
		ReadOnly: t.ReadOnly,
		Gpus:     gpus,
		LogPath:  t.LogPath,
		Options:  t.Options,
	}
}

func taskFromPB(t *pb.Task) *driver.Task {
	if t == nil {
		return nil
	}
	var gpus []int
	for _, g := range t.GetGpus() {
		gpus = append(gpus, int(g))
	}
	return &driver.Task{
		RunID:    t.GetRunId(),
		RunDir:   t.GetRunDir(),
		Command:  t.GetCommand(),
		Env:      t.GetEnv(),
		PassEnv:  t.GetPassEnv(),
		ReadOnly: t.GetReadOnly(),
		GPUs:     gpus,
		LogPath:  t.GetLogPath(),
		Options:  rawJSON(t.GetOptions()),
	}
}

func handleToPB(h *driver.Handle) *pb.Handle {
	if h == nil {
		return nil
	}
	return &pb.Handle{Driver: h.Driver, Version: int32(h.Version), Id: h.ID, State: h.State}
}

func handleFromPB(h *pb.Handle) *driver.Handle {
	if h == nil {
		return nil
	}
	return &driver.Handle{Driver: h.GetDriver(), Version: int(h.GetVersion()), ID: h.GetId(), State: rawJSON(h.GetState())}
}

// rawJSON keeps "absent" absent: an empty byte slice from the wire becomes nil, so
// omitempty and len checks behave as they would in-process.
func rawJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	return json.RawMessage(b)
}

func exitToPB(r *driver.ExitResult) *pb.ExitResult {
	if r == nil {
		return nil
	}
	return &pb.ExitResult{ExitCode: int32(r.ExitCode), Signal: int32(r.Signal), OomKilled: r.OOMKilled, Reason: r.Reason}
}

func exitFromPB(r *pb.ExitResult) *driver.ExitResult {
	if r == nil {
		return nil
	}
	return &driver.ExitResult{ExitCode: int(r.GetExitCode()), Signal: int(r.GetSignal()), OOMKilled: r.GetOomKilled(), Reason: r.GetReason()}
}

func statusToPB(s *driver.Status) *pb.Status {
	if s == nil {
		return nil
	}
	return &pb.Status{
		State:              string(s.State),
		Reason:             s.Reason,
		StartedAtUnixNano:  unixNano(s.StartedAt),
		FinishedAtUnixNano: unixNano(s.FinishedAt),
		Exit:               exitToPB(s.Exit),
	}
}

func statusFromPB(s *pb.Status) *driver.Status {
	if s == nil {
		return nil
	}
	return &driver.Status{
		State:      driver.TaskState(s.GetState()),
		Reason:     s.GetReason(),
		StartedAt:  fromUnixNano(s.GetStartedAtUnixNano()),
		FinishedAt: fromUnixNano(s.GetFinishedAtUnixNano()),
		Exit:       exitFromPB(s.GetExit()),
	}
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// codeOf maps the contract's sentinel errors onto gRPC codes, so errors.Is keeps
// working on the far side of the wire. Every other error travels as Unknown with
// its message.
func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, driver.ErrTaskNotFound):
		return codes.NotFound
	case errors.Is(err, driver.ErrHandleVersion):
		return codes.FailedPrecondition
	case errors.Is(err, driver.ErrNotSupported):
		return codes.Unimplemented
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Unknown
}

// toStatus is the server half of the mapping.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	return status.Error(codeOf(err), err.Error())
}

// remoteError is an error that came back from a plugin: its text is the plugin's own
// message, and it unwraps to the contract's sentinel error the gRPC code stood for.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// fromStatus is the client half of the mapping. ctx is the caller's context: when it
// is done, its own error is returned so callers see context.Canceled rather than a
// transport message.
func fromStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	var sentinel error
	switch st.Code() {
	case codes.NotFound:
		sentinel = driver.ErrTaskNotFound
	case codes.FailedPrecondition:
		sentinel = driver.ErrHandleVersion
	case codes.Unimplemented:
		sentinel = driver.ErrNotSupported
	case codes.Canceled:
		sentinel = context.Canceled
	case codes.DeadlineExceeded:
		sentinel = context.DeadlineExceeded
	case codes.Unavailable:
		return &remoteError{msg: "driver plugin is not reachable (did it exit?): " + st.Message(), sentinel: ErrPluginUnavailable}
	default:
		return errors.New(st.Message())
	}
	return &remoteError{msg: st.Message(), sentinel: sentinel}
}

// ErrPluginUnavailable means the driver executable went away mid-call (it crashed or
// was killed). The task it launched may still be running: reattach with its handle.
var ErrPluginUnavailable = errors.New("driver plugin unavailable")
