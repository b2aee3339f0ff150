package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// report is everything a run found; -json prints it as is.
type report struct {
	Run struct {
		ID             string  `json:"id"`
		Started        string  `json:"started"` // RFC 3339, UTC
		Clients        int     `json:"clients"`
		Duration       float64 `json:"duration_s"`
		Sandboxes      int     `json:"sandboxes"`
		MinSandboxes   int     `json:"min_sandboxes"`
		Image          string  `json:"image"`
		RequestTimeout float64 `json:"request_timeout_s"`
		Host           string  `json:"host"`
		CPUs           int     `json:"cpus"`
		Go             string  `json:"go"`
	} `json:"run"`
	Server struct {
		Mode               string         `json:"mode"` // "child" or "url"
		URL                string         `json:"url"`
		Namespace          string         `json:"namespace"`
		PID                int            `json:"pid,omitempty"`
		Exit               string         `json:"exit,omitempty"` // child: how it stopped
		LogLevels          map[string]int `json:"log_levels,omitempty"`
		LogProblems        []string       `json:"log_problems,omitempty"` // its WARN and ERROR lines
		LogProblemsDropped int            `json:"log_problems_dropped,omitempty"`
	} `json:"server"`
	LoadAvg struct {
		Before [3]float64 `json:"before"`
		After  [3]float64 `json:"after"`
	} `json:"load_average"`
	// Load is the seconds from the first request to the end of the last
	// one (the -duration plus the drain of actions in flight).
	Load        float64 `json:"load_s"`
	Interrupted bool    `json:"interrupted,omitempty"`

	Ops   []opRow `json:"ops"`
	Total opRow   `json:"total"`

	Errors struct {
		ClientTimeouts int `json:"client_timeouts"`
		ClientConn     int `json:"client_connection"`
		// Expected is 404 and 409 (and "wrong answer") on sandboxes whose
		// delete had begun, by status.
		Expected        map[string]int `json:"expected_4xx"`
		Unexpected4xx   map[string]int `json:"unexpected_4xx"`
		Server5xx       int            `json:"server_5xx"`
		Wrong           int            `json:"wrong_answers"`
		Cancelled       int            `json:"cancelled,omitempty"`
		Server          []failure      `json:"server_5xx_list"`
		ClientSamples   []failure      `json:"client_samples,omitempty"`
		Unexpected4xxOf []failure      `json:"unexpected_4xx_samples,omitempty"`
		WrongSamples    []failure      `json:"wrong_samples,omitempty"`
		ExpectedOf      []failure      `json:"expected_samples,omitempty"`
	} `json:"errors"`

	// Warmup is the creates of -min-sandboxes before the load phase: not
	// in the figures of the operations (their errors are counted).
	Warmup struct {
		Created int     `json:"created"`
		Seconds float64 `json:"seconds"`
	} `json:"warmup"`

	Memory []memSample `json:"memory"`

	Sandboxes struct {
		Created int `json:"created"` // 201 answers
		Deleted int `json:"deleted"` // 204 answers, cleanup included
		MaxLive int `json:"max_live"`
	} `json:"sandboxes"`
	Leaks leaks `json:"leaks"`

	// Problems is why the exit code is 1; empty for a clean run.
	Problems []string `json:"problems"`
}

// opRow is one kind of request's figures.
type opRow struct {
	Name     string  `json:"name"`
	OK       int     `json:"ok"`
	Errors   int     `json:"errors"`   // client-side, unexpected 4xx, wrong answers, 5xx
	Expected int     `json:"expected"` // 404, 409 and wrong answers racing a delete
	OpsSec   float64 `json:"ops_per_s"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
}

// memSample is one look at the server.
type memSample struct {
	Label    string  `json:"label"` // start, 10s, 20s, ..., end, after cleanup
	At       float64 `json:"at_s"`  // seconds since the load phase began
	when     time.Time
	RSS      int64   `json:"rss_bytes"`
	Peak     int64   `json:"peak_rss_bytes"`
	Threads  int     `json:"threads"`
	FDs      int     `json:"fds"`
	CPU      float64 `json:"cpu_s"` // CPU seconds the server used so far
	Live     int     `json:"live_sandboxes"`
	Requests int64   `json:"requests"` // counted so far
	Error    string  `json:"error,omitempty"`
}

func newReport(cfg config, t target) *report {
	r := &report{}
	r.Run.ID = cfg.id
	r.Run.Clients, r.Run.Duration = cfg.clients, cfg.duration.Seconds()
	r.Run.Sandboxes, r.Run.MinSandboxes = cfg.sandboxes, cfg.minSandboxes
	r.Run.Image, r.Run.RequestTimeout = cfg.image, cfg.requestTimeout.Seconds()
	r.Run.Host, _ = os.Hostname()
	r.Run.CPUs, r.Run.Go = runtime.NumCPU(), runtime.Version()
	r.Server.Mode, r.Server.URL, r.Server.Namespace, r.Server.PID = "url", t.url, t.namespace, t.pid
	if t.child != nil {
		r.Server.Mode = "child"
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// addLoad fills the figures of the load phase.
func (r *report) addLoad(l *loader, rec *recorder, end time.Time) {
	r.Load = end.Sub(l.start).Seconds()
	secs := max(r.Load, 1e-9)
	var all []time.Duration
	for k := range numKinds {
		p50, p99, mx := latency(rec.lat[k])
		r.Ops = append(r.Ops, opRow{Name: k.String(), OK: rec.ok[k], Errors: rec.errs[k], Expected: rec.expected[k], OpsSec: float64(rec.ok[k]) / secs,
			P50: ms(p50), P99: ms(p99), Max: ms(mx)})
		r.Total.OK += rec.ok[k]
		r.Total.Errors += rec.errs[k]
		r.Total.Expected += rec.expected[k]
		all = append(all, rec.lat[k]...)
	}
	p50, p99, mx := latency(all)
	r.Total = opRow{Name: "total", OK: r.Total.OK, Errors: r.Total.Errors, Expected: r.Total.Expected, OpsSec: float64(r.Total.OK) / secs, P50: ms(p50), P99: ms(p99), Max: ms(mx)}
	e := &r.Errors
	e.ClientTimeouts, e.ClientConn = rec.counts[catTimeout], rec.counts[catConn]
	e.Expected, e.Unexpected4xx = rec.byCode, rec.unexp4
	e.Server5xx, e.Wrong, e.Cancelled = rec.counts[catServer], rec.counts[catWrong], rec.counts[catCancelled]
	e.Server = rec.server
	e.ClientSamples = append(append([]failure(nil), rec.samples[catTimeout]...), rec.samples[catConn]...)
	e.Unexpected4xxOf, e.WrongSamples, e.ExpectedOf = rec.samples[catUnexpected4], rec.samples[catWrong], rec.samples[catExpected]
	for _, s := range [][]failure{e.Server, e.ClientSamples, e.Unexpected4xxOf, e.WrongSamples, e.ExpectedOf} {
		for i := range s {
			s[i].At = s[i].when.Sub(l.start).Seconds()
		}
		slices.SortFunc(s, func(a, b failure) int { return a.when.Compare(b.when) })
	}
	first := func(s []failure) []failure { return s[:min(len(s), maxSamples)] }
	e.Server = append([]failure{}, e.Server[:min(len(e.Server), maxServer)]...) // [] in JSON when none
	e.ClientSamples, e.Unexpected4xxOf, e.WrongSamples, e.ExpectedOf = first(e.ClientSamples), first(e.Unexpected4xxOf), first(e.WrongSamples), first(e.ExpectedOf)
	_, r.Sandboxes.MaxLive = l.live.counts()
}

// judge lists the problems that make the exit code 1.
func (r *report) judge(cfg config) {
	r.Problems = []string{} // [] in JSON for a clean run
	if r.Leaks.API == nil {
		r.Leaks.API = []string{}
	}
	if r.Leaks.Docker == nil {
		r.Leaks.Docker = []string{}
	}
	add := func(format string, args ...any) { r.Problems = append(r.Problems, fmt.Sprintf(format, args...)) }
	if r.Interrupted {
		add("interrupted before the end")
	}
	if n := r.Errors.Server5xx; n > 0 {
		add("%d 5xx answers (server bugs)", n)
	}
	if n := r.Errors.Wrong; n > 0 {
		add("%d wrong answers", n)
	}
	if n := sum(r.Errors.Unexpected4xx); n > 0 {
		add("%d unexpected 4xx answers", n)
	}
	if n := len(r.Leaks.API); n > 0 {
		add("%d sandboxes still listed after the cleanup", n)
	}
	if n := len(r.Leaks.Docker); n > 0 {
		add("%d containers left on the engine", n)
	}
	if !r.Leaks.APIChecked {
		add("the API leak check did not run")
	}
	if cfg.docker && !r.Leaks.DockerChecked {
		add("the Docker leak check did not run")
	}
	if len(r.Leaks.Errors) > 0 {
		add("%d cleanup or check errors", len(r.Leaks.Errors))
	}
	if r.Server.Mode == "child" && r.Server.Exit != "clean (SIGTERM)" {
		add("server: %s", r.Server.Exit)
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// write prints the report as text or JSON.
func (r *report) write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("opensbx-load run %s, started %s\n", r.Run.ID, r.Run.Started)
	p("  %d clients, %gs, %d-%d sandboxes of %s, request timeout %gs\n", r.Run.Clients, r.Run.Duration,
		r.Run.MinSandboxes, r.Run.Sandboxes, r.Run.Image, r.Run.RequestTimeout)
	p("  machine %s, %d CPUs, %s; load average before %s, after %s\n", r.Run.Host, r.Run.CPUs, r.Run.Go,
		formatLoad(r.LoadAvg.Before), formatLoad(r.LoadAvg.After))
	p("  server: %s %s, namespace %s", r.Server.Mode, r.Server.URL, r.Server.Namespace)
	if r.Server.PID != 0 {
		p(", pid %d", r.Server.PID)
	}
	p("\n  warm-up: %d sandboxes created in %.1fs (not in the figures below)\n", r.Warmup.Created, r.Warmup.Seconds)
	p("  load phase %.1fs (the duration, then the actions in flight finish)\n\n", r.Load)

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\tok\tops/s\tp50\tp99\tmax\terrors\texpected\t")
	for _, o := range append(r.Ops, r.Total) {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%s\t%s\t%s\t%d\t%d\t\n", o.Name, o.OK, o.OpsSec, formatMS(o.P50), formatMS(o.P99), formatMS(o.Max), o.Errors, o.Expected)
	}
	tw.Flush()

	e := r.Errors
	p("\nerrors\n")
	p("  client-side: %d timeouts, %d connection errors\n", e.ClientTimeouts, e.ClientConn)
	p("  expected (racing a delete of the same sandbox): %s\n", formatCodes(e.Expected))
	p("  unexpected 4xx: %s\n", formatCodes(e.Unexpected4xx))
	p("  wrong answers: %d\n", e.Wrong)
	p("  5xx: %d\n", e.Server5xx)
	if e.Cancelled > 0 {
		p("  cancelled by the interrupt (not counted): %d\n", e.Cancelled)
	}
	title := "5xx"
	if len(e.Server) < e.Server5xx {
		title = fmt.Sprintf("5xx (%d of them listed)", len(e.Server))
	}
	listFailures(&b, title, e.Server)
	listFailures(&b, "unexpected 4xx (first ones)", e.Unexpected4xxOf)
	listFailures(&b, "wrong answers (first ones)", e.WrongSamples)
	listFailures(&b, "client-side errors (first ones)", e.ClientSamples)
	listFailures(&b, "expected (first ones)", e.ExpectedOf)

	p("\nserver memory\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  sample\tat\tRSS\tpeak RSS\tthreads\tfds\tCPU\tlive sandboxes\trequests\t")
	for _, m := range r.Memory {
		if m.Error != "" {
			fmt.Fprintf(tw, "  %s\t%.1fs\t?\t?\t?\t?\t?\t%d\t%d\t%s\n", m.Label, m.At, m.Live, m.Requests, m.Error)
			continue
		}
		fmt.Fprintf(tw, "  %s\t%.1fs\t%s\t%s\t%d\t%d\t%.1fs\t%d\t%d\t\n", m.Label, m.At, formatBytes(m.RSS), formatBytes(m.Peak),
			m.Threads, m.FDs, m.CPU, m.Live, m.Requests)
	}
	tw.Flush()

	p("\nsandboxes: %d created, %d deleted, at most %d live\n", r.Sandboxes.Created, r.Sandboxes.Deleted, r.Sandboxes.MaxLive)
	lk := r.Leaks
	p("cleanup: %d not deleted when the load ended, %d deleted by the cleanup\n", lk.AtEnd, lk.Deleted)
	if lk.DockerBefore > 0 {
		p("docker check: its filter saw %d containers of the run before the cleanup\n", lk.DockerBefore)
	}
	p("leaks: API %s, Docker %s\n", formatLeaks(lk.API, lk.APIChecked, "GET /v1/sandboxes"), formatLeaks(lk.Docker, lk.DockerChecked, lk.DockerFilter))
	for _, s := range lk.Removed {
		p("  removed: %s\n", s)
	}
	for _, s := range lk.Errors {
		p("  error: %s\n", s)
	}
	if r.Server.Mode == "child" {
		p("server: exit %s; log lines by level %s\n", r.Server.Exit, formatCodes(r.Server.LogLevels))
		for _, s := range r.Server.LogProblems {
			p("  %s\n", s)
		}
		if r.Server.LogProblemsDropped > 0 {
			p("  ... and %d more warnings and errors\n", r.Server.LogProblemsDropped)
		}
	}
	if len(r.Problems) == 0 {
		p("\nresult: clean (no 5xx, no leak, no wrong answer, no unexpected 4xx)\n")
	} else {
		p("\nresult: PROBLEMS\n")
		for _, s := range r.Problems {
			p("  - %s\n", s)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func listFailures(b *strings.Builder, title string, fs []failure) {
	if len(fs) == 0 {
		return
	}
	fmt.Fprintf(b, "  %s:\n", title)
	for _, f := range fs {
		fmt.Fprintf(b, "    [%.1fs] %s %s %s", f.At, f.Op, f.Method, f.Path)
		if f.Status != 0 {
			fmt.Fprintf(b, " -> %d", f.Status)
			if f.InStream {
				b.WriteString(" (error record in the stream)")
			}
		}
		if f.Racing {
			b.WriteString(" while its delete ran")
		}
		fmt.Fprintf(b, " request %s\n", f.RequestID)
		if f.Body != "" {
			fmt.Fprintf(b, "      body: %s\n", strings.TrimSpace(f.Body))
		}
		if f.Detail != "" {
			fmt.Fprintf(b, "      %s\n", f.Detail)
		}
		for _, s := range f.ServerLog {
			fmt.Fprintf(b, "      server log: %s\n", s)
		}
	}
}

func formatLeaks(found []string, checked bool, what string) string {
	switch {
	case !checked:
		return "not checked"
	case len(found) == 0:
		return "0 (" + what + ")"
	default:
		return fmt.Sprintf("%d (%s): %s", len(found), what, strings.Join(found, "; "))
	}
}

// formatCodes prints counts by key, sorted: "404 x3, 409 x1" or "none".
func formatCodes(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s x%d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func formatLoad(v [3]float64) string { return fmt.Sprintf("%.2f %.2f %.2f", v[0], v[1], v[2]) }

// formatMS prints milliseconds with three significant digits, as seconds
// from 1 s up; "-" for none.
func formatMS(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 10:
		return fmt.Sprintf("%.2fms", v)
	case v < 1000:
		return fmt.Sprintf("%.0fms", v)
	case v < 10000:
		return fmt.Sprintf("%.2fs", v/1000)
	default:
		return fmt.Sprintf("%.1fs", v/1000)
	}
}

// formatBytes prints a size in MiB (KiB below one MiB).
func formatBytes(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
