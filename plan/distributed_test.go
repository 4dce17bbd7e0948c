package plan

import "testing"

func TestPerRank(t *testing.T) {
	e := &Estimate{PeakBytes: 100, Terms: []Term{{Name: "base_weights", Bytes: 80}, {Name: "activations", Bytes: 20}}}
	cases := []struct {
		name     string
		strategy string
		world    int
		want     uint64
	}{
		{"ddp holds everything", "ddp", 4, 100},
		{"fsdp shards the base", "fsdp", 4, 40},
		{"fsdp of one", "fsdp", 1, 100},
		{"unknown world", "fsdp", 0, 100},
	}
	for _, tc := range cases {
		if got := PerRank(e, tc.strategy, tc.world); got != tc.want {
			t.Errorf("%s: PerRank = %d, want %d", tc.name, got, tc.want)
		}
	}
	if PerRank(nil, "fsdp", 2) != 0 {
		t.Error("nil estimate")
	}
}
