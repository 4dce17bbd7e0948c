package config

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// MaxFileBytes is the largest YAML file loractl reads (configs, sweep files). A real
// config is a few KiB; the cap keeps a wrong path (a dataset, /dev/zero) from being
// read into memory and handed to the YAML parser.
const MaxFileBytes = 1 << 20

// MaxDepth bounds how deeply a YAML file's collections nest. A real config nests four
// or five levels; the YAML parser's cost grows much faster than linearly with depth
// (100,000 nested "[" took over a minute and 12 GB), so depth is checked before it runs.
const MaxDepth = 64

// ReadFile reads a YAML file for loractl: it must be a regular file (not a FIFO or a
// device, which could block or never end) of at most MaxFileBytes. The error names the
// file and says what is wrong, in milliseconds whatever the path is.
func ReadFile(path string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &FieldError{File: path, Msg: fmt.Sprintf("not a regular file (%s): a config is a YAML file", modeWord(fi.Mode()))}
	}
	if fi.Size() > MaxFileBytes {
		return nil, &FieldError{File: path, Msg: fmt.Sprintf("%d bytes, over the %d-byte (1 MiB) limit for a YAML file: not a config", fi.Size(), MaxFileBytes)}
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileBytes {
		return nil, &FieldError{File: path, Msg: fmt.Sprintf("over the %d-byte (1 MiB) limit for a YAML file (it grew while being read)", MaxFileBytes)}
	}
	return b, nil
}

func modeWord(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a device"
	case m&os.ModeSocket != 0:
		return "a socket"
	}
	return m.Type().String()
}

// checkDepth refuses YAML whose nesting exceeds MaxDepth, without parsing it: flow
// collections ("[", "{", outside quotes and comments) and block nesting (one level per
// indentation step and per "- " that opens a sequence entry) are counted in one pass.
// It errs on the side of counting: a plain scalar holding "[" counts too, which only
// matters past 64 levels. The same pass counts items (lines with content, and commas
// and brackets in flow collections) and refuses more than maxExpandedNodes of them, the
// bound the alias guard applies after parsing: the parser's time grows with them.
func checkDepth(path string, src []byte) *FieldError {
	var indents []int // the block structure: indentation of each open level
	flow, items := 0, 0
	line, col := 1, 0
	tooDeep := func() *FieldError {
		return &FieldError{File: path, Line: line, Col: col + 1,
			Msg: fmt.Sprintf("nested more than %d levels deep: not a config", MaxDepth)}
	}
	i := 0
	for i < len(src) {
		// Start of a line: its indentation and leading "- " entries.
		start := i
		for i < len(src) && src[i] == ' ' {
			i++
		}
		indent := i - start
		if i < len(src) && src[i] != '\n' && src[i] != '#' && src[i] != '\r' && flow == 0 {
			for len(indents) > 0 && indent < indents[len(indents)-1] {
				indents = indents[:len(indents)-1]
			}
			if len(indents) == 0 || indent > indents[len(indents)-1] {
				indents = append(indents, indent)
			}
			for i+1 < len(src) && src[i] == '-' && (src[i+1] == ' ' || src[i+1] == '\t') {
				i += 2
				for i < len(src) && (src[i] == ' ' || src[i] == '\t') {
					i++
				}
				indents = append(indents, i-start)
			}
			if len(indents) > MaxDepth {
				col = i - start
				return tooDeep()
			}
			items++
		}
		// The rest of the line: flow brackets outside quotes and comments.
		var quote byte
		for ; i < len(src) && src[i] != '\n'; i++ {
			c := src[i]
			switch {
			case quote == '"' && c == '\\':
				i++
			case quote != 0:
				if c == quote {
					if quote == '\'' && i+1 < len(src) && src[i+1] == '\'' {
						i++
						continue
					}
					quote = 0
				}
			case c == '"' || c == '\'':
				quote = c
			case c == '#' && (i == start || src[i-1] == ' ' || src[i-1] == '\t'):
				for i < len(src) && src[i] != '\n' {
					i++
				}
				i--
			case c == ',':
				items++
			case c == '[' || c == '{':
				flow++
				items++
				if flow+len(indents) > MaxDepth {
					col = i - start
					return tooDeep()
				}
			case c == ']' || c == '}':
				if flow > 0 {
					flow--
				}
			}
		}
		if quote == '\'' || quote == '"' {
			// Quoted scalars may span lines; the next line continues inside it. Rare in
			// a config; treat the quote as closed so a stray quote cannot hide brackets.
			quote = 0
		}
		if items > maxExpandedNodes {
			return &FieldError{File: path, Line: line, Msg: "more than 100,000 values: not a config"}
		}
		i++
		line++
	}
	return nil
}
