package slurm

import (
	"context"

	"github.com/loractl/loractl/driver"
)

// AccountingStatus is Inspect's fallback alone (sacct, as for a job that has aged out
// of the controller), for the cluster tests.
func (d *Driver) AccountingStatus(ctx context.Context, h *driver.Handle) (*driver.Status, error) {
	s, err := decodeHandle(h)
	if err != nil {
		return nil, err
	}
	ji, err := d.accounting(ctx, s)
	if err != nil {
		return nil, err
	}
	return toStatus(ji, lastAttempt(s.RunDir, ji.JobID)), nil
}
