package container

import (
	"context"
	"strings"
	"testing"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/drivertest"
)

// TestContract runs the shared driver contract suite against each engine, directly and
// through the plugin transport's in-process gRPC round trip. The suite's fake trainer
// is a POSIX sh script in the run dir, so the python option points at /bin/sh.
func TestContract(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *testEngine) {
		opts := drivertest.WithOptions(e.options(t, map[string]any{"python": "/bin/sh"}))
		factory := func(t *testing.T) driver.Driver {
			d, err := New(e.d.engine)
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		// The suite leaves its exited containers behind, as the driver does for runs.
		t.Cleanup(func() {
			st := &handleState{Engine: e.d.engine, Binary: e.d.binary}
			out, _ := st.run(context.Background(), "ps", "--all", "--quiet", "--filter", "name=loractl-drivertest-")
			if ids := strings.Fields(string(out)); len(ids) > 0 {
				_, _ = st.run(context.Background(), append([]string{"rm", "--force"}, ids...)...)
			}
		})
		t.Run("direct", func(t *testing.T) { drivertest.Run(t, factory, opts) })
		t.Run("grpc", func(t *testing.T) { drivertest.Run(t, drivertest.OverGRPC(factory), opts) })
	})
}
