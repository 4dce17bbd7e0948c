package preflight

import (
	"errors"
	"slices"
	"testing"
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
		kind  string // the refusal's type: "" for a choice
	}{
		{"most free first", nil, 2, 30, false, []int{1, 2}, ""},
		{"auto takes all that fit", nil, 0, 5, false, []int{1, 2, 0}, ""},
		{"listed", []int{2, 0}, 0, 5, false, []int{2, 0}, ""},
		{"one does not fit", nil, 0, 30, false, nil, "nofit"},
		{"forced", nil, 0, 30, true, []int{1, 2, 0}, ""},
		{"too many", nil, 4, 1, false, nil, "request"},
		{"no such GPU", []int{7}, 0, 1, false, nil, "request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PickMany(cands, tc.want, tc.n, tc.need, tc.force)
			switch {
			case tc.kind != "" && errKind(err) != tc.kind:
				t.Fatalf("err = %v (%s), want a %s refusal", err, errKind(err), tc.kind)
			case tc.kind == "" && (err != nil || !slices.Equal(indices(got), tc.got)):
				t.Fatalf("PickMany = %v, %v; want %v", indices(got), err, tc.got)
			}
		})
	}
	if v := VisibleDevices(cands[1:]); v != "1,2" {
		t.Errorf("VisibleDevices = %q", v)
	}
}

// errKind names a pre-flight error's type, which the CLI maps to an exit code.
func errKind(err error) string {
	var (
		noFit    *NoFitError
		request  *RequestError
		unusable *UnusableError
	)
	switch {
	case errors.As(err, &noFit):
		return "nofit"
	case errors.As(err, &request):
		return "request"
	case errors.As(err, &unusable):
		return "unusable"
	case err != nil:
		return "other"
	}
	return ""
}
