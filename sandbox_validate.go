package opensbx

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/opensbx/opensbx/internal/hostfw"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// Bounds on what one Create may ask for.
const (
	maxPorts      = 64
	maxEnvEntries = 1024
	maxArgs       = 1024
	maxLabels     = 64
	maxArgBytes   = 64 << 10 // one env entry, argument or label
	maxTotalBytes = 1 << 20  // all of them together
)

// userRE matches a user for a container or exec: a name or uid, with an
// optional group or gid.
var userRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,31}(:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,31})?$`)

// hasRuntime reports whether the engine knows the OCI runtime name.
func (m *Manager) hasRuntime(name string) bool {
	for _, r := range m.info.Runtimes {
		if r == name {
			return true
		}
	}
	return false
}

// formatCPUs prints a CPU count with at least one decimal ("4.0", "1.5").
func formatCPUs(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// normalizePort turns "8080" or "53/UDP" into "8080/tcp" or "53/udp".
func normalizePort(p string) (string, error) {
	num, proto, found := strings.Cut(strings.TrimSpace(p), "/")
	if !found {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != num {
		return "", sbxerr.Invalid("port %q: want a number 1-65535 with optional /tcp, /udp or /sctp", p)
	}
	switch proto {
	case "tcp", "udp", "sctp":
	default:
		return "", sbxerr.Invalid("port %q: protocol must be tcp, udp or sctp", p)
	}
	return num + "/" + proto, nil
}

// checkStrings bounds a list of strings from a caller and refuses NUL
// bytes, which no argv, environment or label can carry.
func checkStrings(what string, list []string, maxCount int, total *int) error {
	if len(list) > maxCount {
		return sbxerr.Invalid("%s: %d entries, at most %d", what, len(list), maxCount)
	}
	for _, s := range list {
		if len(s) > maxArgBytes {
			return sbxerr.Invalid("%s: an entry of %d bytes, at most %d", what, len(s), maxArgBytes)
		}
		if strings.IndexByte(s, 0) >= 0 {
			return sbxerr.Invalid("%s: an entry contains a NUL byte", what)
		}
		*total += len(s)
	}
	if *total > maxTotalBytes {
		return sbxerr.Invalid("create options are %d bytes, at most %d", *total, maxTotalBytes)
	}
	return nil
}

// normalize validates o and fills in defaults. It returns ErrInvalid errors.
func (m *Manager) normalize(o CreateOptions) (CreateOptions, error) {
	o.Image = strings.TrimSpace(o.Image)
	if o.Image == "" {
		return o, sbxerr.Invalid("image is required")
	}
	if o.Name != "" && !validName(o.Name) {
		return o, sbxerr.Invalid("name %q: want 1-63 of [a-zA-Z0-9_.-], starting with a letter or digit", o.Name)
	}
	if o.TTL < 0 {
		return o, sbxerr.Invalid("TTL must not be negative, got %v", o.TTL)
	}
	if o.TTL == 0 {
		o.TTL = m.cfg.ttl
	}
	r := o.Resources
	if r.MemoryMB < 0 || r.CPUs < 0 || math.IsNaN(r.CPUs) || math.IsInf(r.CPUs, 0) {
		return o, sbxerr.Invalid("resources must not be negative")
	}
	if r.MemoryMB > m.cfg.max.MemoryMB {
		return o, sbxerr.Invalid("memory %d MB is over the maximum %d MB", r.MemoryMB, m.cfg.max.MemoryMB)
	}
	if r.CPUs > m.cfg.max.CPUs {
		return o, sbxerr.Invalid("cpus %s are over the maximum %s", formatCPUs(r.CPUs), formatCPUs(m.cfg.max.CPUs))
	}
	if r.MemoryMB == 0 {
		r.MemoryMB = m.cfg.defaults.MemoryMB
	}
	if r.MemoryMB < 6 {
		return o, sbxerr.Invalid("memory %d MB is under the engine's minimum of 6 MB", r.MemoryMB)
	}
	if r.CPUs == 0 {
		r.CPUs = m.cfg.defaults.CPUs
	}
	o.Resources = r
	if len(o.Ports) > maxPorts {
		return o, sbxerr.Invalid("%d ports, at most %d", len(o.Ports), maxPorts)
	}
	seen := map[string]bool{}
	ports := make([]string, 0, len(o.Ports))
	for _, p := range o.Ports {
		np, err := normalizePort(p)
		if err != nil {
			return o, err
		}
		if seen[np] {
			return o, sbxerr.Invalid("port %q is listed twice", p)
		}
		seen[np] = true
		ports = append(ports, np)
	}
	o.Ports = ports
	total := len(o.Image) + len(o.WorkingDir)
	if err := checkStrings("env", o.Env, maxEnvEntries, &total); err != nil {
		return o, err
	}
	for _, e := range o.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return o, sbxerr.Invalid("env entry must be KEY=value") // the value may be a secret: not echoed
		}
	}
	if err := checkStrings("command", o.Command, maxArgs, &total); err != nil {
		return o, err
	}
	if err := checkStrings("entrypoint", o.Entrypoint, maxArgs, &total); err != nil {
		return o, err
	}
	if len(o.Labels) > maxLabels {
		return o, sbxerr.Invalid("%d labels, at most %d", len(o.Labels), maxLabels)
	}
	for k, v := range o.Labels {
		if k == "" || strings.HasPrefix(k, labelPrefix) {
			return o, sbxerr.Invalid("label %q: empty or reserved (%s*)", k, labelPrefix)
		}
		if err := checkStrings("labels", []string{k, v}, 2, &total); err != nil {
			return o, err
		}
	}
	if strings.IndexByte(o.WorkingDir, 0) >= 0 {
		return o, sbxerr.Invalid("working directory contains a NUL byte")
	}
	if o.KeepImageCommand && (len(o.Command) > 0 || len(o.Entrypoint) > 0) {
		return o, sbxerr.Invalid("KeepImageCommand excludes Command and Entrypoint")
	}
	if o.User != "" && !userRE.MatchString(o.User) {
		return o, sbxerr.Invalid("user %q: want a name or uid, optionally :group or :gid", o.User)
	}
	switch o.Network {
	case "":
	case "none":
		if len(o.Ports) > 0 {
			return o, sbxerr.Invalid("a sandbox without a network cannot publish ports")
		}
	default:
		return o, sbxerr.Invalid("network %q: want \"\" (the default) or \"none\"", o.Network)
	}
	if len(o.Egress) > 0 {
		if o.Network != "" {
			return o, sbxerr.Invalid("an egress allow-list needs a network")
		}
		cidrs, err := hostfw.ParseCIDRs(o.Egress)
		if err != nil {
			return o, sbxerr.Invalid("egress: %v", err)
		}
		o.Egress = cidrs
	}
	if o.Runtime == "" {
		o.Runtime = m.cfg.runtime
	}
	if o.Runtime != "" && !m.hasRuntime(o.Runtime) {
		return o, sbxerr.New(ErrUnsupported, "runtime %q is not registered with the engine (it has %s)", o.Runtime, strings.Join(m.info.Runtimes, ", "))
	}
	return o, nil
}

// specHash identifies the settings of a Create, for idempotent names.
func specHash(o CreateOptions) string {
	o.Name, o.PullMissing = "", false
	b, _ := json.Marshal(o)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}
