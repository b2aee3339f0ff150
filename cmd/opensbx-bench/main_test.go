package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/matryer/is"

	"github.com/opensbx/opensbx/internal/testenv"
)

// tiny are the flags that make a whole run small enough for a test.
var tiny = []string{"-n", "2", "-batch", "3", "-conc", "3", "-execs", "6", "-exec-sandboxes", "2"}

// testRun returns a fresh run id and, registered with t.Cleanup, a check
// that the run left no container behind (which also removes any it finds,
// so that a failing test cleans up too).
func testRun(t *testing.T) (*client.Client, string) {
	t.Helper()
	cli := testenv.Engine(t)
	testenv.Images(t, cli)
	var b [4]byte
	rand.Read(b[:])
	id := "t" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		left, err := runContainers(ctx, cli, id)
		if err != nil {
			t.Errorf("list the run's containers: %v", err)
		}
		for _, c := range left {
			t.Errorf("left behind: %s %v", c.ID[:12], c.Names)
			cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		}
	})
	return cli, id
}

// runContainers lists every container of run id.
func runContainers(ctx context.Context, cli *client.Client, id string) ([]container.Summary, error) {
	return cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", labelRun+"="+id))})
}

// TestRunWholeCommand runs every row with tiny sizes against the real
// engine and checks that the table has a line of figures for each row,
// that none failed, and (in testRun's cleanup) that nothing is left.
func TestRunWholeCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("a whole run takes minutes")
	}
	is := is.New(t)
	_, id := testRun(t)
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), append([]string{"-id", id}, tiny...), &stdout, &stderr)
	t.Logf("stderr:\n%s", stderr.String())
	is.NoErr(err) // the whole run
	out := stdout.String()
	t.Logf("stdout:\n%s", out)
	for _, name := range rowNames() {
		// name, n, then three manager figures.
		line := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(name) + `\s+\d+\s+-?\d`)
		is.True(line.MatchString(out)) // a table line for the row
		is.True(strings.Contains(out, "\n  "+name+": "))
	}
	is.True(!strings.Contains(out, "FAILED")) // no row failed
	is.True(strings.Contains(out, "-n 2 -batch 3 -batch-runs 1 -conc 3 -execs 6 -exec-sandboxes 2"))
}

// TestRunJSON checks the JSON report of two rows: their names in table
// order, both sides' figures and the ratio.
func TestRunJSON(t *testing.T) {
	is := is.New(t)
	_, id := testRun(t)
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"-id", id, "-json", "-rows", "list,exec", "-n", "2", "-batch", "2"}, &stdout, &stderr)
	is.NoErr(err) // the run
	var rep report
	is.NoErr(json.Unmarshal(stdout.Bytes(), &rep)) // stdout is only JSON
	is.Equal(rep.Meta.Run, id)
	is.Equal(rep.Meta.Flags.N, 2)
	is.Equal(len(rep.Rows), 2)
	is.Equal(rep.Rows[0].Name, "exec") // table order
	is.Equal(rep.Rows[1].Name, "list")
	for _, r := range rep.Rows {
		is.Equal(r.Error, "")
		is.Equal(r.Unit, "ns")
		is.Equal(r.N, 2)
		is.True(r.Manager != nil && r.Raw != nil)                                                      // both sides
		is.True(r.Manager.P50 > 0 && r.Manager.P50 <= r.Manager.P95 && r.Manager.P95 <= r.Manager.Max) // ordered
		is.True(r.Raw.P50 > 0 && r.Raw.P50 <= r.Raw.P95 && r.Raw.P95 <= r.Raw.Max)
		is.True(r.Ratio > 0)
	}
}

// TestRunInterrupted cancels the run (as SIGINT does) while a row has
// containers, and checks that the run reports the interruption and (in
// testRun's cleanup) that it removed everything.
func TestRunInterrupted(t *testing.T) {
	is := is.New(t)
	cli, id := testRun(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	interrupted := make(chan struct{})
	go func() {
		defer close(interrupted)
		for ctx.Err() == nil {
			if cs, err := runContainers(ctx, cli, id); err == nil && len(cs) > 0 {
				cancel()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"-id", id, "-rows", "batch-cold", "-batch", "4", "-conc", "2"}, &stdout, &stderr)
	cancel()
	<-interrupted
	t.Logf("stderr:\n%s", stderr.String())
	is.True(errors.Is(err, context.Canceled)) // the run reports the interruption
	is.True(strings.Contains(stdout.String(), "batch-cold"))
}

func TestSelectRows(t *testing.T) {
	tests := []struct {
		spec    string
		want    []string
		wantErr bool
	}{
		{spec: "", want: rowNames()},
		{spec: "exec", want: []string{"exec"}},               // exact, not also exec-concurrent
		{spec: "list, exec", want: []string{"exec", "list"}}, // table order
		{spec: "create", want: []string{"create"}},           // exact
		{spec: "^pool-", want: []string{"pool-create", "pool-create-run"}},
		{spec: "files", want: []string{"files-1k", "files-1m"}}, // not a name: a regexp
		{spec: "exec,nope", want: nil, wantErr: true},           // regexp matching nothing
		{spec: "(", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			is := is.New(t)
			rows, err := selectRows(allRows, tt.spec)
			if tt.wantErr {
				is.True(err != nil)
				return
			}
			is.NoErr(err)
			var got []string
			for _, r := range rows {
				got = append(got, r.name)
			}
			is.Equal(got, tt.want)
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		samples       []time.Duration
		p50, p95, max time.Duration
	}{
		{ms(7), 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond},
		{ms(2, 1), 1 * time.Millisecond, 2 * time.Millisecond, 2 * time.Millisecond},
		{ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 5 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21), 11 * time.Millisecond, 20 * time.Millisecond, 21 * time.Millisecond},
	}
	for _, tt := range tests {
		is := is.New(t)
		s := summarize(tt.samples)
		is.Equal(s.P50, float64(tt.p50))
		is.Equal(s.P95, float64(tt.p95))
		is.Equal(s.Max, float64(tt.max))
	}
	is.New(t).True(summarize(nil) == nil)
}

func TestFormatValue(t *testing.T) {
	tests := []struct {
		v    float64
		unit string
		want string
	}{
		{float64(420 * time.Microsecond), "ns", "0.42ms"},
		{float64(6100 * time.Microsecond), "ns", "6.1ms"},
		{float64(317 * time.Millisecond), "ns", "317ms"},
		{float64(1610 * time.Millisecond), "ns", "1.61s"},
		{float64(13300 * time.Millisecond), "ns", "13.3s"},
		{512, "bytes", "512 B"},
		{12.5 * 1024, "bytes", "12.5 KiB"},
		{-3 * 1024, "bytes", "-3.0 KiB"},
		{2.5 * 1024 * 1024, "bytes", "2.5 MiB"},
	}
	for _, tt := range tests {
		is.New(t).Equal(formatValue(tt.v, tt.unit), tt.want)
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr bool
	}{
		{args: nil},
		{args: []string{"-n", "0"}, wantErr: true},
		{args: []string{"-batch", "1001"}, wantErr: true},
		{args: []string{"-id", "Bad_ID"}, wantErr: true},
		{args: []string{"-rows", "nope"}, wantErr: true},
		{args: []string{"extra"}, wantErr: true},
		{args: []string{"-timeout", "0s"}, wantErr: true},
		{args: []string{"-rows", "exec,list", "-json", "-id", "abc"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			is := is.New(t)
			cfg, err := parseFlags(tt.args, &bytes.Buffer{})
			if tt.wantErr {
				var ue usageError
				is.True(errors.As(err, &ue)) // a usage error (exit code 2)
				return
			}
			is.NoErr(err)
			is.True(idRE.MatchString(cfg.id))
		})
	}
}
