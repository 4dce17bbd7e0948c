package config

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestDistributedResolves(t *testing.T) {
	cases := []struct {
		name      string
		yaml      string
		want      *DistributedConfig
		gpu       int
		gpus      []int
		processes int
	}{
		{"absent", base, nil, -1, nil, 1},
		{"gpu int", base + "gpu: 3\n", nil, 3, []int{3}, 1},
		{"one-element list", base + "gpu: [2]\n", nil, 2, []int{2}, 1},
		{"defaults", base + "distributed: {}\n", &DistributedConfig{NprocPerNode: 0, Nodes: 1, Strategy: "ddp", Port: DefaultPort}, -1, nil, 1},
		{"auto from gpu list", base + "gpu: [0, 2]\ndistributed:\n  nproc_per_node: auto\n", &DistributedConfig{Nodes: 1, Strategy: "ddp", Port: DefaultPort}, -1, []int{0, 2}, 2},
		{"fixed", base + "distributed:\n  nproc_per_node: 4\n  nodes: 2\n  strategy: fsdp\n  port: 29600\n", &DistributedConfig{NprocPerNode: 4, Nodes: 2, Strategy: "fsdp", Port: 29600}, -1, nil, 8},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(writeConfig(t, tc.yaml), nil)
			if err != nil {
				t.Fatal(err)
			}
			got := c.Resolved.Distributed
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Errorf("distributed = %+v, want %+v", got, tc.want)
			}
			if c.GPU != tc.gpu || !slices.Equal(c.GPUs, tc.gpus) {
				t.Errorf("gpu = %d %v, want %d %v", c.GPU, c.GPUs, tc.gpu, tc.gpus)
			}
			if p := c.Processes(); p != tc.processes {
				t.Errorf("Processes() = %d, want %d", p, tc.processes)
			}
		})
	}
}

// An absent section leaves resolved.json as it was, so existing run ids stay.
func TestDistributedAbsentKeepsResolvedJSON(t *testing.T) {
	c, err := Load(writeConfig(t, base), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(c.Resolved)
	if strings.Contains(string(b), "distributed") {
		t.Errorf("resolved.json mentions distributed without the section: %s", b)
	}
	c, err = Load(writeConfig(t, base+"distributed:\n  nproc_per_node: 2\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(c.Resolved)
	if !strings.Contains(string(b), `"distributed":{"nproc_per_node":2,"nodes":1,"strategy":"ddp","port":29500}`) {
		t.Errorf("resolved.json = %s", b)
	}
}

func TestDistributedInvalid(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"nproc word", base + "distributed:\n  nproc_per_node: many\n", `:7:3: distributed.nproc_per_node: must be auto or a process count, got "many"`},
		{"nproc zero", base + "distributed:\n  nproc_per_node: 0\n", "distributed.nproc_per_node: must be auto or a whole number from 1 to 4096, got 0"},
		{"nproc fraction", base + "distributed:\n  nproc_per_node: 1.5\n", "distributed.nproc_per_node: must be auto or a whole number"},
		{"nodes zero", base + "distributed:\n  nodes: 0\n", "distributed.nodes: must be between 1 and 4096, got 0"},
		{"strategy", base + "distributed:\n  strategy: deepspeed\n", `distributed.strategy: must be ddp or fsdp, got "deepspeed"`},
		{"port", base + "distributed:\n  port: 80\n", "distributed.port: must be a TCP port from 1024 to 65535, got 80"},
		{"unknown key", base + "distributed:\n  nprocs: 2\n", "distributed.nprocs: unknown key"},
		{"gpu negative", base + "gpu: -1\n", ":6:1: gpu: must be a device index >= 0, got -1"},
		{"gpu list word", base + "gpu: [0, x]\ndistributed: {}\n", "gpu[1]: must be a device index >= 0, got x"},
		{"gpu twice", base + "gpu: [1, 1]\ndistributed: {}\n", "gpu[1]: GPU 1 is listed twice"},
		{"gpu list without distributed", base + "gpu: [0, 1]\n", "gpu: lists 2 GPUs but one process uses one; add `distributed: {nproc_per_node: auto}`"},
		{"nproc disagrees with gpu", base + "gpu: [0, 1]\ndistributed:\n  nproc_per_node: 4\n", "distributed.nproc_per_node: is 4 but gpu lists 2 device(s)"},
		{"slurm gpus without distributed", base + "driver:\n  name: slurm\n  slurm:\n    gpus: 4\n", "driver.slurm.gpus: is 4 but without a distributed: section"},
		{"slurm typed gpus without distributed", base + "driver:\n  name: slurm\n  slurm:\n    gpus: a100:2\n", "driver.slurm.gpus: is 2 but without a distributed: section"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tc.yaml), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// gpus: 4 with a distributed section is the point of it.
	if _, err := Load(writeConfig(t, base+"driver:\n  name: slurm\n  slurm:\n    gpus: 4\ndistributed: {}\n"), nil); err != nil && strings.Contains(err.Error(), "driver.slurm.gpus") {
		t.Errorf("slurm gpus 4 with distributed refused: %v", err)
	}
}
