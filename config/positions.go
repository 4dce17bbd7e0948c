package config

import (
	"fmt"

	"github.com/goccy/go-yaml/ast"
)

// position is where a key's value starts in the YAML file.
type position struct{ line, col int }

// indexPositions records the position of every mapping key and sequence item in the
// document, by dotted path ("lora.target_modules[1]"), so validation errors found long
// after parsing can still name the line.
func indexPositions(f *ast.File) map[string]position {
	idx := map[string]position{}
	for _, doc := range f.Docs {
		walkNode(doc.Body, "", idx)
	}
	return idx
}

func walkNode(n ast.Node, prefix string, idx map[string]position) {
	switch n := n.(type) {
	case *ast.MappingNode:
		for _, mv := range n.Values {
			walkNode(mv, prefix, idx)
		}
	case *ast.MappingValueNode:
		key := n.Key.GetToken().Value
		path := key
		if prefix != "" {
			path = prefix + "." + key
		}
		tk := n.Key.GetToken()
		idx[path] = position{tk.Position.Line, tk.Position.Column}
		walkNode(n.Value, path, idx)
	case *ast.SequenceNode:
		for i, v := range n.Values {
			path := fmt.Sprintf("%s[%d]", prefix, i)
			if tk := v.GetToken(); tk != nil {
				idx[path] = position{tk.Position.Line, tk.Position.Column}
			}
			walkNode(v, path, idx)
		}
	case *ast.TagNode:
		walkNode(n.Value, prefix, idx)
	case *ast.AnchorNode:
		walkNode(n.Value, prefix, idx)
	}
}

// Position is where a key or sequence item starts in a YAML file (1-based); CheckYAML
// returns them by key ("a.b", "a.list[2]") so that files embedding config keys (sweeps)
// can name the line of any key they report.
type Position struct{ Line, Col int }

// scalarTexts returns, by dotted key, the source text of the scalar values directly
// under the mapping at prefix ("env.set"): what the user wrote, before YAML typed it.
func scalarTexts(f *ast.File, prefix string) map[string]string {
	out := map[string]string{}
	var walk func(n ast.Node, path string)
	walk = func(n ast.Node, path string) {
		switch n := n.(type) {
		case *ast.MappingNode:
			for _, mv := range n.Values {
				walk(mv, path)
			}
		case *ast.MappingValueNode:
			key := n.Key.GetToken().Value
			p := key
			if path != "" {
				p = path + "." + key
			}
			if path == prefix {
				switch v := n.Value.(type) {
				case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
					out[p] = v.GetToken().Value
				}
				return
			}
			walk(n.Value, p)
		case *ast.TagNode:
			walk(n.Value, path)
		case *ast.AnchorNode:
			walk(n.Value, path)
		}
	}
	for _, d := range f.Docs {
		if d != nil {
			walk(d.Body, "")
		}
	}
	return out
}
