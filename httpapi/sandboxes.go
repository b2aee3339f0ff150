package httpapi

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/opensbx/opensbx"
)

// sandboxView is the JSON form of a sandbox. Times are RFC 3339 strings;
// started_at and finished_at are null when the engine has none (and absent
// from list results), expires_at and url are omitted when there are none.
type sandboxView struct {
	ID         string             `json:"id"`
	Name       string             `json:"name"`
	Image      string             `json:"image"`
	Status     string             `json:"status"`
	State      string             `json:"state"`
	Running    bool               `json:"running"`
	Ports      []string           `json:"ports"`
	PortsMap   map[string]string  `json:"ports_map,omitempty"`
	HostIP     string             `json:"host_ip,omitempty"`
	Resources  *opensbx.Resources `json:"resources,omitempty"`
	Timeout    float64            `json:"timeout,omitempty"`
	CreatedAt  *string            `json:"created_at,omitempty"`
	StartedAt  any                `json:"started_at,omitempty"`  // string or null; absent in lists
	FinishedAt any                `json:"finished_at,omitempty"` // string or null; absent in lists
	ExpiresAt  string             `json:"expires_at,omitempty"`
	ExitCode   *int               `json:"exit_code,omitempty"`
	OOMKilled  bool               `json:"oom_killed,omitempty"`
	URL        string             `json:"url,omitempty"`
	Private    bool               `json:"private,omitempty"`
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// nullableTime is rfc3339 as a pointer: nil (JSON null) for the zero time.
func nullableTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := rfc3339(t)
	return &s
}

// timeOrNull is t in RFC 3339, or JSON null for the zero time.
func timeOrNull(t time.Time) any {
	if t.IsZero() {
		return json.RawMessage("null")
	}
	return rfc3339(t)
}

// url is the public address of sandbox sb, or "" (see WithPreview and
// WithBaseDomain).
func (s *server) url(sb *opensbx.Sandbox) string {
	if s.preview != nil {
		return s.preview.URL(sb)
	}
	if s.baseDomain == "" || len(sb.Ports) == 0 {
		return ""
	}
	scheme, host := "http", s.baseDomain
	if rest, ok := strings.CutPrefix(host, "https://"); ok {
		scheme, host = "https", rest
	} else if rest, ok := strings.CutPrefix(host, "http://"); ok {
		host = rest
	}
	return scheme + "://" + sb.Name + "." + host
}

// view builds the JSON form of sb; detail adds what Get knows beyond List.
func (s *server) view(sb *opensbx.Sandbox, detail bool) sandboxView {
	v := sandboxView{
		ID:        sb.ID,
		Name:      sb.Name,
		Image:     sb.Image,
		Status:    sb.Status,
		State:     string(sb.State),
		Running:   sb.Running(),
		Ports:     sb.Ports,
		PortsMap:  sb.PortMap,
		HostIP:    sb.HostIP,
		Timeout:   sb.TTL.Seconds(),
		CreatedAt: nullableTime(sb.CreatedAt),
		ExpiresAt: rfc3339(sb.ExpiresAt),
		URL:       s.url(sb),
		Private:   sb.Private,
	}
	if v.Ports == nil {
		v.Ports = []string{}
	}
	if v.Status == "" {
		v.Status = string(sb.State)
	}
	if detail {
		res := sb.Resources
		v.Resources = &res
		v.StartedAt = timeOrNull(sb.StartedAt)
		v.FinishedAt = timeOrNull(sb.FinishedAt)
		v.OOMKilled = sb.OOMKilled
		if sb.State == opensbx.StateStopped {
			code := sb.ExitCode
			v.ExitCode = &code
		}
	}
	return v
}

// seconds turns a JSON timeout in seconds into a duration; NaN, infinities
// and values too large for a time.Duration are ErrInvalid-like 400s.
func seconds(field string, secs float64) (time.Duration, error) {
	if math.IsNaN(secs) || math.IsInf(secs, 0) || math.Abs(secs) > float64(math.MaxInt64/int64(time.Second)) {
		return 0, badRequest(field + " is out of range")
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// createRequest is the body of POST /sandboxes and the arguments of the
// sandbox_create tool. JSON null for any field means the same as leaving it
// out.
type createRequest struct {
	Image     string   `json:"image" jsonschema:"image reference to run, present locally (see image_list; set pull to fetch it), e.g. busybox:latest"`
	Name      string   `json:"name,omitempty" jsonschema:"optional unique name (letters, digits, '.', '_', '-'; at most 63); retrying a create with the same name and settings returns the existing sandbox"`
	Ports     []string `json:"ports,omitempty" jsonschema:"container ports to publish, each a number with an optional protocol, e.g. [\"8080\", \"53/udp\"]; the first is the main port"`
	Timeout   float64  `json:"timeout,omitempty" jsonschema:"time to live in seconds after which the sandbox is stopped; 0 or absent = the server's default; never negative"`
	Resources struct {
		Memory int64   `json:"memory,omitempty" jsonschema:"memory limit in MiB; 0 = the server's default"`
		CPUs   float64 `json:"cpus,omitempty" jsonschema:"number of CPUs, fractions allowed (0.5); 0 = the server's default"`
	} `json:"resources,omitempty" jsonschema:"CPU and memory limits"`
	Env              []string `json:"env,omitempty" jsonschema:"environment as KEY=VALUE strings, e.g. [\"DEBUG=1\"]"`
	Command          []string `json:"command,omitempty" jsonschema:"replaces the image's CMD (by default the sandbox runs a long sleep to stay alive)"`
	Entrypoint       []string `json:"entrypoint,omitempty" jsonschema:"replaces the image's ENTRYPOINT"`
	KeepImageCommand bool     `json:"keep_image_command,omitempty" jsonschema:"run the image's own ENTRYPOINT and CMD instead of the keep-alive sleep"`
	WorkingDir       string   `json:"working_dir,omitempty" jsonschema:"working directory of the sandbox's processes"`
	Pull             bool     `json:"pull,omitempty" jsonschema:"pull the image first when it is not present locally"`
	Private          *bool    `json:"private,omitempty" jsonschema:"make the sandbox's preview URLs private: served only with its preview token (returned by the create); absent = the server's default"`
}

// options validates the request and turns it into the Manager's options.
func (req createRequest) options() (opensbx.CreateOptions, error) {
	if strings.TrimSpace(req.Image) == "" {
		return opensbx.CreateOptions{}, badRequest(`"image" is required`)
	}
	if req.Timeout < 0 {
		return opensbx.CreateOptions{}, badRequest(`"timeout" must not be negative`)
	}
	ttl, err := seconds("timeout", req.Timeout)
	if err != nil {
		return opensbx.CreateOptions{}, err
	}
	return opensbx.CreateOptions{
		Image:            req.Image,
		Name:             req.Name,
		Ports:            req.Ports,
		Env:              req.Env,
		Resources:        opensbx.Resources{MemoryMB: req.Resources.Memory, CPUs: req.Resources.CPUs},
		TTL:              ttl,
		Command:          req.Command,
		Entrypoint:       req.Entrypoint,
		KeepImageCommand: req.KeepImageCommand,
		WorkingDir:       req.WorkingDir,
		PullMissing:      req.Pull,
	}, nil
}

// handleSandboxCreate creates and starts a sandbox: 201 with the sandbox,
// or 200 with the existing one when a create with the same "name" and
// settings is retried.
func (s *server) handleSandboxCreate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req createRequest
		if err := decode(w, r, s.maxBody, &req); err != nil {
			s.fail(w, r, err)
			return
		}
		opts, err := req.options()
		if err != nil {
			s.fail(w, r, err)
			return
		}
		opts.Private = s.private(req.Private)
		res, err := s.createWithQuota(r.Context(), opts)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		status := http.StatusCreated
		if !res.Created {
			status = http.StatusOK
		}
		encode(w, status, s.createView(res.Sandbox))
	})
}

type listResponse struct {
	Sandboxes []sandboxView `json:"sandboxes"`
}

func (s *server) listView(sbs []*opensbx.Sandbox) listResponse {
	out := listResponse{Sandboxes: make([]sandboxView, 0, len(sbs))}
	for _, sb := range sbs {
		out.Sandboxes = append(out.Sandboxes, s.view(sb, false))
	}
	return out
}

func (s *server) handleSandboxList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sbs, err := s.m.List(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		encode(w, http.StatusOK, s.listView(sbs))
	})
}

func (s *server) handleSandboxGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sb, err := s.m.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		encode(w, http.StatusOK, s.view(sb, true))
	})
}

func (s *server) handleSandboxDelete() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.m.Delete(r.Context(), r.PathValue("id")); err != nil {
			s.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// transitionResponse is the answer of start, stop, restart, pause and
// resume: the contract's "status" word plus the sandbox's new facts.
type transitionResponse struct {
	Status    string            `json:"status"`
	ID        string            `json:"id"`
	State     string            `json:"state"`
	Ports     []string          `json:"ports"`
	PortsMap  map[string]string `json:"ports_map,omitempty"`
	ExpiresAt string            `json:"expires_at,omitempty"`
	Timeout   float64           `json:"timeout,omitempty"`
	URL       string            `json:"url,omitempty"`
}

// The "status" words of the lifecycle steps (POST .../start etc. and the
// sandbox_start etc. tools).
const (
	statusStarted   = "started"
	statusStopped   = "stopped"
	statusRestarted = "restarted"
	statusPaused    = "paused"
	statusResumed   = "resumed"
)

// lifecycleStep is a Manager call moving a sandbox to another state.
type lifecycleStep func(m *opensbx.Manager, ctx context.Context, id string) (*opensbx.Sandbox, error)

// transitionView is the answer of a lifecycle step that moved sb.
func (s *server) transitionView(status string, sb *opensbx.Sandbox) transitionResponse {
	out := transitionResponse{
		Status:    status,
		ID:        sb.ID,
		State:     string(sb.State),
		Ports:     sb.Ports,
		PortsMap:  sb.PortMap,
		ExpiresAt: rfc3339(sb.ExpiresAt),
		URL:       s.url(sb),
	}
	if out.Ports == nil {
		out.Ports = []string{}
	}
	return out
}

// transition makes the handler of one lifecycle step answering status.
func (s *server) transition(status string, step lifecycleStep) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sb, err := step(s.m, r.Context(), r.PathValue("id"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		encode(w, http.StatusOK, s.transitionView(status, sb))
	})
}

func (s *server) handleSandboxStart() http.Handler {
	return s.transition(statusStarted, (*opensbx.Manager).Start)
}

func (s *server) handleSandboxStop() http.Handler {
	return s.transition(statusStopped, (*opensbx.Manager).Stop)
}

func (s *server) handleSandboxRestart() http.Handler {
	return s.transition(statusRestarted, (*opensbx.Manager).Restart)
}

func (s *server) handleSandboxPause() http.Handler {
	return s.transition(statusPaused, (*opensbx.Manager).Pause)
}

func (s *server) handleSandboxResume() http.Handler {
	return s.transition(statusResumed, (*opensbx.Manager).Resume)
}

type renewRequest struct {
	Timeout float64 `json:"timeout" jsonschema:"new time to live in seconds from now; must be positive"`
}

// ttl validates the requested timeout.
func (req renewRequest) ttl() (time.Duration, error) {
	if !(req.Timeout > 0) {
		return 0, badRequest(`"timeout" must be a positive number of seconds`)
	}
	return seconds("timeout", req.Timeout)
}

type renewResponse struct {
	Status    string  `json:"status"`
	Timeout   float64 `json:"timeout"`
	ExpiresAt string  `json:"expires_at,omitempty"`
}

func renewView(req renewRequest, sb *opensbx.Sandbox) renewResponse {
	return renewResponse{Status: "renewed", Timeout: req.Timeout, ExpiresAt: rfc3339(sb.ExpiresAt)}
}

// handleSandboxRenew sets a sandbox's deadline to "timeout" seconds from
// now; a missing or non-positive timeout is 400.
func (s *server) handleSandboxRenew() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req renewRequest
		if err := decode(w, r, s.maxBody, &req); err != nil {
			s.fail(w, r, err)
			return
		}
		ttl, err := req.ttl()
		if err != nil {
			s.fail(w, r, err)
			return
		}
		sb, err := s.m.Renew(r.Context(), r.PathValue("id"), ttl)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		encode(w, http.StatusOK, renewView(req, sb))
	})
}

type statsView struct {
	Time       string  `json:"time"`
	CPUPercent float64 `json:"cpu_percent"`
	Memory     struct {
		Usage   uint64  `json:"usage"`
		Limit   uint64  `json:"limit"`
		Percent float64 `json:"percent"`
	} `json:"memory"`
	PIDs uint64 `json:"pids"`
}

func statsOf(st opensbx.Stats) statsView {
	var v statsView
	v.Time = st.Time.UTC().Format(time.RFC3339Nano)
	v.CPUPercent = st.CPUPercent
	v.Memory.Usage, v.Memory.Limit, v.Memory.Percent = st.MemoryUsage, st.MemoryLimit, st.MemoryPercent
	v.PIDs = st.PIDs
	return v
}

// handleSandboxStats answers one sample, or with ?stream=true an ND-JSON
// stream of one sample a second until the client leaves or the sandbox
// stops (then a last {"error":...} record).
func (s *server) handleSandboxStats() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stream, err := boolQuery(r, "stream")
		if err != nil {
			s.fail(w, r, err)
			return
		}
		id := r.PathValue("id")
		if !stream {
			st, err := s.m.Stats(r.Context(), id)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			encode(w, http.StatusOK, statsOf(st))
			return
		}
		// Check the sandbox first, so that an unknown or stopped one is a
		// plain 404 or 409 rather than a stream with an error record.
		sb, err := s.m.Get(r.Context(), id)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if !sb.Running() {
			s.fail(w, r, &apiError{status: http.StatusConflict, code: codeConflict, message: "sandbox " + sb.Name + " is " + string(sb.State)})
			return
		}
		st := startNDJSON(w)
		err = s.m.StatsStream(r.Context(), sb.ID, func(v opensbx.Stats) error { return st.send(statsOf(v)) })
		if err != nil {
			s.sendError(st, r, err)
		}
	})
}

type networkResponse struct {
	HostIP   string            `json:"host_ip"`
	MainPort string            `json:"main_port"`
	PortsMap map[string]string `json:"ports_map"`
	Via      string            `json:"via"`
}

func networkView(n opensbx.Network) networkResponse {
	out := networkResponse{HostIP: n.HostIP, MainPort: n.MainPort, PortsMap: n.Ports, Via: n.Via}
	if out.PortsMap == nil {
		out.PortsMap = map[string]string{}
	}
	return out
}

func (s *server) handleSandboxNetwork() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := s.m.Network(r.Context(), r.PathValue("id"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		encode(w, http.StatusOK, networkView(n))
	})
}
