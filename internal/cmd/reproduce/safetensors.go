package reproduce

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
)

// tensorFile is a safetensors file: an 8-byte little-endian header length, a JSON
// header naming each tensor's dtype, shape and byte range, then the data.
type tensorFile struct {
	tensors map[string]tensorInfo
	data    []byte
}

type tensorInfo struct {
	DType   string  `json:"dtype"`
	Shape   []int64 `json:"shape"`
	Offsets [2]int  `json:"data_offsets"`
}

// maxHeader bounds the JSON header; real adapter headers are a few KiB.
const maxHeader = 100 << 20

func readSafetensors(path string) (*tensorFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 8 {
		return nil, fmt.Errorf("%s: too short for a safetensors file", path)
	}
	n := binary.LittleEndian.Uint64(b[:8])
	if n > maxHeader || 8+n > uint64(len(b)) {
		return nil, fmt.Errorf("%s: bad safetensors header length %d", path, n)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &raw); err != nil {
		return nil, fmt.Errorf("%s: safetensors header: %w", path, err)
	}
	tf := &tensorFile{tensors: map[string]tensorInfo{}, data: b[8+n:]}
	for name, r := range raw {
		if name == "__metadata__" {
			continue
		}
		var ti tensorInfo
		if err := json.Unmarshal(r, &ti); err != nil {
			return nil, fmt.Errorf("%s: tensor %s: %w", path, name, err)
		}
		if ti.Offsets[0] < 0 || ti.Offsets[1] < ti.Offsets[0] || ti.Offsets[1] > len(tf.data) {
			return nil, fmt.Errorf("%s: tensor %s: data offsets %v outside the file", path, name, ti.Offsets)
		}
		tf.tensors[name] = ti
	}
	return tf, nil
}

func (tf *tensorFile) bytes(name string) []byte {
	ti := tf.tensors[name]
	return tf.data[ti.Offsets[0]:ti.Offsets[1]]
}

// WeightDiff is how two adapters' weights compare.
type WeightDiff struct {
	Tensors   int `json:"tensors"`
	Identical int `json:"identical"`
	// MaxAbsDiff is the largest element difference over all tensors; MaxTensor names
	// the tensor holding it.
	MaxAbsDiff float64 `json:"max_abs_diff"`
	MaxTensor  string  `json:"max_tensor,omitempty"`
	// NonFinite: an element is NaN or infinite on one side only (or infinite on both,
	// with opposite signs). MaxAbsDiff is then the largest float64, which JSON can
	// carry where +Inf cannot.
	NonFinite bool `json:"non_finite,omitempty"`
	// Mismatch lists structural differences (a tensor missing, another dtype or shape).
	Mismatch []string `json:"mismatch,omitempty"`
}

// Same reports whether the weights are bit-for-bit identical.
func (d *WeightDiff) Same() bool { return len(d.Mismatch) == 0 && d.Identical == d.Tensors }

// compareSafetensors compares two adapter weight files tensor by tensor.
func compareSafetensors(a, b string) (*WeightDiff, error) {
	fa, err := readSafetensors(a)
	if err != nil {
		return nil, err
	}
	fb, err := readSafetensors(b)
	if err != nil {
		return nil, err
	}
	d := &WeightDiff{}
	names := make([]string, 0, len(fa.tensors))
	for n := range fa.tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ta := fa.tensors[n]
		tb, ok := fb.tensors[n]
		switch {
		case !ok:
			d.Mismatch = append(d.Mismatch, n+": missing from the reproduction")
			continue
		case ta.DType != tb.DType || fmt.Sprint(ta.Shape) != fmt.Sprint(tb.Shape):
			d.Mismatch = append(d.Mismatch, fmt.Sprintf("%s: %s%v vs %s%v", n, ta.DType, ta.Shape, tb.DType, tb.Shape))
			continue
		}
		d.Tensors++
		xa, xb := fa.bytes(n), fb.bytes(n)
		if bytes.Equal(xa, xb) {
			d.Identical++
			continue
		}
		diff, err := maxAbsDiff(ta.DType, xa, xb)
		if err != nil {
			d.Mismatch = append(d.Mismatch, n+": "+err.Error())
			continue
		}
		if math.IsInf(diff, 0) || math.IsNaN(diff) {
			d.NonFinite, diff = true, math.MaxFloat64
		}
		if diff > d.MaxAbsDiff || d.MaxTensor == "" {
			d.MaxAbsDiff, d.MaxTensor = diff, n
		}
	}
	for n := range fb.tensors {
		if _, ok := fa.tensors[n]; !ok {
			d.Mismatch = append(d.Mismatch, n+": only in the reproduction")
		}
	}
	sort.Strings(d.Mismatch)
	return d, nil
}

// maxAbsDiff decodes two same-shaped tensors of a float dtype and returns the
// largest element difference (NaN against a number counts as infinite).
func maxAbsDiff(dtype string, a, b []byte) (float64, error) {
	var size int
	var dec func([]byte) float64
	switch dtype {
	case "F64":
		size, dec = 8, func(x []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(x)) }
	case "F32":
		size, dec = 4, func(x []byte) float64 { return float64(math.Float32frombits(binary.LittleEndian.Uint32(x))) }
	case "BF16":
		size, dec = 2, func(x []byte) float64 {
			return float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(x)) << 16))
		}
	case "F16":
		size, dec = 2, func(x []byte) float64 { return half(binary.LittleEndian.Uint16(x)) }
	default:
		return 0, fmt.Errorf("cannot compare dtype %s element by element", dtype)
	}
	if len(a) != len(b) || len(a)%size != 0 {
		return 0, fmt.Errorf("data sizes %d and %d differ", len(a), len(b))
	}
	worst := 0.0
	for i := 0; i < len(a); i += size {
		x, y := dec(a[i:i+size]), dec(b[i:i+size])
		diff := math.Abs(x - y)
		switch {
		case math.IsNaN(x) && math.IsNaN(y), x == y: // the same infinity, or both NaN
			diff = 0
		case math.IsNaN(x) || math.IsNaN(y) || math.IsNaN(diff):
			diff = math.Inf(1)
		}
		if diff > worst {
			worst = diff
		}
	}
	return worst, nil
}

// half decodes an IEEE 754 binary16 value.
func half(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(frac, -24)
	case 0x1f:
		if frac == 0 {
			return sign * math.Inf(1)
		}
		return math.NaN()
	}
	return sign * math.Ldexp(1+frac/1024, exp-15)
}
