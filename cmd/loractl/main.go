// Command loractl is the LoRA fine-tuning controller. All of it lives in internal/;
// main only builds the dependencies and maps errors to exit codes.
package main

import (
	"os"

	"github.com/loractl/loractl/internal/app"
)

func main() { os.Exit(app.Main(os.Args[1:])) }
