package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// kind is one kind of request: a row of the report.
type kind int

const (
	kCreate kind = iota
	kGet
	kList
	kStats
	kExec    // POST .../cmd?wait=true of echo hi, read to its last record
	kLogs    // GET .../cmd/{cmd}/logs of that command
	kCmd     // POST .../cmd of the streaming command
	kStream  // GET .../logs?stream=true of it, read to the exit record and the end
	kWrite   // PUT .../files, small JSON body
	kRead    // GET .../files, JSON answer
	kWrite64 // PUT .../files, 64 KiB raw body
	kRead64  // GET .../files, raw answer
	kDelete
	numKinds
)

var kindNames = [numKinds]string{"create", "get", "list", "stats", "exec", "logs", "cmd", "stream",
	"file-write", "file-read", "file-write-64k", "file-read-64k", "delete"}

func (k kind) String() string { return kindNames[k] }

// category is how a request ended.
type category int

const (
	catOK          category = iota
	catCancelled            // this command was interrupted: not counted
	catTimeout              // client-side: the request timeout passed
	catConn                 // client-side: connection refused, reset, cut short
	catExpected             // 404 or 409 (or a wrong answer) on a sandbox whose delete had begun
	catUnexpected4          // any other 4xx
	catServer               // 5xx, or an INTERNAL_ERROR (or 503) record in a stream
	catWrong                // 2xx whose content is wrong
)

// outcome is one request's result as the report counts it.
type outcome struct {
	cat    category
	status int    // HTTP status, or the status of a stream's error record
	code   string // the error body's code, when there was one
	detail string // what was wrong (kept for samples)
}

// classify decides how a request ended. status is the answer's (or an
// error record's) status, 0 when transport failed with err; wrong is a
// failed content check of a 2xx answer; deleting says whether the
// sandbox's delete had begun when the answer arrived; interrupted whether
// this command was told to stop.
func classify(status int, err error, wrong error, deleting, interrupted bool) category {
	switch {
	case err != nil:
		if interrupted {
			return catCancelled
		}
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return catTimeout
		}
		return catConn
	case status >= 500:
		return catServer
	case status >= 400:
		if deleting && (status == http.StatusNotFound || status == http.StatusConflict) {
			return catExpected
		}
		return catUnexpected4
	case wrong != nil:
		if deleting {
			return catExpected
		}
		return catWrong
	default:
		return catOK
	}
}

// codeStatus maps the code of a stream's error record to its status, as
// the wire contract's table does.
func codeStatus(code string) int {
	switch code {
	case "BAD_REQUEST":
		return 400
	case "UNAUTHORIZED":
		return 401
	case "FORBIDDEN":
		return 403
	case "NOT_FOUND":
		return 404
	case "CONFLICT":
		return 409
	case "PAYLOAD_TOO_LARGE":
		return 413
	case "UNSUPPORTED":
		return 422
	case "RATE_LIMITED":
		return 429
	case "REGISTRY_ERROR", "REGISTRY_UNAUTHORIZED":
		return 502
	case "UNAVAILABLE":
		return 503
	default: // INTERNAL_ERROR and anything unknown
		return 500
	}
}

// failure is one request worth listing in the report.
type failure struct {
	Op        string  `json:"op"`
	Method    string  `json:"method"`
	Path      string  `json:"path"`
	Status    int     `json:"status,omitempty"`
	InStream  bool    `json:"in_stream,omitempty"`     // an error record after a 200
	Racing    bool    `json:"racing_delete,omitempty"` // the sandbox's delete had begun when it answered
	Body      string  `json:"body,omitempty"`          // the answer, cut at maxListedBody
	Detail    string  `json:"detail,omitempty"`
	RequestID string  `json:"request_id"`
	At        float64 `json:"at_s"` // seconds since the load began (negative: in the warm-up)
	when      time.Time
	ServerLog []string `json:"server_log,omitempty"`
}

const (
	maxListedBody = 2 << 10
	maxSamples    = 20   // listed client errors, unexpected 4xx, wrong and expected answers: the earliest
	maxServer     = 1000 // listed 5xx: the earliest
	maxKept       = 100  // failures of each category one client keeps for those lists
)

// recorder holds one client's figures; clients merge at the end.
type recorder struct {
	ok       [numKinds]int
	lat      [numKinds][]time.Duration // of the successful requests
	errs     [numKinds]int             // errors, the expected ones apart
	expected [numKinds]int             // 404, 409 and wrong answers racing a delete
	counts   map[category]int
	byCode   map[string]int // "404" etc. for catExpected ("wrong answer" too), status for catUnexpected4
	unexp4   map[string]int
	server   []failure // every 5xx, up to maxServer
	samples  map[category][]failure
}

func newRecorder() *recorder {
	return &recorder{counts: map[category]int{}, byCode: map[string]int{}, unexp4: map[string]int{}, samples: map[category][]failure{}}
}

// add counts one request.
func (r *recorder) add(k kind, o outcome, took time.Duration, f failure) {
	r.counts[o.cat]++
	switch o.cat {
	case catOK:
		r.ok[k]++
		r.lat[k] = append(r.lat[k], took)
		return
	case catCancelled:
		return
	}
	if o.cat == catExpected {
		r.expected[k]++
	} else {
		r.errs[k]++
	}
	switch o.cat {
	case catExpected:
		key := "wrong answer"
		if o.status >= 400 {
			key = strconv.Itoa(o.status)
		}
		r.byCode[key]++
	case catUnexpected4:
		r.unexp4[strconv.Itoa(o.status)]++
	case catServer:
		if len(r.server) < maxKept {
			r.server = append(r.server, f)
		}
		return
	}
	if len(r.samples[o.cat]) < maxKept {
		r.samples[o.cat] = append(r.samples[o.cat], f)
	}
}

// merge adds o into r.
func (r *recorder) merge(o *recorder) {
	for k := range numKinds {
		r.ok[k] += o.ok[k]
		r.lat[k] = append(r.lat[k], o.lat[k]...)
	}
	r.mergeErrors(o)
}

// mergeErrors adds o's errors into r, not its successes: those of the
// warm-up are outside the load phase's figures.
func (r *recorder) mergeErrors(o *recorder) {
	for k := range numKinds {
		r.errs[k] += o.errs[k]
		r.expected[k] += o.expected[k]
	}
	for c, n := range o.counts {
		if c != catOK {
			r.counts[c] += n
		}
	}
	for c, n := range o.byCode {
		r.byCode[c] += n
	}
	for c, n := range o.unexp4 {
		r.unexp4[c] += n
	}
	r.server = append(r.server, o.server...) // the report keeps the earliest maxServer
	for c, fs := range o.samples {
		r.samples[c] = append(r.samples[c], fs...) // the report keeps the earliest maxSamples
	}
}

// percentile is the nearest-rank p-th percentile of sorted samples
// (0 < p <= 100): the smallest sample with at least p% of them at or
// below it.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(rank-1, len(sorted)-1))]
}

// latency summarises samples (sorting them).
func latency(samples []time.Duration) (p50, p99, maxv time.Duration) {
	slices.Sort(samples)
	if len(samples) == 0 {
		return 0, 0, 0
	}
	return percentile(samples, 50), percentile(samples, 99), samples[len(samples)-1]
}
