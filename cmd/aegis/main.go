// Command aegis is the Aegis-Flow data plane: a post-quantum secure,
// carbon-aware reverse proxy for service meshes and the edge.
package main

import (
	"context"
	"os"

	"github.com/aegis-flow/aegis/internal/cli"
)

func main() {
	os.Exit(cli.Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
