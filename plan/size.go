package plan

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// ParseBytes reads a memory size: a plain byte count, or a number with a unit. Binary
// units (KiB, MiB, GiB, TiB, and the bare K, M, G, T) are powers of 1024; decimal ones
// (KB, MB, GB, TB) powers of 1000.
func ParseBytes(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return !unicode.IsDigit(r) && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("memory size %q: want a positive number with an optional unit, e.g. 24GiB", s)
	}
	mult := map[string]float64{"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12}[strings.ToLower(unit)]
	if mult == 0 {
		return 0, fmt.Errorf("memory size %q: unknown unit %q (use GiB, GB, MiB, ...)", s, unit)
	}
	n := f * mult
	// 2^64 is exactly representable; anything at or above it wraps in uint64.
	if n >= 1<<64 {
		return 0, fmt.Errorf("memory size %q is too large", s)
	}
	if uint64(n) == 0 {
		// 0 bytes would read as "no GPU" downstream.
		return 0, fmt.Errorf("memory size %q is less than one byte", s)
	}
	return uint64(n), nil
}
