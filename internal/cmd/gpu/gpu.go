// Package gpu implements `loractl gpu`: the NVIDIA GPUs of this machine, their
// memory, utilisation and the processes on them, as read through NVML.
package gpu

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/loractl/loractl/gpu"
	"github.com/loractl/loractl/internal/cmdutil"
)

// Options are the gpu command's flags and dependencies.
type Options struct {
	Factory *cmdutil.Factory
	JSON    bool
	// Manager builds the GPU manager (NVML in the binary, fakes in tests).
	Manager func() gpu.Manager
}

// NewCmdGPU builds the gpu command; runF replaces the work in tests.
func NewCmdGPU(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{Factory: f, Manager: func() gpu.Manager { return gpu.NewNVML() }}
	cmd := &cobra.Command{
		Use:   "gpu",
		Short: "Show the NVIDIA GPUs, their free memory and the processes using them",
		Long: `Show the NVIDIA driver and, for every GPU: name, UUID, memory total/used/free,
utilisation, compute capability, MIG mode and the compute processes using it.

Without an NVIDIA driver it says so and exits 0: loractl then trains on the CPU.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return gpuRun(opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the inventory as JSON")
	return cmd
}

// report is the JSON form: the inventory, or why there is none.
type report struct {
	Driver bool `json:"driver"`
	// Reason says why there is no driver.
	Reason string `json:"reason,omitempty"`
	*gpu.Snapshot
}

func gpuRun(o *Options) error {
	m, err := gpu.Open(o.Manager())
	if err != nil {
		return cmdutil.Failed(err)
	}
	defer func() { _ = m.Shutdown() }()
	out := o.Factory.IO.Out
	if none, ok := m.(gpu.None); ok {
		reason := "no NVIDIA driver"
		if none.Reason != nil {
			reason = none.Reason.Error()
		}
		if o.JSON {
			return writeJSON(out, report{Reason: reason, Snapshot: &gpu.Snapshot{Devices: []gpu.Info{}}})
		}
		fmt.Fprintf(out, "No NVIDIA GPU available (%s).\nloractl runs on the CPU; `loractl plan --gpu-memory 24GiB` still estimates GPU runs.\n", reason)
		return nil
	}
	snap, err := gpu.Inventory(m)
	if err != nil {
		return cmdutil.Failed(err)
	}
	if o.JSON {
		return writeJSON(out, report{Driver: true, Snapshot: snap})
	}
	printInventory(out, snap)
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printInventory(w io.Writer, s *gpu.Snapshot) {
	fmt.Fprintf(w, "NVIDIA driver %s, CUDA %s, %d GPU(s)\n", s.System.DriverVersion, s.System.CUDADriverVersion, len(s.Devices))
	for _, d := range s.Devices {
		fmt.Fprintf(w, "\nGPU %d  %s  compute %s  %s\n", d.Index, d.Name, d.ComputeCapability, d.UUID)
		fmt.Fprintf(w, "  memory       %s free of %s (%s used), utilisation %d%%\n",
			gpu.FormatBytes(d.MemoryFreeBytes), gpu.FormatBytes(d.MemoryTotalBytes), gpu.FormatBytes(d.MemoryUsedBytes), d.UtilizationPct)
		if d.MIGEnabled {
			fmt.Fprintf(w, "  MIG          enabled, %d instance(s)\n", len(d.MIGDevices))
			if len(d.MIGDevices) == 0 {
				fmt.Fprintf(w, "    no MIG instance: CUDA sees no device here until one is created (sudo nvidia-smi mig -i %d -cgi <profile> -C) or MIG is disabled\n", d.Index)
			}
			for _, m := range d.MIGDevices {
				fmt.Fprintf(w, "    %s  %s free of %s\n", m.UUID, gpu.FormatBytes(m.MemoryFreeBytes), gpu.FormatBytes(m.MemoryTotalBytes))
			}
		}
		if d.ProcessesUnknown != "" {
			fmt.Fprintf(w, "  processes    unknown: %s\n", d.ProcessesUnknown)
			continue
		}
		if len(d.Processes) == 0 {
			fmt.Fprintf(w, "  processes    none\n")
			continue
		}
		procs := make([]string, len(d.Processes))
		for i, p := range d.Processes {
			mem := gpu.FormatBytes(p.UsedMemoryBytes)
			if p.UsedMemoryUnknown {
				mem = "memory unknown"
			}
			procs[i] = fmt.Sprintf("pid %d (%s)", p.PID, mem)
		}
		fmt.Fprintf(w, "  processes    %s\n", strings.Join(procs, ", "))
	}
}
