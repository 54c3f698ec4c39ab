package cli

import (
	"context"
	"fmt"
	"io"
)

const simulateUsage = `Usage:
  aegis simulate greenwait --trace CSV [--region R] [options]   carbon saved by Green-Wait per priority tier
  aegis simulate routing --trace CSV[,CSV...] [options]          gCO2eq per request: least_request, carbon, oracle

Run "aegis simulate <what> --help" for the options.
`

// simulateCmd is `aegis simulate`: offline what-if runs on recorded carbon
// traces. Each kind of simulation is one case, in its own file.
func simulateCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, simulateUsage)
		return ExitUsage
	}
	switch args[0] {
	case "greenwait":
		return simulateGreenWaitCmd(args[1:], stdout, stderr)
	case "routing":
		return simulateRoutingCmd(context.Background(), args[1:], stdout, stderr) // simulate_routing.go
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, simulateUsage)
		return ExitOK
	}
	fmt.Fprintf(stderr, "aegis simulate: unknown simulation %q\n\n%s", args[0], simulateUsage)
	return ExitUsage
}
