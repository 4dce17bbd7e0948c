package plugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/loractl/loractl/driver"
	pb "github.com/loractl/loractl/driver/proto"
)

// server serves one driver.Driver as the gRPC Driver service.
type server struct {
	pb.UnimplementedDriverServer
	impl driver.Driver
}

// NewServer wraps d as the gRPC Driver service. Plugins normally reach it through
// Serve; it is exported for hosting a driver on a gRPC server of one's own.
func NewServer(d driver.Driver) pb.DriverServer { return &server{impl: d} }

func (s *server) Info(context.Context, *pb.InfoRequest) (*pb.InfoResponse, error) {
	_, render := s.impl.(driver.Renderer)
	_, array := s.impl.(driver.ArraySubmitter)
	return &pb.InfoResponse{
		Name:          s.impl.Name(),
		HandleVersion: driver.HandleVersion,
		Render:        render,
		StartArray:    array,
	}, nil
}

func (s *server) Start(ctx context.Context, req *pb.StartRequest) (*pb.StartResponse, error) {
	if req.GetTask() == nil {
		return nil, toStatus(errors.New("start: no task"))
	}
	h, err := s.impl.Start(ctx, taskFromPB(req.GetTask()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.StartResponse{Handle: handleToPB(h)}, nil
}

// Wait is a long-lived unary call rather than a stream: gRPC cancels the handler's
// ctx when the caller's is cancelled (or the connection drops), which is all the
// driver needs, and there is nothing to stream since progress travels in run-dir files.
func (s *server) Wait(ctx context.Context, req *pb.WaitRequest) (*pb.WaitResponse, error) {
	res, err := s.impl.Wait(ctx, handleFromPB(req.GetHandle()))
	if err != nil {
		return nil, toStatus(err)
	}
	if res == nil {
		return nil, toStatus(fmt.Errorf("driver %s: wait returned no result", s.impl.Name()))
	}
	return &pb.WaitResponse{Result: exitToPB(res)}, nil
}

func (s *server) Signal(ctx context.Context, req *pb.SignalRequest) (*pb.SignalResponse, error) {
	if err := s.impl.Signal(ctx, handleFromPB(req.GetHandle()), req.GetSignal()); err != nil {
		return nil, toStatus(err)
	}
	return &pb.SignalResponse{}, nil
}

func (s *server) Stop(ctx context.Context, req *pb.StopRequest) (*pb.StopResponse, error) {
	if err := s.impl.Stop(ctx, handleFromPB(req.GetHandle()), time.Duration(req.GetGraceNanos())); err != nil {
		return nil, toStatus(err)
	}
	return &pb.StopResponse{}, nil
}

func (s *server) Inspect(ctx context.Context, req *pb.InspectRequest) (*pb.InspectResponse, error) {
	st, err := s.impl.Inspect(ctx, handleFromPB(req.GetHandle()))
	if err != nil {
		return nil, toStatus(err)
	}
	if st == nil {
		return nil, toStatus(fmt.Errorf("driver %s: inspect returned no status", s.impl.Name()))
	}
	return &pb.InspectResponse{Status: statusToPB(st)}, nil
}

func (s *server) Render(_ context.Context, req *pb.RenderRequest) (*pb.RenderResponse, error) {
	r, ok := s.impl.(driver.Renderer)
	if !ok {
		return nil, toStatus(fmt.Errorf("driver %s cannot render a launch: %w", s.impl.Name(), driver.ErrNotSupported))
	}
	out, err := r.Render(taskFromPB(req.GetTask()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.RenderResponse{Rendered: out}, nil
}

func (s *server) StartArray(ctx context.Context, req *pb.StartArrayRequest) (*pb.StartArrayResponse, error) {
	a, ok := s.impl.(driver.ArraySubmitter)
	if !ok {
		return nil, toStatus(fmt.Errorf("driver %s cannot launch arrays: %w", s.impl.Name(), driver.ErrNotSupported))
	}
	tasks := make([]*driver.Task, len(req.GetTasks()))
	for i, t := range req.GetTasks() {
		tasks[i] = taskFromPB(t)
	}
	hs, err := a.StartArray(ctx, tasks, int(req.GetMaxParallel()))
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.StartArrayResponse{Handles: make([]*pb.Handle, len(hs))}
	for i, h := range hs {
		resp.Handles[i] = handleToPB(h)
	}
	return resp, nil
}
