package cli

import (
	"fmt"
	"io"
)

const simulateUsage = `Usage:
  aegis simulate greenwait --trace CSV [--region R] [options]   carbon saved by Green-Wait per priority tier

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
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, simulateUsage)
		return ExitOK
	}
	fmt.Fprintf(stderr, "aegis simulate: unknown simulation %q\n\n%s", args[0], simulateUsage)
	return ExitUsage
}
