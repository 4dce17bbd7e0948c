package openaiimport

import (
	"bufio"
	"io"
)

func newTestReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 16) }
