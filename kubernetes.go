package opensbx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/opensbx/opensbx/internal/agent/bin"
	"github.com/opensbx/opensbx/internal/agent/image"
	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/engine/kube"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// KubernetesConfig configures a Manager whose sandboxes are Pods on a
// Kubernetes cluster instead of containers on a Docker engine
// (WithKubernetes).
//
// A sandbox is one Pod in Namespace, labelled and annotated like the Docker
// backend's containers, running the agent as its keep-alive; the agent is
// mounted from the nodes (AgentHostDir, or the agent DaemonSet the Manager
// finds) or installed from AgentImage by an init container, and its channel
// rides the pod exec stream. Commands, output, stdin, kill, files, TTLs,
// renewals, stop, start and restart (the agent halts and resumes the
// sandbox's processes: a Pod runs once) work as on Docker; an expired
// sandbox is stopped, or deleted with WithDeleteOnExpiry. CPU and memory are
// the Pod's limits, WithNofile the agent's, and the process bound is the
// node's (the kubelet's podPidsLimit). What a cluster cannot do fails with
// ErrUnsupported: pausing and resuming a sandbox, the image API (the nodes
// pull for themselves), engine networks and volumes (isolation on a
// cluster is its NetworkPolicy's), KeepImageCommand and user names (the cluster does not tell image configurations: give a numeric
// uid), WithPidsLimit, WithAgent(false), and the files of a sandbox that is
// not running.
type KubernetesConfig struct {
	// Kubeconfig is the path of a kubeconfig file. Empty: $KUBECONFIG, and
	// without it the in-cluster configuration of a Manager running in a Pod.
	Kubeconfig string
	// Context is the kubeconfig context to use; empty: its current one.
	Context string
	// Namespace is the Kubernetes namespace of the sandboxes' Pods
	// ("default" when empty). It must exist.
	Namespace string
	// AgentImage is the image the agent is installed from. Empty: the
	// reference AgentImageRef gives for the nodes' architecture, which the
	// nodes must have or be able to pull (WriteAgentImage writes it).
	AgentImage string
	// PullPolicy is the sandbox images' pull policy: "IfNotPresent" (when
	// empty), "Always" or "Never".
	PullPolicy string
	// AgentHostDir, when set, is a directory on every node that holds the
	// agent (InstallAgent writes it there, for example from a DaemonSet):
	// sandboxes then mount it read-only from the node instead of
	// installing it from AgentImage with an init container, which saves
	// the kubelet a container's start and exit (about a second per create
	// on the test cluster). A sandbox on a node without it waits for it
	// (the kubelet retries the mount) until Start gives up.
	//
	// Empty, a sandbox still mounts the agent from the nodes when the
	// Pods' namespace holds the DaemonSet AgentDaemonSet makes, for this
	// agent version and ready on every node it runs on (looked up at most
	// every 30 seconds); otherwise an init container installs it.
	AgentHostDir string
	// AgentInitContainer, without AgentHostDir, always installs the agent
	// with an init container and never looks for the agent DaemonSet: for
	// a namespace whose admission rules refuse hostPath volumes.
	AgentInitContainer bool
	// Ports says how the sandboxes' ports are reached (Network.Via, the
	// preview proxy): "pod-ip" dials the Pod's address, for a Manager in
	// the cluster or on a node; "agent" goes through the agent's session
	// (DialPort), which works from anywhere. Empty: "pod-ip" with the
	// in-cluster configuration, else "agent".
	Ports string
}

// WithKubernetes runs the Manager's sandboxes on a Kubernetes cluster (see
// KubernetesConfig) instead of a Docker engine.
func WithKubernetes(c KubernetesConfig) Option {
	return func(cfg *config) error {
		switch c.PullPolicy {
		case "", "IfNotPresent", "Always", "Never":
		default:
			return sbxerr.Invalid("kubernetes pull policy %q (want IfNotPresent, Always or Never)", c.PullPolicy)
		}
		switch c.Ports {
		case "", NetworkViaPodIP, NetworkViaAgent:
		default:
			return sbxerr.Invalid("kubernetes ports %q (want pod-ip or agent)", c.Ports)
		}
		if c.AgentHostDir != "" && !filepath.IsAbs(c.AgentHostDir) {
			return sbxerr.Invalid("kubernetes agent host directory %q is not absolute", c.AgentHostDir)
		}
		if c.Namespace != "" && !validKubeNamespace(c.Namespace) {
			return sbxerr.Invalid("kubernetes namespace %q (want a DNS label)", c.Namespace)
		}
		cfg.kube = &c
		return nil
	}
}

// validKubeNamespace reports whether s is a valid Kubernetes namespace name.
func validKubeNamespace(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(s)-1
		if !ok {
			return false
		}
	}
	return true
}

// kubeEngine makes the Kubernetes engine of c.
func kubeEngine(c *KubernetesConfig) (engine.Engine, error) {
	rc, err := kubeRestConfig(c)
	if err != nil {
		return nil, err
	}
	return kube.New(kube.Config{
		Rest:          rc,
		Namespace:     c.Namespace,
		AgentImage:    c.AgentImage,
		AgentHostDir:  c.AgentHostDir,
		DiscoverAgent: !c.AgentInitContainer,
		PullPolicy:    corev1.PullPolicy(c.PullPolicy),
	})
}

// kubeRestConfig loads the client configuration c names.
func kubeRestConfig(c *KubernetesConfig) (*rest.Config, error) {
	path := c.Kubeconfig
	if path == "" {
		path = os.Getenv("KUBECONFIG")
	}
	if path == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, sbxerr.Invalid("kubernetes: no kubeconfig given, $KUBECONFIG is empty and not in a cluster: %v", err)
		}
		return rc, nil
	}
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: path}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: c.Context}).ClientConfig()
	if err != nil {
		return nil, sbxerr.Invalid("kubernetes: kubeconfig %s: %v", path, err)
	}
	return rc, nil
}

// AgentImageRef is the reference of the agent image for a CPU architecture
// ("amd64", "arm64"): what a Kubernetes backend installs the agent from
// unless KubernetesConfig.AgentImage names another.
func AgentImageRef(arch string) (string, error) {
	ref, err := image.Ref(arch)
	if err != nil {
		return "", sbxerr.New(ErrUnsupported, "agent image: %v", err)
	}
	return ref, nil
}

// WriteAgentImage writes the agent image for arch, tagged ref
// (AgentImageRef when empty), to w as a `docker save` archive: load it into
// the nodes (`ctr -n k8s.io images import`) or into Docker to push it to
// the cluster's registry. It builds nothing: the agent is embedded.
func WriteAgentImage(w io.Writer, arch, ref string) error {
	if err := image.WriteArchive(w, arch, ref); err != nil {
		return fmt.Errorf("agent image: %w", err)
	}
	return nil
}

// InstallAgent writes the agent for arch ("amd64", "arm64") into dir, in
// the subdirectory KubernetesConfig.AgentHostDir expects, and returns the
// program's path. Run it on every node (for example from a DaemonSet with
// the node's directory mounted); it replaces nothing that is there.
func InstallAgent(dir, arch string) (string, error) {
	version, err := bin.Version(arch)
	if err != nil {
		return "", sbxerr.New(ErrUnsupported, "agent: %v", err)
	}
	program, err := bin.Binary(arch)
	if err != nil {
		return "", sbxerr.New(ErrUnsupported, "agent: %v", err)
	}
	sub := filepath.Join(dir, agentVolumeName(arch, version))
	target := filepath.Join(sub, "opensbx-agent")
	if st, err := os.Stat(target); err == nil && st.Size() == int64(len(program)) {
		return target, nil
	}
	if err := os.MkdirAll(sub, 0o755); err != nil {
		return "", fmt.Errorf("install agent: %w", err)
	}
	tmp, err := os.CreateTemp(sub, ".opensbx-agent-*")
	if err != nil {
		return "", fmt.Errorf("install agent: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(program); err != nil {
		tmp.Close()
		return "", fmt.Errorf("install agent: %w", err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", fmt.Errorf("install agent: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("install agent: %w", err)
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return "", fmt.Errorf("install agent: %w", err)
	}
	return target, nil
}

// portsVia is how the Manager's sandboxes' ports are reached.
func (m *Manager) portsVia() string {
	if !m.onKubernetes() {
		return NetworkViaHostPorts
	}
	if m.cfg.kube == nil || m.cfg.kube.Ports == "" {
		return NetworkViaPodIP
	}
	return m.cfg.kube.Ports
}

// onKubernetes reports whether the Manager's sandboxes are Pods.
func (m *Manager) onKubernetes() bool { return m.info.Backend == engine.BackendKubernetes }

// kubeSetup checks and adjusts a Manager on Kubernetes (New): the agent is
// required, and a Pod's process limit is its node's.
func (m *Manager) kubeSetup() error {
	if !m.cfg.agent {
		return sbxerr.New(ErrUnsupported, "WithAgent(false) on Kubernetes: sandboxes there are served by their agent")
	}
	if m.cfg.pidsLimitSet {
		return sbxerr.New(ErrUnsupported, "WithPidsLimit on Kubernetes: a Pod's process limit is its node's (the kubelet's podPidsLimit)")
	}
	if k := m.cfg.kube; k != nil && k.Ports == "" {
		k.Ports = NetworkViaAgent
		if k.Kubeconfig == "" && os.Getenv("KUBECONFIG") == "" {
			k.Ports = NetworkViaPodIP // in the cluster
		}
	}
	routeKlog(m.log)
	return nil
}

// klogRouted makes routeKlog act once per process.
var klogRouted sync.Once

// routeKlog sends what client-go logs through klog, a process-wide logger
// that writes to standard error, to log at debug level. client-go reports
// there, as errors, the normal end of every exec stream ("use of closed
// network connection"); a Manager runs one such stream per sandbox. klog
// has one logger per process, so the first Manager on Kubernetes sets it;
// a program that set klog up itself should do so after New.
func routeKlog(log *slog.Logger) {
	klogRouted.Do(func() { klog.SetSlogLogger(slog.New(debugHandler{log.Handler()})) })
}

// debugHandler logs every record at debug level.
type debugHandler struct{ h slog.Handler }

func (d debugHandler) Enabled(ctx context.Context, _ slog.Level) bool {
	return d.h.Enabled(ctx, slog.LevelDebug)
}

func (d debugHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Level = slog.LevelDebug
	return d.h.Handle(ctx, r)
}

func (d debugHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return debugHandler{d.h.WithAttrs(as)}
}

func (d debugHandler) WithGroup(name string) slog.Handler { return debugHandler{d.h.WithGroup(name)} }

// kubeIsolation makes the Kubernetes namespace's isolation NetworkPolicy
// (setupNetwork): sandbox pods accept connections only from pods that are
// not sandboxes and reach neither each other, the nodes nor metadata
// addresses. A Manager the cluster does not let make it (RBAC) runs
// without, as a Docker Manager without root runs without its host rules,
// and says so in Isolation and its log. The cluster's network plugin
// enforces the policy; one without NetworkPolicy support ignores it.
func (m *Manager) kubeIsolation(ctx context.Context) error {
	n, err := m.engine.NetworkEnsure(ctx, engine.NetworkSpec{Name: isolatedNetwork, Labels: map[string]string{labelManaged: "true"}})
	switch {
	case errors.Is(err, ErrUnauthorized):
		m.net.status.Reason = "the cluster does not let this Manager make the namespace's NetworkPolicy: " + err.Error()
		m.log.Warn("sandboxes can reach each other and the cluster's metadata addresses: no isolation NetworkPolicy", "reason", err)
		return nil
	case err != nil:
		return fmt.Errorf("isolation network policy: %w", err)
	}
	m.net.status.Network, m.net.status.HostRules = n.Name, true
	return nil
}

// kubeCheck refuses the create options a Kubernetes sandbox cannot have.
func kubeCheck(o CreateOptions) error {
	switch {
	case o.KeepImageCommand:
		return sbxerr.New(ErrUnsupported, "KeepImageCommand on Kubernetes: the cluster does not tell an image's command; give Command")
	}
	return nil
}

// kubeUnsupported is the error of what a Kubernetes sandbox cannot do.
func kubeUnsupported(what string) error {
	return sbxerr.New(ErrUnsupported, "%s is not supported on Kubernetes (a Pod runs once and cannot be frozen)", what)
}
