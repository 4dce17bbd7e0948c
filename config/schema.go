package config

import (
	"reflect"
	"sort"
	"strings"
)

// keyTree is the set of keys a config may hold, derived from Spec's json tags so the
// schema cannot drift from the struct. A nil child means "a value, do not descend".
type keyTree map[string]keyTree

var schema = buildSchema(reflect.TypeOf(Spec{}))

func buildSchema(t reflect.Type) keyTree {
	tree := keyTree{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if name == "" || name == "-" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			tree[name] = buildSchema(ft)
		} else {
			tree[name] = nil
		}
	}
	return tree
}

func (t keyTree) names() []string {
	out := make([]string, 0, len(t))
	for k := range t {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// KnownKeys lists every dotted key a config accepts (driver sections aside), for
// documentation and for sweeps that override keys.
func KnownKeys() []string {
	var out []string
	var walk func(t keyTree, prefix string)
	walk = func(t keyTree, prefix string) {
		for _, k := range t.names() {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			if t[k] == nil || k == "driver" {
				out = append(out, p)
				continue
			}
			walk(t[k], p)
		}
	}
	walk(schema, "")
	return out
}

// lookupKey checks a dotted key against the schema. It returns the longest valid
// prefix's sibling names when the key is unknown, for a did-you-mean.
// isSection reports whether dotted names a section of the schema (a mapping of keys)
// rather than a value.
func isSection(dotted string) bool {
	if dotted == "driver" {
		return true
	}
	t := schema
	for _, p := range strings.Split(dotted, ".") {
		child, ok := t[p]
		if !ok || child == nil {
			return false
		}
		t = child
	}
	return true
}

func lookupKey(dotted string) (ok bool, bad string, siblings []string) {
	parts := strings.Split(dotted, ".")
	t := schema
	for i, p := range parts {
		child, known := t[p]
		if !known {
			return false, strings.Join(parts[:i+1], "."), t.names()
		}
		if p == "driver" && i == 0 {
			// driver.name, or driver.<section>.<anything>: sections belong to drivers.
			return true, "", nil
		}
		if child == nil {
			// A value: only env.set may have keys beneath it.
			return i == len(parts)-1 || (i == 1 && parts[0] == "env" && p == "set"), dotted, nil
		}
		t = child
	}
	return true, "", nil
}
