package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// maxExpandedNodes bounds a config once its aliases are expanded. A real config has
// a few hundred nodes; a file of nested aliases (the "billion laughs") would expand
// to billions and exhaust memory in every walk over the decoded tree.
const maxExpandedNodes = 100_000

// CheckYAML is the guard every loractl YAML file passes before it is decoded (configs,
// sweep files): a leading byte order mark is dropped (body is the rest), and a file
// with several documents, or with aliases that expand past maxExpandedNodes, is
// refused at the line that makes it so.
// It also returns the position of every key (see Positions), from the one parse.
func CheckYAML(path string, src []byte) (body []byte, pos map[string]Position, err error) {
	body, file, err := guardYAML(path, src)
	if err != nil {
		return nil, nil, err
	}
	pos = map[string]Position{}
	for k, p := range indexPositions(file) {
		pos[k] = Position{p.line, p.col}
	}
	return body, pos, nil
}

// guardYAML is CheckYAML returning the parsed file, for the config loader's own walks.
func guardYAML(path string, src []byte) ([]byte, *ast.File, error) {
	// Editors on Windows save a byte order mark; it is not part of the first key.
	body := bytes.TrimPrefix(src, []byte("\xef\xbb\xbf"))
	if len(body) > MaxFileBytes {
		return nil, nil, &FieldError{File: path, Msg: fmt.Sprintf("%d bytes, over the %d-byte (1 MiB) limit for a YAML file: not a config", len(body), MaxFileBytes)}
	}
	if e := checkDepth(path, body); e != nil {
		return nil, nil, e
	}
	file, err := parser.ParseBytes(body, 0)
	if err != nil {
		return nil, nil, &FieldError{File: path, Msg: "invalid YAML: " + yaml.FormatError(err, false, true)}
	}
	if e := oneDocument(path, file); e != nil {
		return nil, nil, e
	}
	if e := boundedAliases(path, file); e != nil {
		return nil, nil, e
	}
	return body, file, nil
}

// oneDocument refuses a file with several YAML documents: only the first would be
// read, and the others would be silently ignored.
func oneDocument(path string, f *ast.File) *FieldError {
	docs := 0
	for _, d := range f.Docs {
		if d == nil || d.Body == nil {
			continue
		}
		docs++
		if docs > 1 {
			e := &FieldError{File: path, Msg: "a second YAML document (after ---): a config is one document; split it into files"}
			tk := d.Body.GetToken()
			if d.Start != nil {
				tk = d.Start
			}
			if tk != nil {
				e.Line, e.Col = tk.Position.Line, tk.Position.Column
			}
			return e
		}
	}
	return nil
}

// boundedAliases refuses a file whose aliases expand past maxExpandedNodes, naming
// the alias that crosses the bound.
func boundedAliases(path string, f *ast.File) *FieldError {
	anchors := map[string]ast.Node{}
	memo := map[ast.Node]int{}
	var over ast.Node
	var size func(n ast.Node) int
	size = func(n ast.Node) int {
		if n == nil || over != nil {
			return 0
		}
		if v, ok := memo[n]; ok {
			return v
		}
		memo[n] = maxExpandedNodes + 1 // a node reached again while sizing it: an alias cycle
		total := 1
		switch n := n.(type) {
		case *ast.AnchorNode:
			anchors[n.Name.GetToken().Value] = n.Value
			total += size(n.Value)
		case *ast.AliasNode:
			if target, ok := anchors[n.Value.GetToken().Value]; ok {
				total += size(target)
			}
		case *ast.MappingNode:
			for _, v := range n.Values {
				total += size(v)
			}
		case *ast.MappingValueNode:
			total += size(n.Key) + size(n.Value)
		case *ast.SequenceNode:
			for _, v := range n.Values {
				total += size(v)
			}
		case *ast.TagNode:
			total += size(n.Value)
		}
		if total > maxExpandedNodes && over == nil {
			over = n
		}
		memo[n] = total
		return total
	}
	for _, d := range f.Docs {
		if d != nil {
			size(d.Body)
		}
	}
	if over == nil {
		return nil
	}
	e := &FieldError{File: path, Msg: "more than 100,000 values once the aliases in this file are expanded (or an alias refers to itself): not a config"}
	if tk := over.GetToken(); tk != nil {
		e.Line, e.Col = tk.Position.Line, tk.Position.Column
	}
	return e
}

// setValue parses a --set value as YAML, so "1e-4", "true" and "[a, b]" get their
// natural types. A value starting with a character YAML reserves ("@file", "`x`")
// is the string it reads as: nobody means a YAML error by it.
func setValue(raw string) (any, error) {
	if strings.HasPrefix(raw, "@") || strings.HasPrefix(raw, "`") {
		return raw, nil
	}
	// The same guard as a file: size, depth, one document (a second one after "---"
	// would otherwise be dropped without a word).
	if _, _, err := guardYAML("value", []byte(raw)); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			return nil, errors.New(strings.TrimPrefix(fe.Msg, "invalid YAML: "))
		}
		return nil, err
	}
	var v any
	err := yaml.Unmarshal([]byte(raw), &v)
	return v, err
}

// pathKeys are the keys whose values are local paths (data.system_prompt as @FILE,
// model when it looks like a path).
var pathKeys = map[string]bool{"data.train": true, "data.eval": true, "data.system_prompt": true, "model": true, "python": true}

// AbsolutePathSets rewrites --set values of path keys that are relative paths into
// absolute ones, relative to the working directory: a path typed on the command line
// is the shell's, not the config file's, and the run records where it pointed. Sets
// that come from files (a sweep's points) keep resolving against the config's dir.
func AbsolutePathSets(sets []string) []string {
	out := make([]string, len(sets))
	for i, s := range sets {
		out[i] = s
		key, raw, found := strings.Cut(s, "=")
		if found && key == "eval.metrics" {
			out[i] = absoluteMetricSet(raw)
			continue
		}
		if !found || !pathKeys[key] {
			continue
		}
		v, err := setValue(raw)
		if err != nil {
			continue
		}
		p, ok := v.(string)
		if !ok || p == "" {
			continue
		}
		prefix := ""
		switch key {
		case "data.system_prompt":
			if !strings.HasPrefix(p, "@") {
				continue
			}
			prefix, p = "@", p[1:]
		case "model":
			// A hub id has a slash too: only a directory that exists here is a path.
			if abs, err := filepath.Abs(p); !looksLikePath(p) && (err != nil || !isDir(abs)) {
				continue
			}
		case "python":
			if !looksLikePath(p) && !strings.Contains(p, "/") {
				continue // a name on PATH
			}
		}
		if filepath.IsAbs(p) || strings.HasPrefix(p, "~/") {
			continue
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			continue
		}
		b, _ := json.Marshal(prefix + abs)
		out[i] = key + "=" + string(b)
	}
	return out
}
