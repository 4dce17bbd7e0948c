package sweep

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/loractl/loractl/config"
)

// MaxPoints bounds an expansion; a sweep file that would make more is almost
// certainly a mistake (a range written as a list of thousands).
const MaxPoints = 100_000

// Point is one combination of parameter values.
type Point struct {
	// Index is the point's place in the expansion, from 0; it names the point in
	// messages and stays the same however often the sweep runs.
	Index  int
	Values []Value
	// Sets are the values as --set overrides of the base config (key=YAML).
	Sets []string
}

// Value is one parameter's value at a point.
type Value struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// Label is the point's values as key=value words, for people.
func (p *Point) Label() string { return strings.Join(p.Sets, " ") }

// Expand lists the sweep's points: every combination of the listed values for a
// grid (the first parameter changing slowest), or Count draws for a random search.
// The same file and seed always give the same points in the same order.
func Expand(f *File) ([]*Point, error) {
	var rows [][]Value
	switch f.Method {
	case MethodRandom:
		rows = f.random()
	default:
		n := 1
		for _, p := range f.Params {
			if p.Kind != KindTied {
				n *= len(p.Values)
				if n > MaxPoints {
					return nil, f.at("parameters", "the grid has more than %d points; use method: random with a count", MaxPoints)
				}
			}
		}
		rows = f.grid()
	}
	points := make([]*Point, 0, len(rows))
	for i, row := range rows {
		pt := &Point{Index: i}
		vars := map[string]any{}
		for _, v := range row {
			vars[v.Key] = v.Value
		}
		for _, p := range f.Params {
			v, ok := vars[p.Key]
			if p.Kind == KindTied {
				var err error
				if v, err = p.Expr.Eval(vars); err != nil {
					e := f.at("parameters."+p.Key+".tied", "point %d: %v", i, err)
					return nil, config.Errors{e}
				}
				vars[p.Key], ok = v, true
			}
			if !ok {
				continue
			}
			pt.Values = append(pt.Values, Value{p.Key, v})
			s, err := setArg(p.Key, v)
			if err != nil {
				return nil, config.Errors{f.at("parameters."+p.Key, "%v", err)}
			}
			pt.Sets = append(pt.Sets, s)
		}
		points = append(points, pt)
	}
	return points, nil
}

// grid is the cartesian product of the listed values, in parameter order.
func (f *File) grid() [][]Value {
	rows := [][]Value{nil}
	for _, p := range f.Params {
		if p.Kind == KindTied {
			continue
		}
		next := make([][]Value, 0, len(rows)*len(p.Values))
		for _, row := range rows {
			for _, v := range p.Values {
				r := append(append(make([]Value, 0, len(row)+1), row...), Value{p.Key, v})
				next = append(next, r)
			}
		}
		rows = next
	}
	return rows
}

// random draws Count points. Each parameter is drawn in file order from one PCG
// stream seeded by Seed; the mapping from 64-bit draws to values is written here
// (not left to a library) so that it cannot change under a sweep between releases.
func (f *File) random() [][]Value {
	src := rand.NewPCG(f.Seed, 0x6c6f726163746c) // "loractl": a fixed second word
	unit := func() float64 { return float64(src.Uint64()>>11) / (1 << 53) }
	below := func(n int) int { return int(unit() * float64(n)) }
	rows := make([][]Value, f.Count)
	for i := range rows {
		for _, p := range f.Params {
			var v any
			switch p.Kind {
			case KindTied:
				continue
			case KindFixed:
				v = p.Values[0]
			case KindValues, KindChoice:
				v = p.Values[below(len(p.Values))]
			case KindUniform:
				v = roundSig(p.Min+unit()*(p.Max-p.Min), 4)
			case KindLogUniform:
				lo, hi := math.Log(p.Min), math.Log(p.Max)
				v = roundSig(math.Exp(lo+unit()*(hi-lo)), 4)
			case KindInt:
				v = int(p.Min) + below(int(p.Max-p.Min)+1)
			}
			rows[i] = append(rows[i], Value{p.Key, v})
		}
	}
	return rows
}

// roundSig rounds to n significant digits: 0.000123456 → 0.0001235. Drawn values
// then read well in tables and in --set, and round-trip exactly through YAML.
func roundSig(v float64, n int) float64 {
	if v == 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return v
	}
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', n, 64), 64)
	return r
}

// setArg renders one value as a --set override. JSON is valid YAML, so numbers,
// strings and lists come back with their own types when the config layer parses it.
func setArg(key string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("value %v cannot be used: %w", v, err)
	}
	return key + "=" + string(b), nil
}
