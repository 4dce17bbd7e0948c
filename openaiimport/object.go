package openaiimport

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// field is one key of a JSON object with its raw value.
type field struct {
	Key string
	Val json.RawMessage
}

// object is a JSON object whose keys keep their order (and duplicates), so a converted
// row reads like the original and the data check still sees a repeated key.
type object []field

// parseObject decodes a JSON object, or returns an error when b is not one.
func parseObject(b []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errNotObject
	}
	var o object
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		o = append(o, field{k, v})
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	return o, nil
}

var errNotObject = errors.New("not a JSON object")

// get returns the last value of key (what JSON loaders keep) and whether it is present.
func (o object) get(key string) (json.RawMessage, bool) {
	for i := len(o) - 1; i >= 0; i-- {
		if o[i].Key == key {
			return o[i].Val, true
		}
	}
	return nil, false
}

func (o object) has(key string) bool {
	_, ok := o.get(key)
	return ok
}

// set replaces every value of key, or appends it.
func (o *object) set(key string, v json.RawMessage) {
	found := false
	for i := range *o {
		if (*o)[i].Key == key {
			(*o)[i].Val, found = v, true
		}
	}
	if !found {
		*o = append(*o, field{key, v})
	}
}

// rename changes a key in place, keeping its position.
func (o object) rename(from, to string) {
	for i := range o {
		if o[i].Key == from {
			o[i].Key = to
		}
	}
}

// insertAfter puts key right after the first of anchor (at the end without anchor).
func (o *object) insertAfter(anchor, key string, v json.RawMessage) {
	for i := range *o {
		if (*o)[i].Key == anchor {
			*o = append((*o)[:i+1], append(object{{key, v}}, (*o)[i+1:]...)...)
			return
		}
	}
	*o = append(*o, field{key, v})
}

// marshal encodes the object compactly, in its key order, without HTML escaping
// (chat data is full of "<" and "&").
func (o object) marshal() json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(jsonString(f.Key))
		b.WriteByte(':')
		_ = json.Compact(&b, f.Val)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// jsonString encodes s as a JSON string without HTML escaping.
func jsonString(s string) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return bytes.TrimRight(b.Bytes(), "\n")
}

// kind names the JSON type of a raw value, for messages.
func kind(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// marshalArray encodes raw values as a compact JSON array without HTML escaping.
func marshalArray(items []json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		_ = json.Compact(&b, it)
	}
	b.WriteByte(']')
	return b.Bytes()
}
