package httpapi

import (
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

type createRequest struct {
	Image     string   `json:"image"`
	Name      string   `json:"name"`
	Ports     []string `json:"ports"`
	Timeout   float64  `json:"timeout"`
	Resources struct {
		Memory int64   `json:"memory"`
		CPUs   float64 `json:"cpus"`
	} `json:"resources"`
	Env              []string `json:"env"`
	Command          []string `json:"command"`
	Entrypoint       []string `json:"entrypoint"`
	KeepImageCommand bool     `json:"keep_image_command"`
	WorkingDir       string   `json:"working_dir"`
	Pull             bool     `json:"pull"`
	Private          *bool    `json:"private"` // nil: the server's default (WithPreview)
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
		if strings.TrimSpace(req.Image) == "" {
			s.fail(w, r, badRequest(`"image" is required`))
			return
		}
		if req.Timeout < 0 {
			s.fail(w, r, badRequest(`"timeout" must not be negative`))
			return
		}
		ttl, err := seconds("timeout", req.Timeout)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		res, err := s.m.Create(r.Context(), opensbx.CreateOptions{
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
			Private:          s.private(req.Private),
		})
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

func (s *server) handleSandboxList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sbs, err := s.m.List(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out := listResponse{Sandboxes: make([]sandboxView, 0, len(sbs))}
		for _, sb := range sbs {
			out.Sandboxes = append(out.Sandboxes, s.view(sb, false))
		}
		encode(w, http.StatusOK, out)
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

// transition makes the handler of one lifecycle step answering status.
func (s *server) transition(status string, step func(*opensbx.Manager, *http.Request, string) (*opensbx.Sandbox, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sb, err := step(s.m, r, r.PathValue("id"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
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
		encode(w, http.StatusOK, out)
	})
}

func (s *server) handleSandboxStart() http.Handler {
	return s.transition("running", func(m *opensbx.Manager, r *http.Request, id string) (*opensbx.Sandbox, error) {
		return m.Start(r.Context(), id)
	})
}

func (s *server) handleSandboxStop() http.Handler {
	return s.transition("stopped", func(m *opensbx.Manager, r *http.Request, id string) (*opensbx.Sandbox, error) {
		return m.Stop(r.Context(), id)
	})
}

func (s *server) handleSandboxRestart() http.Handler {
	return s.transition("running", func(m *opensbx.Manager, r *http.Request, id string) (*opensbx.Sandbox, error) {
		return m.Restart(r.Context(), id)
	})
}

func (s *server) handleSandboxPause() http.Handler {
	return s.transition("paused", func(m *opensbx.Manager, r *http.Request, id string) (*opensbx.Sandbox, error) {
		return m.Pause(r.Context(), id)
	})
}

func (s *server) handleSandboxResume() http.Handler {
	return s.transition("resumed", func(m *opensbx.Manager, r *http.Request, id string) (*opensbx.Sandbox, error) {
		return m.Resume(r.Context(), id)
	})
}

type renewRequest struct {
	Timeout float64 `json:"timeout"`
}

type renewResponse struct {
	Status    string  `json:"status"`
	Timeout   float64 `json:"timeout"`
	ExpiresAt string  `json:"expires_at,omitempty"`
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
		if !(req.Timeout > 0) {
			s.fail(w, r, badRequest(`"timeout" must be a positive number of seconds`))
			return
		}
		ttl, err := seconds("timeout", req.Timeout)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		sb, err := s.m.Renew(r.Context(), r.PathValue("id"), ttl)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		encode(w, http.StatusOK, renewResponse{Status: "renewed", Timeout: req.Timeout, ExpiresAt: rfc3339(sb.ExpiresAt)})
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
}

func (s *server) handleSandboxNetwork() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := s.m.Network(r.Context(), r.PathValue("id"))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out := networkResponse{HostIP: n.HostIP, MainPort: n.MainPort, PortsMap: n.Ports}
		if out.PortsMap == nil {
			out.PortsMap = map[string]string{}
		}
		encode(w, http.StatusOK, out)
	})
}
