package config

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// Float is a number in the config. YAML 1.1 parsers read "1e-4" (no dot) as a string,
// and so do many users' tools, so a string that is a plain number is accepted too.
type Float float64

// UnmarshalJSON implements json.Unmarshaler.
func (f *Float) UnmarshalJSON(b []byte) error {
	var v float64
	if err := json.Unmarshal(b, &v); err == nil {
		*f = Float(v)
		return nil
	}
	// (JSON numbers are always finite; a string can spell "nan" or "inf".)
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: string(b), Type: floatType}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return &json.UnmarshalTypeError{Value: fmt.Sprintf("%q", s), Type: floatType}
	}
	*f = Float(v)
	return nil
}

// fl reads an optional Float with a default.
func fl(p *Float, def float64) float64 {
	if p == nil {
		return def
	}
	return float64(*p)
}

var floatType = reflect.TypeOf(float64(0))
