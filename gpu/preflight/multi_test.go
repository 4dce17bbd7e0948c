package preflight

import (
	"errors"
	"slices"
	"testing"

	"github.com/loractl/loractl/internal/cmdutil"
)

func TestPickMany(t *testing.T) {
	cands := []Candidate{
		{Index: 0, Visible: "0", Free: 10, Total: 80},
		{Index: 1, Visible: "1", Free: 70, Total: 80},
		{Index: 2, Visible: "2", Free: 40, Total: 80},
	}
	indices := func(cs []Candidate) []int {
		var out []int
		for _, c := range cs {
			out = append(out, c.Index)
		}
		return out
	}
	cases := []struct {
		name  string
		want  []int
		n     int
		need  uint64
		force bool
		got   []int
		code  int
	}{
		{"most free first", nil, 2, 30, false, []int{1, 2}, 0},
		{"auto takes all that fit", nil, 0, 5, false, []int{1, 2, 0}, 0},
		{"listed", []int{2, 0}, 0, 5, false, []int{2, 0}, 0},
		{"one does not fit", nil, 0, 30, false, nil, cmdutil.ExitNoFit},
		{"forced", nil, 0, 30, true, []int{1, 2, 0}, 0},
		{"too many", nil, 4, 1, false, nil, cmdutil.ExitInvalid},
		{"no such GPU", []int{7}, 0, 1, false, nil, cmdutil.ExitInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PickMany(cands, tc.want, tc.n, tc.need, tc.force)
			var ee *cmdutil.ExitError
			switch {
			case tc.code != 0 && (!errors.As(err, &ee) || ee.Code != tc.code):
				t.Fatalf("err = %v, want exit %d", err, tc.code)
			case tc.code == 0 && (err != nil || !slices.Equal(indices(got), tc.got)):
				t.Fatalf("PickMany = %v, %v; want %v", indices(got), err, tc.got)
			}
		})
	}
	if v := VisibleDevices(cands[1:]); v != "1,2" {
		t.Errorf("VisibleDevices = %q", v)
	}
}
