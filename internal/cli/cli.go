package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"

	"github.com/aegis-flow/aegis/internal/config"
	"github.com/aegis-flow/aegis/internal/daemon"
	"github.com/aegis-flow/aegis/internal/pqtls"
)

// Version is the release version, set at build time with
// -ldflags "-X github.com/aegis-flow/aegis/internal/cli.Version=v1.2.3".
var Version = "dev"

// Exit codes.
const (
	ExitOK     = 0
	ExitError  = 1 // the command failed, or the config is invalid
	ExitUsage  = 2 // bad arguments
	exitSignal = 0 // a stop signal ends `run` cleanly
)

const usage = `aegis: a post-quantum secure, carbon-aware service-mesh data plane

Usage:
  aegis [run] [--config FILE]      run the proxy (no --config: the embedded demo)
  aegis validate --config FILE     check a configuration file, print every problem
  aegis version                    print version and post-quantum support
  aegis carbon now|forecast|best [--config FILE] [--json]   carbon intensity now, ahead, best window
  aegis jobs list|show|cancel|retry|purge [--admin ADDR]   Green-Wait's deferred jobs
  aegis simulate greenwait --trace CSV [--region R]         carbon saved by deferral, per priority
  aegis simulate routing --trace CSV[,CSV...]              gCO2eq per request: least_request vs carbon vs oracle

Signals (run): SIGTERM/SIGINT drain and exit 0; SIGHUP reloads the configuration.
`

// Run runs the aegis command with args (without the program name) and
// returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return runCmd(ctx, nil, stdout, stderr)
	}
	switch args[0] {
	case "run":
		return runCmd(ctx, args[1:], stdout, stderr)
	case "validate":
		return validateCmd(args[1:], stdout, stderr)
	case "version":
		return versionCmd(ctx, args[1:], stdout, stderr)
	case "carbon":
		return carbonCmd(ctx, args[1:], stdout, stderr) // carbon.go
	case "jobs":
		return jobsCmd(ctx, args[1:], stdout, stderr) // jobs.go
	case "simulate":
		return simulateCmd(args[1:], stdout, stderr) // simulate.go
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return ExitOK
	}
	if len(args[0]) > 0 && args[0][0] == '-' {
		return runCmd(ctx, args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "aegis: unknown command %q\n\n%s", args[0], usage)
	return ExitUsage
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("aegis "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", stderr)
	cfgPath := fs.String("config", "", "configuration file (default: the embedded demo configuration)")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "aegis run: unexpected argument %q\n", fs.Arg(0))
		return ExitUsage
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer daemon.TuneGC(daemon.DefaultGCHeadroom)()

	d, err := daemon.New(ctx, daemon.Options{ConfigPath: *cfgPath, Stdout: stdout, Stderr: stderr})
	if err != nil {
		printProblems(stderr, "aegis run", err)
		return ExitError
	}
	if *cfgPath == "" {
		printTryCommands(stderr, d)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var wg sync.WaitGroup
	reloadCtx, cancelReload := context.WithCancel(ctx)
	wg.Go(func() {
		for {
			select {
			case <-reloadCtx.Done():
				return
			case <-hup:
				_ = d.Reload() // Reload logs every problem itself
			}
		}
	})
	err = d.Run(ctx)
	cancelReload()
	wg.Wait()
	if err != nil {
		fmt.Fprintf(stderr, "aegis run: %v\n", err)
		return ExitError
	}
	return exitSignal
}

func validateCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", stderr)
	cfgPath := fs.String("config", "", "configuration file to check (required)")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "aegis validate: --config FILE is required")
		return ExitUsage
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		printProblems(stderr, "aegis validate", err)
		return ExitError
	}
	fmt.Fprintf(stdout, "%s: ok (%d listeners, %d routes, %d clusters)\n",
		*cfgPath, len(cfg.Listeners), len(cfg.Routes), len(cfg.Clusters))
	return ExitOK
}

// printProblems prints every configuration problem on its own line, or the
// error as it is.
func printProblems(w io.Writer, prefix string, err error) {
	ps := config.Problems(err)
	if len(ps) == 0 || len(ps) == 1 && ps[0].Path == "" && ps[0].Line == 0 && ps[0].File == "" {
		fmt.Fprintf(w, "%s: %v\n", prefix, err)
		return
	}
	for _, p := range ps {
		fmt.Fprintln(w, p.Error())
	}
	fmt.Fprintf(w, "%s: %d problem(s)\n", prefix, len(ps))
}

func versionCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", stderr)
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	fmt.Fprintf(stdout, "aegis %s%s (%s %s/%s)\n", Version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if err := pqtls.CheckPQ(ctx); err != nil {
		if errors.Is(err, pqtls.ErrPQUnavailable) {
			fmt.Fprintln(stdout, "post-quantum key exchange: UNAVAILABLE (X25519MLKEM768 is off in this binary)")
			return ExitError
		}
		fmt.Fprintf(stdout, "post-quantum key exchange: check failed: %v\n", err)
		return ExitError
	}
	fmt.Fprintln(stdout, "post-quantum key exchange: X25519MLKEM768 available")
	return ExitOK
}

// printTryCommands tells a newcomer what to do with the demo.
func printTryCommands(w io.Writer, d *daemon.Daemon) {
	tlsAddr, plainAddr, admin := d.Addr("edge-tls"), d.Addr("edge-plain"), d.Addr("admin")
	if tlsAddr == nil || plainAddr == nil || admin == nil {
		return
	}
	fmt.Fprintf(w, `
Aegis-Flow demo: three demo upstreams in regions eu-south, us-west and sa-east, carbon-aware
routing over a replayed grid-intensity trace (one trace hour every 10 s), HTTP/3 on %[1]s/udp.
Try:
  curl -si http://%[2]s/ | grep -i '^aegis-'  # Aegis-Region and Aegis-Carbon-Intensity of each answer;
                                                    # traffic shifts toward the cleanest region (sa-east, then
                                                    # eu-south about 20 s after start)
  curl -s --http2-prior-knowledge http://%[2]s/     # h2c
  curl -sk https://%[1]s/                     # TLS 1.3 (curl is usually classical: X25519)
  curl -sk -N https://%[1]s/stream            # server-sent events, streamed
  go run ./cmd/aegis version                        # shows X25519MLKEM768 support
  curl -s http://%[3]s/metrics | grep -E 'aegis_(tls_handshakes|carbon_intensity)'
  curl -s http://%[3]s/config
  curl -s http://%[3]s/carbon                       # carbon intensity per region
  go run ./cmd/aegis carbon best --region eu-south,us-west,sa-east --duration 30s --within 3m
The access log (JSON lines) shows tls_group and the carbon decision of every request.
Ctrl-C drains and stops.

`, tlsAddr, plainAddr, admin)
	if s := d.GreenWaitTry(); s != "" {
		fmt.Fprintf(w, "%s\n", s)
	}
}
