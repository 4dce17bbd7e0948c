// Package proto holds the gRPC service of the loractl driver contract, generated from
// driver.proto. Use package driver/plugin rather than these types directly.
package proto

//go:generate ./generate.sh
