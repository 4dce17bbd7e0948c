package dataset

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// DefaultMaxLineBytes is the default per-line byte limit. A chat example of 128k tokens is
// well under 1 MiB; anything far beyond that is almost certainly a broken file (a missing
// newline, a binary file) and must not be buffered whole.
const DefaultMaxLineBytes = 16 << 20

// readBufferSize is the bufio buffer: lines shorter than this are returned without copying.
const readBufferSize = 1 << 20

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// lineReader yields the lines of a JSONL stream one at a time with bounded memory: a line
// longer than max is not buffered but skipped to its newline, and reported by length only.
type lineReader struct {
	r       *bufio.Reader
	max     int
	long    []byte // holds a line that spans several buffer fills (≤ max bytes)
	lineNo  int
	offset  int64 // bytes consumed so far
	started bool
}

func newLineReader(r io.Reader, max int) *lineReader {
	if max <= 0 {
		max = DefaultMaxLineBytes
	}
	return &lineReader{r: bufio.NewReaderSize(r, readBufferSize), max: max}
}

// rawLine is one line without its terminator ("\n" or "\r\n").
type rawLine struct {
	No   int    // 1-based line number
	Data []byte // valid until the next call to next; nil when TooLong
	// TooLong is set when the line exceeded the limit; Size is then its full length.
	TooLong bool
	Size    int64
}

// next returns the next line, or io.EOF after the last one. A final line without a newline
// is still a line; an empty stream has no lines.
func (lr *lineReader) next() (rawLine, error) {
	lr.long = lr.long[:0]
	var size int64
	tooLong := false
	for {
		chunk, err := lr.r.ReadSlice('\n')
		size += int64(len(chunk))
		lr.offset += int64(len(chunk))
		if !tooLong {
			if len(lr.long) == 0 && err == nil && len(chunk) <= lr.max+2 {
				// Fast path: the whole line sits in the buffer.
				return lr.finish(chunk, size, false, true)
			}
			if len(lr.long)+len(chunk) > lr.max+2 {
				tooLong = true
				lr.long = lr.long[:0]
			} else {
				lr.long = append(lr.long, chunk...)
			}
		}
		switch {
		case err == nil:
			return lr.finish(lr.long, size, tooLong, true)
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if size == 0 {
				return rawLine{}, io.EOF
			}
			return lr.finish(lr.long, size, tooLong, false)
		default:
			return rawLine{}, err
		}
	}
}

func (lr *lineReader) finish(b []byte, size int64, tooLong, newline bool) (rawLine, error) {
	lr.lineNo++
	b = bytes.TrimSuffix(b, []byte{'\n'})
	b = bytes.TrimSuffix(b, []byte{'\r'})
	if !lr.started {
		lr.started = true
		// A UTF-8 byte order mark is tolerated (editors on Windows write one, and the
		// trainer's JSON loader accepts it); it is not part of the first record.
		b = bytes.TrimPrefix(b, utf8BOM)
	}
	if tooLong || len(b) > lr.max {
		if newline {
			size-- // the terminator is not part of the line
		}
		return rawLine{No: lr.lineNo, TooLong: true, Size: size}, nil
	}
	return rawLine{No: lr.lineNo, Data: b, Size: int64(len(b))}, nil
}
