package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aegis-flow/aegis/internal/config"
	"github.com/aegis-flow/aegis/internal/greenwait"
)

const jobsUsage = `Usage:
  aegis jobs list   [--state S] [--priority P] [--route R] [--limit N] [--admin ADDR] [--json]
  aegis jobs show   ID [--admin ADDR] [--json]
  aegis jobs cancel ID [--admin ADDR] [--json]
  aegis jobs retry  ID [--admin ADDR] [--json]
  aegis jobs purge  [--state S] [--older-than D] [--admin ADDR]

Green-Wait's deferred jobs, through the admin API of a running aegis
(default ` + config.DefaultAdminAddress + `). States: queued, planned, running, done,
failed, cancelled. Priorities: high, normal, low, background.
`

// jobsCmd is `aegis jobs`.
func jobsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, jobsUsage)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	sub, args := args[0], args[1:]
	fs := newFlags("jobs "+sub, stderr)
	admin := fs.String("admin", config.DefaultAdminAddress, "admin address (host:port or URL)")
	asJSON := fs.Bool("json", false, "print JSON")
	var state, prio, route, older *string
	var limit *int
	switch sub {
	case "list":
		state = fs.String("state", "", "only jobs in this state")
		prio = fs.String("priority", "", "only jobs of this priority")
		route = fs.String("route", "", "only jobs of this route")
		limit = fs.Int("limit", 100, "at most this many jobs (max 10000)")
	case "purge":
		state = fs.String("state", "", "only finished jobs in this state (done, failed, cancelled)")
		older = fs.String("older-than", "0s", "only jobs finished longer ago than this duration")
	case "show", "cancel", "retry":
	default:
		fmt.Fprintf(stderr, "aegis jobs: unknown subcommand %q\n\n%s", sub, jobsUsage)
		return ExitUsage
	}
	pos, ok := parseInterleaved(fs, args)
	if !ok {
		return ExitUsage
	}
	needID := sub == "show" || sub == "cancel" || sub == "retry"
	if needID && len(pos) != 1 || !needID && len(pos) != 0 {
		fmt.Fprintf(stderr, "aegis jobs %s: wrong arguments\n\n%s", sub, jobsUsage)
		return ExitUsage
	}
	base, err := adminURL(*admin)
	if err != nil {
		fmt.Fprintf(stderr, "aegis jobs: %v\n", err)
		return ExitUsage
	}
	c := &jobsClient{base: base, http: &http.Client{Timeout: 30 * time.Second}}
	var id string
	if needID {
		jid, err := greenwait.ParseJobID(pos[0])
		if err != nil {
			fmt.Fprintf(stderr, "aegis jobs %s: %q: %v\n", sub, pos[0], err)
			return ExitUsage
		}
		id = jid.String()
	}

	var out []byte
	switch sub {
	case "list":
		q := url.Values{}
		for k, v := range map[string]string{"state": *state, "priority": *prio, "route": *route} {
			if v != "" {
				q.Set(k, v)
			}
		}
		q.Set("limit", strconv.Itoa(*limit))
		out, err = c.do(ctx, http.MethodGet, "/jobs?"+q.Encode())
	case "show":
		out, err = c.do(ctx, http.MethodGet, "/jobs/"+id)
	case "cancel":
		out, err = c.do(ctx, http.MethodPost, "/jobs/"+id+"/cancel")
	case "retry":
		out, err = c.do(ctx, http.MethodPost, "/jobs/"+id+"/retry")
	case "purge":
		q := url.Values{"older_than": {*older}}
		if *state != "" {
			q.Set("state", *state)
		}
		out, err = c.do(ctx, http.MethodPost, "/jobs/purge?"+q.Encode())
	}
	if err != nil {
		fmt.Fprintf(stderr, "aegis jobs %s: %v\n", sub, err)
		return ExitError
	}
	if *asJSON {
		stdout.Write(out)
		return ExitOK
	}
	switch sub {
	case "list":
		var l struct {
			Jobs      []greenwait.Status `json:"jobs"`
			Truncated bool               `json:"truncated"`
		}
		if err := json.Unmarshal(out, &l); err != nil {
			fmt.Fprintf(stderr, "aegis jobs list: decode answer: %v\n", err)
			return ExitError
		}
		printJobTable(stdout, l.Jobs)
		if l.Truncated {
			fmt.Fprintf(stdout, "(more jobs match; raise --limit)\n")
		}
	case "purge":
		var p struct {
			Purged int `json:"purged"`
		}
		if err := json.Unmarshal(out, &p); err != nil {
			fmt.Fprintf(stderr, "aegis jobs purge: decode answer: %v\n", err)
			return ExitError
		}
		fmt.Fprintf(stdout, "purged %d job(s)\n", p.Purged)
	default:
		var s greenwait.Status
		if err := json.Unmarshal(out, &s); err != nil {
			fmt.Fprintf(stderr, "aegis jobs %s: decode answer: %v\n", sub, err)
			return ExitError
		}
		printJob(stdout, &s)
	}
	return ExitOK
}

// parseInterleaved parses flags that may come before or after positional
// arguments ("show ID --json") and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, bool) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, false
		}
		if fs.NArg() == 0 {
			return pos, true
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// adminURL turns "host:port" or a URL into the admin API's base URL.
func adminURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("--admin %q: want host:port or an http URL", s)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

type jobsClient struct {
	base string
	http *http.Client
}

// do sends one admin request and returns the body of a 2xx answer; other
// answers become errors carrying the API's error text.
func (c *jobsClient) do(ctx context.Context, method, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach admin API: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read admin answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	return body, nil
}

func printJobTable(w io.Writer, jobs []greenwait.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tPRIORITY\tROUTE\tREGION\tSUBMITTED\tPLANNED\tDEADLINE\tTRIES\tSAVED_G")
	for _, s := range jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%.3f\n", s.ID, s.State, s.Priority, dash(s.Route),
			dash(s.Region), clock(s.SubmittedAt), clock(s.PlannedRelease), clock(s.Deadline), s.Attempts, s.CarbonSavedGrams)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d job(s)\n", len(jobs))
}

func printJob(w io.Writer, s *greenwait.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("id", s.ID)
	row("state", s.State)
	row("priority", s.Priority)
	row("route", dash(s.Route))
	row("cluster", dash(s.Cluster))
	row("region", dash(s.Region))
	row("request", strings.TrimSpace(s.Method+" "+s.URL))
	row("submitted", stamp(s.SubmittedAt))
	row("deadline", stamp(s.Deadline)+clampNote(s.DeadlineClamped))
	row("planned release", stamp(s.PlannedRelease))
	row("started", stamp(s.StartedAt))
	row("finished", stamp(s.FinishedAt))
	row("attempts", s.Attempts)
	row("intensity at submit", gkwh(s.IntensityAtSubmit))
	row("intensity at run", gkwh(s.IntensityAtRun))
	row("est. carbon saved", fmt.Sprintf("%.3f g", s.CarbonSavedGrams))
	if s.ResultURL != "" {
		row("result", s.ResultURL)
	}
	if s.LastError != "" {
		row("last error", s.LastError)
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("01-02 15:04:05")
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}

func clampNote(c bool) string {
	if c {
		return " (clamped to the priority's maximum wait)"
	}
	return ""
}

func gkwh(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f gCO2eq/kWh", *v)
}
