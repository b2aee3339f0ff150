package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
)

// config is what the flags ask for.
type config struct {
	n             int           // iterations of each latency row
	batch         int           // sandboxes of the batch, List and heap rows
	batchRuns     int           // iterations of the batch rows
	conc          int           // concurrency of batch rows and setup
	execs         int           // concurrent exec round trips
	execSandboxes int           // sandboxes the concurrent execs spread over
	rows          string        // row selection, "" = all
	json          bool          // JSON instead of the table
	pprofDir      string        // CPU profiles per row, "" = none
	keepGoing     bool          // continue after a failing row
	timeout       time.Duration // bound on the whole run
	id            string        // run id
}

// usageError is a bad flag or flag value (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

var idRE = regexp.MustCompile(`^[a-z0-9]{1,16}$`)

// parseFlags parses and checks args; usage goes to stderr.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("opensbx-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.n, "n", 10, "iterations of each latency row")
	fs.IntVar(&cfg.batch, "batch", 100, "sandboxes in the batch rows, the List row and the heap row")
	fs.IntVar(&cfg.batchRuns, "batch-runs", 1, "iterations of the batch rows (batch-cold, batch-pool, exec-concurrent)")
	fs.IntVar(&cfg.conc, "conc", 10, "concurrency of the batch rows and of setup")
	fs.IntVar(&cfg.execs, "execs", 200, "concurrent exec round trips of exec-concurrent")
	fs.IntVar(&cfg.execSandboxes, "exec-sandboxes", 10, "sandboxes exec-concurrent spreads its execs over")
	fs.StringVar(&cfg.rows, "rows", "", "rows to run: a comma list of names or a regexp (default all): "+strings.Join(rowNames(), ","))
	fs.BoolVar(&cfg.json, "json", false, "print JSON instead of the table")
	fs.StringVar(&cfg.pprofDir, "pprof", "", "write a CPU profile of each row's measured part to `DIR`/<row>.cpu.pprof")
	fs.BoolVar(&cfg.keepGoing, "keep-going", false, "run the remaining rows after a row fails")
	fs.DurationVar(&cfg.timeout, "timeout", time.Hour, "bound on the whole run")
	fs.StringVar(&cfg.id, "id", "", "run id used in labels and names (default random)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return cfg, err
		}
		return cfg, usageError{err}
	}
	if fs.NArg() > 0 {
		return cfg, usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	for _, c := range []struct {
		name     string
		v, lo, h int
	}{
		{"n", cfg.n, 1, 10000},
		{"batch", cfg.batch, 1, 1000},
		{"batch-runs", cfg.batchRuns, 1, 1000},
		{"conc", cfg.conc, 1, 100},
		{"execs", cfg.execs, 1, 10000},
		{"exec-sandboxes", cfg.execSandboxes, 1, 100},
	} {
		if c.v < c.lo || c.v > c.h {
			return cfg, usageError{fmt.Errorf("-%s %d: want %d-%d", c.name, c.v, c.lo, c.h)}
		}
	}
	if cfg.timeout <= 0 {
		return cfg, usageError{fmt.Errorf("-timeout %v: want a positive duration", cfg.timeout)}
	}
	if cfg.id == "" {
		var b [4]byte
		rand.Read(b[:])
		cfg.id = hex.EncodeToString(b[:])
	}
	if !idRE.MatchString(cfg.id) {
		return cfg, usageError{fmt.Errorf("-id %q: want 1-16 of [a-z0-9]", cfg.id)}
	}
	if _, err := selectRows(allRows, cfg.rows); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// selectRows returns the rows spec names, in table order. spec is empty
// (every row), a comma list of row names, or else a regular expression
// matched against the names (unanchored, like go test -run).
func selectRows(all []*row, spec string) ([]*row, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return all, nil
	}
	byName := map[string]bool{}
	for _, r := range all {
		byName[r.name] = true
	}
	want := map[string]bool{}
	exact := true
	for _, p := range strings.Split(spec, ",") {
		p = strings.TrimSpace(p)
		if !byName[p] {
			exact = false
			break
		}
		want[p] = true
	}
	match := func(name string) bool { return want[name] }
	if !exact {
		re, err := regexp.Compile(spec)
		if err != nil {
			return nil, fmt.Errorf("-rows %q: neither row names (%s) nor a regexp: %v", spec, strings.Join(rowNames(), ","), err)
		}
		match = re.MatchString
	}
	var out []*row
	for _, r := range all {
		if match(r.name) {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-rows %q selects no row (rows: %s)", spec, strings.Join(rowNames(), ","))
	}
	return out, nil
}

// rowNames lists every row's name in table order.
func rowNames() []string {
	names := make([]string, len(allRows))
	for i, r := range allRows {
		names[i] = r.name
	}
	return names
}
