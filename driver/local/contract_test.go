package local_test

import (
	"encoding/json"
	"testing"

	"github.com/loractl/loractl/driver"
	"github.com/loractl/loractl/driver/drivertest"
	"github.com/loractl/loractl/driver/local"
)

func unknown(valid *driver.Handle) *driver.Handle {
	u := *valid
	u.ID = "999999999"
	u.State = json.RawMessage(`{"pid": 999999999}`)
	return &u
}

func TestContract(t *testing.T) {
	drivertest.Run(t, func(t *testing.T) driver.Driver { return local.New() },
		drivertest.WithReattachExitUnknown(), drivertest.WithUnknownHandle(unknown))
}

func TestContractOverGRPC(t *testing.T) {
	drivertest.Run(t, drivertest.OverGRPC(func(t *testing.T) driver.Driver { return local.New() }),
		drivertest.WithReattachExitUnknown(), drivertest.WithUnknownHandle(unknown))
}
