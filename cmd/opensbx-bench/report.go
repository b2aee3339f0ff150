package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// report is everything a run prints.
type report struct {
	Meta meta     `json:"meta"`
	Rows []result `json:"rows"`
}

// meta describes the run and the machine.
type meta struct {
	Run       string    `json:"run"`
	Date      string    `json:"date"`
	Go        string    `json:"go"`
	OS        string    `json:"os"`
	Arch      string    `json:"arch"`
	CPUs      int       `json:"cpus"`
	LoadStart string    `json:"load_start,omitempty"`
	LoadEnd   string    `json:"load_end,omitempty"`
	Engine    string    `json:"engine"`
	API       string    `json:"api"`
	Image     string    `json:"image"`
	Flags     flagsMeta `json:"flags"`
}

// flagsMeta are the flags that shape the figures.
type flagsMeta struct {
	N             int    `json:"n"`
	Batch         int    `json:"batch"`
	BatchRuns     int    `json:"batch_runs"`
	Conc          int    `json:"conc"`
	Execs         int    `json:"execs"`
	ExecSandboxes int    `json:"exec_sandboxes"`
	Rows          string `json:"rows,omitempty"`
}

// result is one row's figures.
type result struct {
	Name string `json:"name"`
	What string `json:"what"`
	// Unit is "ns" for times, "bytes" for the heap row.
	Unit    string   `json:"unit"`
	N       int      `json:"n"`
	Manager *summary `json:"manager,omitempty"`
	Raw     *summary `json:"raw,omitempty"`
	// Ratio is Manager.P50 / Raw.P50.
	Ratio float64 `json:"ratio,omitempty"`
	// ManagerOpsPerSec and RawOpsPerSec are operations per second at the
	// p50 wall time, for rows that run many operations per sample.
	ManagerOpsPerSec float64 `json:"manager_ops_per_sec,omitempty"`
	RawOpsPerSec     float64 `json:"raw_ops_per_sec,omitempty"`
	Note             string  `json:"note,omitempty"`
	Error            string  `json:"error,omitempty"`
}

// summary is the p50, p95 and max of a row's samples, in the row's unit.
type summary struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	Max float64 `json:"max"`
}

// summarize returns the summary of ds, or nil when there are none.
func summarize(ds []time.Duration) *summary {
	if len(ds) == 0 {
		return nil
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return &summary{P50: float64(percentile(s, 50)), P95: float64(percentile(s, 95)), Max: float64(s[len(s)-1])}
}

// percentile is the nearest-rank p-th percentile of sorted (not empty):
// the smallest sample with at least p % of the samples at or below it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	k := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(k, 1), len(sorted))-1]
}

// result is the trial's row in the report; err is the row's failure.
func (t *trial) result(err error) result {
	r := result{Name: t.row.name, What: t.row.what, Unit: "ns", N: max(len(t.manager), len(t.raw)), Note: t.note}
	if t.heap != nil {
		r.Unit, r.N = "bytes", 1
		r.Manager = &summary{P50: *t.heap, P95: *t.heap, Max: *t.heap}
	} else {
		r.Manager, r.Raw = summarize(t.manager), summarize(t.raw)
	}
	if r.Manager != nil && r.Raw != nil && r.Raw.P50 > 0 {
		r.Ratio = r.Manager.P50 / r.Raw.P50
	}
	if t.ops > 0 {
		if r.Manager != nil && r.Manager.P50 > 0 {
			r.ManagerOpsPerSec = float64(t.ops) / (r.Manager.P50 / 1e9)
		}
		if r.Raw != nil && r.Raw.P50 > 0 {
			r.RawOpsPerSec = float64(t.ops) / (r.Raw.P50 / 1e9)
		}
	}
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

// write prints the report as a table, or as indented JSON.
func (rep *report) write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	m := rep.Meta
	fmt.Fprintf(w, "opensbx-bench run %s, %s\n", m.Run, m.Date)
	fmt.Fprintf(w, "%s/%s, %d CPUs, %s; Docker %s (API %s); image %s\n", m.OS, m.Arch, m.CPUs, m.Go, m.Engine, m.API, m.Image)
	if m.LoadStart != "" {
		fmt.Fprintf(w, "load average: %s at start, %s at end\n", m.LoadStart, m.LoadEnd)
	}
	f := m.Flags
	cmd := fmt.Sprintf("go run ./cmd/opensbx-bench -n %d -batch %d -batch-runs %d -conc %d -execs %d -exec-sandboxes %d",
		f.N, f.Batch, f.BatchRuns, f.Conc, f.Execs, f.ExecSandboxes)
	if f.Rows != "" {
		cmd += fmt.Sprintf(" -rows '%s'", f.Rows)
	}
	fmt.Fprintf(w, "%s\n\n", cmd)
	// Right-aligned figures; names padded to one width read left-aligned.
	width := len("row")
	for _, r := range rep.Rows {
		width = max(width, len(r.Name))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\tn\tmanager p50\tp95\tmax\traw p50\tp95\tmax\tmanager/raw\t\n", width, "row")
	for _, r := range rep.Rows {
		cells := []string{fmt.Sprintf("%-*s", width, r.Name), fmt.Sprint(r.N)}
		cells = append(cells, summaryCells(r.Manager, r.Unit)...)
		cells = append(cells, summaryCells(r.Raw, r.Unit)...)
		switch {
		case r.Error != "":
			cells = append(cells, "FAILED")
		case r.Ratio > 0:
			cells = append(cells, fmt.Sprintf("%.2f", r.Ratio))
		default:
			cells = append(cells, "-")
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nrows (the ratio is manager p50 / raw p50; p = nearest rank):")
	for _, r := range rep.Rows {
		line := "  " + r.Name + ": " + r.What
		if r.Note != "" {
			line += " " + r.Note
		}
		if r.ManagerOpsPerSec > 0 && r.RawOpsPerSec > 0 {
			line += fmt.Sprintf(" At p50: manager %.0f ops/s, raw %.0f ops/s.", r.ManagerOpsPerSec, r.RawOpsPerSec)
		}
		if r.Error != "" {
			line += " FAILED: " + r.Error
		}
		fmt.Fprintln(w, line)
	}
	return nil
}

// summaryCells formats a summary's three figures, or dashes.
func summaryCells(s *summary, unit string) []string {
	if s == nil {
		return []string{"-", "-", "-"}
	}
	out := make([]string, 0, 3)
	for _, v := range []float64{s.P50, s.P95, s.Max} {
		out = append(out, formatValue(v, unit))
	}
	return out
}

// formatValue prints a time (unit "ns") or a size (unit "bytes") briefly.
func formatValue(v float64, unit string) string {
	if unit == "bytes" {
		switch a := math.Abs(v); {
		case a >= 1<<20:
			return fmt.Sprintf("%.1f MiB", v/(1<<20))
		case a >= 1<<10:
			return fmt.Sprintf("%.1f KiB", v/(1<<10))
		}
		return fmt.Sprintf("%.0f B", v)
	}
	d := time.Duration(v)
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0fms", float64(d)/1e6)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2fms", float64(d)/1e6)
}
