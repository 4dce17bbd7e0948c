package iostreams

import (
	"io"
	"sync"
)

// SwapWriter forwards writes to a writer that can be replaced while in use: the
// controller's log writes through it, and a command showing a live status line points
// it at a writer that keeps log lines above that line.
type SwapWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewSwapWriter forwards to w until Swap.
func NewSwapWriter(w io.Writer) *SwapWriter { return &SwapWriter{w: w} }

func (s *SwapWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	w := s.w
	s.mu.Unlock()
	return w.Write(b)
}

// Swap makes w the destination and returns a func that restores the previous one.
func (s *SwapWriter) Swap(w io.Writer) (restore func()) {
	s.mu.Lock()
	prev := s.w
	s.w = w
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.w = prev
		s.mu.Unlock()
	}
}
