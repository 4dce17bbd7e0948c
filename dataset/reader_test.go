package dataset

import (
	"strings"
	"testing"
)

// TestLineReaderTooLongSize: a line over the limit is reported with its length
// without the newline (a CR before it is counted), also for a last line without one.
func TestLineReaderTooLongSize(t *testing.T) {
	long := strings.Repeat("x", 100)
	for name, tc := range map[string]struct {
		in   string
		want []int64
	}{
		"newline":          {long + "\n" + long + "\n", []int64{100, 100}},
		"no final newline": {long + "\n" + long, []int64{100, 100}},
		"crlf":             {long + "\r\n", []int64{101}},
	} {
		t.Run(name, func(t *testing.T) {
			lr := newLineReader(strings.NewReader(tc.in), 10)
			var got []int64
			for {
				ln, err := lr.next()
				if err != nil {
					break
				}
				if !ln.TooLong {
					t.Fatalf("line %d not too long", ln.No)
				}
				got = append(got, ln.Size)
			}
			if len(got) != len(tc.want) || got[len(got)-1] != tc.want[len(tc.want)-1] || got[0] != tc.want[0] {
				t.Errorf("sizes %v, want %v", got, tc.want)
			}
		})
	}
}
