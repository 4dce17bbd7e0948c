package openaiimport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/loractl/loractl/dataset"
)

// fileResult is the outcome of converting one OpenAI JSONL file.
type fileResult struct {
	counts Counts
	// lineOf maps an output line (1-based index) to its input line.
	lineOf []int
	// problems are the rows that stop the import (foreign formats, DPO rows, image rows
	// without --skip-unsupported), by kind.
	foreign    []problem
	preference []int
	images     []problem
}

type problem struct {
	line       int
	what, path string
}

// convertFile converts src (OpenAI chat fine-tuning JSONL) into dst, row by row in
// order. Blank lines are dropped; lines that are not OpenAI chat rows are collected as
// problems (and not written).
func convertFile(ctx context.Context, src, dst string, skipUnsupported bool) (*fileResult, error) {
	in, err := dataset.OpenInput(src)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriterSize(out, 1<<20)
	res := &fileResult{}
	r := bufio.NewReaderSize(in, 1<<20)
	for no := 1; ; no++ {
		if no&4095 == 0 {
			if err := ctx.Err(); err != nil {
				_ = out.Close()
				return nil, err
			}
		}
		line, err := readLine(r, dataset.DefaultMaxLineBytes)
		if errors.Is(err, io.EOF) && line == nil {
			break
		}
		if errors.Is(err, errLineTooLong) {
			_ = out.Close()
			return nil, inputf("%s:%d: line longer than %d bytes", src, no, dataset.DefaultMaxLineBytes)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			_ = out.Close()
			return nil, fmt.Errorf("reading %s: %w", src, err)
		}
		if no == 1 {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		rr := convertRow(line)
		switch rr.kind {
		case rowForeign:
			res.foreign = append(res.foreign, problem{line: no, what: rr.what})
			continue
		case rowPreference:
			res.preference = append(res.preference, no)
			continue
		case rowImage:
			if skipUnsupported {
				res.counts.Skipped++
				res.counts.SkippedLines = append(res.counts.SkippedLines, no)
			} else {
				res.images = append(res.images, problem{line: no, what: rr.what, path: rr.path})
			}
			continue
		}
		res.counts.add(rr.changes)
		res.counts.Rows++
		res.lineOf = append(res.lineOf, no)
		if _, err := w.Write(rr.out); err != nil {
			_ = out.Close()
			return nil, err
		}
		if err := w.WriteByte('\n'); err != nil {
			_ = out.Close()
			return nil, err
		}
	}
	if err := w.Flush(); err != nil {
		_ = out.Close()
		return nil, err
	}
	return res, out.Close()
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its "\n" (and a "\r" before it), as the data
// check and the trainer split lines: at "\n" only.
func readLine(r *bufio.Reader, maxBytes int) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > maxBytes {
			return nil, errLineTooLong
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if len(buf) == 0 {
				return nil, err
			}
			return buf, nil
		}
		buf = bytes.TrimSuffix(buf, []byte("\n"))
		return bytes.TrimSuffix(buf, []byte("\r")), nil
	}
}

func (c *Counts) add(o Counts) {
	c.Unchanged += o.Unchanged
	c.LegacyFunctions += o.LegacyFunctions
	c.Tools += o.Tools
	c.ToolCalls += o.ToolCalls
	c.ArgumentsDecoded += o.ArgumentsDecoded
	c.ParallelToolCalls += o.ParallelToolCalls
	c.Weight0Turns += o.Weight0Turns
	c.TextParts += o.TextParts
	c.NullContent += o.NullContent
}

// problemsError turns a file's blocking rows into one input error that lists them.
func (r *fileResult) problemsError(src string, maxListed int) error {
	var b strings.Builder
	if len(r.foreign) > 0 {
		p := r.foreign[0]
		fmt.Fprintf(&b, "%s:%d: %s, not OpenAI chat fine-tuning rows: expected one {\"messages\": [{\"role\": ..., \"content\": ...}, ...]} "+
			"object per line (OpenAI's chat format); %d such %s. Convert other formats with `loractl data convert`, then import or train the result",
			src, p.line, p.what, len(r.foreign), plural(len(r.foreign), "line", "lines"))
		return inputf("%s", b.String())
	}
	if n := len(r.preference); n > 0 {
		fmt.Fprintf(&b, "%s: %d preference %s (input, preferred_output, non_preferred_output: OpenAI's DPO format), lines %s: "+
			"loractl trains supervised (SFT) LoRA adapters and cannot train DPO yet; import the supervised data the model was first "+
			"fine-tuned on, or build SFT rows from input + preferred_output",
			src, n, plural(n, "row", "rows"), lineList(r.preference, maxListed))
		return inputf("%s", b.String())
	}
	if n := len(r.images); n > 0 {
		fmt.Fprintf(&b, "%s: %d %s with image or other non-text content parts, which loractl's text models cannot train on (--skip-unsupported drops and counts them):",
			src, n, plural(n, "row", "rows"))
		for i, p := range r.images {
			if i == maxListed {
				fmt.Fprintf(&b, "\n  … and %d more", n-maxListed)
				break
			}
			fmt.Fprintf(&b, "\n  %s:%d: %s: a %q part", src, p.line, p.path, p.what)
		}
		return inputf("%s", b.String())
	}
	return nil
}

func lineList(lines []int, maxListed int) string {
	var parts []string
	for i, l := range lines {
		if i == maxListed {
			parts = append(parts, fmt.Sprintf("… (%d in all)", len(lines)))
			break
		}
		parts = append(parts, fmt.Sprint(l))
	}
	return strings.Join(parts, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
