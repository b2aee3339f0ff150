// Package kube is the Kubernetes engine: the engine.Engine of a Manager
// whose sandboxes are Pods on a cluster instead of containers on one Docker
// engine. A sandbox is one Pod with one container, labelled and annotated
// like the Docker engine's containers, running the same agent as its
// keep-alive (installed from the agent image by an init container); the
// agent's channel rides the pod exec stream (WebSocket, SPDY as fallback).
// A Pod runs once, so Stop and Start have the agent end the sandbox's
// processes and run its main command again while the Pod runs on.
// Isolation is NetworkPolicy (netpol.go).
//
// What a cluster cannot do the engine refuses with ErrUnsupported, never
// pretending: pausing (no freezer API), starting a Pod that ended,
// engine archives and paths (files go through the agent), images (the
// kubelet pulls for itself), engine networks and volumes, and stats (the
// agent reads its cgroup). The Manager checks Info.Backend and keeps such
// calls from reaching it where it can say more.
package kube

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/opensbx/opensbx/internal/agent/image"
	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/poll"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// Config configures the Kubernetes engine.
type Config struct {
	// Rest is the cluster's client configuration.
	Rest *rest.Config
	// Namespace is the Kubernetes namespace the sandboxes' pods live in.
	Namespace string
	// AgentImage is the image holding the agent (internal/agent/image);
	// empty, Info sets the one of the nodes' architecture.
	AgentImage string
	// AgentHostDir, when set, is a directory on every node holding the
	// agent programs, one subdirectory per agent volume name: a sandbox
	// mounts its agent from there (hostPath) instead of installing it from
	// AgentImage with an init container, which spares the kubelet a
	// container's start and exit.
	AgentHostDir string
	// DiscoverAgent, without AgentHostDir, looks for a ready agent
	// DaemonSet (opensbx.AgentDaemonSet) in Namespace keeping this agent on
	// the nodes and, when there is one, mounts the agent from its node
	// directory as AgentHostDir would (agentdir.go).
	DiscoverAgent bool
	// PullPolicy is the sandboxes' image pull policy ("" is IfNotPresent).
	PullPolicy corev1.PullPolicy
	// StartTimeout bounds how long Start waits for a pod to run (default 2
	// minutes: a cold image pull may be in it).
	StartTimeout time.Duration
	// CPURequestMilli and MemoryRequestBytes cap what a sandbox requests
	// of the scheduler (defaults 10 millicores, 16 MiB); its limits are
	// what it asked for.
	CPURequestMilli    int64
	MemoryRequestBytes int64
}

// Kube is the Kubernetes engine.
type Kube struct {
	cfg  Config
	cs   kubernetes.Interface
	rest *rest.Config

	probes chan struct{} // a slot per pod Start probes (probeSlots)

	denyMu sync.Mutex
	deny   []string // clusterNets, once read

	dirMu sync.Mutex
	dirs  map[string]agentDirEntry // agentHostDir's lookups, by agent volume

	mu    sync.Mutex
	seen  map[string]time.Time // pods a probe saw run before the API said so, by id
	execs map[string]*kubeExec // by exec id, running and lately finished
	done  []string             // finished exec ids, oldest first
}

var _ engine.Engine = (*Kube)(nil)

// New makes the engine for cfg.
func New(cfg Config) (*Kube, error) {
	if cfg.Rest == nil {
		return nil, sbxerr.Invalid("kubernetes: no client configuration")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
	}
	if cfg.PullPolicy == "" {
		cfg.PullPolicy = corev1.PullIfNotPresent
	}
	switch cfg.PullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return nil, sbxerr.Invalid("kubernetes: pull policy %q (want Always, IfNotPresent or Never)", cfg.PullPolicy)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	if cfg.CPURequestMilli <= 0 {
		cfg.CPURequestMilli = 10
	}
	if cfg.MemoryRequestBytes <= 0 {
		cfg.MemoryRequestBytes = 16 << 20
	}
	rc := rest.CopyConfig(cfg.Rest)
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 200, 400 // sandboxes by the hundred
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, sbxerr.Invalid("kubernetes: %v", err)
	}
	return &Kube{cfg: cfg, cs: cs, rest: rc, execs: map[string]*kubeExec{}, seen: map[string]time.Time{}, probes: make(chan struct{}, probeSlots)}, nil
}

// classify marks an API error with the matching Opensbx sentinel.
func classify(err error) error {
	var se apierrors.APIStatus
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case apierrors.IsNotFound(err):
		return sbxerr.Wrap(sbxerr.ErrNotFound, err)
	case apierrors.IsAlreadyExists(err), apierrors.IsConflict(err):
		return sbxerr.Wrap(sbxerr.ErrConflict, err)
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return sbxerr.Wrap(sbxerr.ErrInvalid, err)
	case apierrors.IsUnauthorized(err), apierrors.IsForbidden(err):
		return sbxerr.Wrap(sbxerr.ErrUnauthorized, err)
	case apierrors.IsServiceUnavailable(err), apierrors.IsTimeout(err), apierrors.IsServerTimeout(err), apierrors.IsTooManyRequests(err):
		return sbxerr.Wrap(sbxerr.ErrUnavailable, err)
	case errors.As(err, &se):
		return err
	}
	// Not an API answer: the cluster could not be reached.
	return sbxerr.Wrap(sbxerr.ErrUnavailable, err)
}

// unsupported is the error of what a cluster cannot do.
func unsupported(what string) error {
	return sbxerr.New(sbxerr.ErrUnsupported, "%s is not supported on Kubernetes", what)
}

// checkID refuses anything but a full id before a request is made.
func checkID(id string) error {
	if !engine.IsFullID(id) {
		return sbxerr.NotFound("container %q: not a full id", id)
	}
	return nil
}

// Ping checks that the API server answers and is ready.
func (k *Kube) Ping(ctx context.Context) error {
	err := k.cs.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
	if err != nil {
		return sbxerr.Wrap(sbxerr.ErrUnavailable, err)
	}
	return nil
}

// Info describes the cluster: its version and its nodes' architecture.
func (k *Kube) Info(ctx context.Context) (engine.Info, error) {
	// Discovery's ServerVersion takes no context: the same request, bounded
	// by ctx.
	raw, err := k.cs.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return engine.Info{}, classify(err)
	}
	var v version.Info
	if err := json.Unmarshal(raw, &v); err != nil {
		return engine.Info{}, sbxerr.Wrap(sbxerr.ErrUnavailable, fmt.Errorf("the API server's version: %w", err))
	}
	out := engine.Info{Backend: engine.BackendKubernetes, OS: "linux", Version: v.GitVersion, Arch: "amd64"}
	nodes, err := k.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
	if err == nil && len(nodes.Items) > 0 {
		out.Arch = nodes.Items[0].Status.NodeInfo.Architecture
		out.OS = nodes.Items[0].Status.NodeInfo.OperatingSystem
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cfg.AgentImage == "" {
		ref, err := image.Ref(out.Arch)
		if err != nil {
			return engine.Info{}, sbxerr.New(sbxerr.ErrUnsupported, "no agent for the nodes' architecture %q: %v", out.Arch, err)
		}
		k.cfg.AgentImage = ref
	}
	return out, nil
}

// Close ends every exec stream still open and waits for their goroutines.
func (k *Kube) Close() error {
	k.mu.Lock()
	execs := make([]*kubeExec, 0, len(k.execs))
	for _, x := range k.execs {
		execs = append(execs, x)
	}
	k.mu.Unlock()
	for _, x := range execs {
		x.Close()
	}
	for _, x := range execs {
		<-x.done // Close cuts a stream within closeGrace
	}
	return nil
}

// newID returns a fresh container id: 64 hex digits, like Docker's.
func newID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Create makes the pod of a new container. A pod runs as soon as it is
// made; Start waits for it. The name is refused (ErrConflict) when a pod of
// ours already has it.
func (k *Kube) Create(ctx context.Context, spec engine.ContainerSpec) (string, error) {
	if spec.Name != "" {
		list, err := k.cs.CoreV1().Pods(k.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labelSandbox + "=true," + labelNameKey + "=" + nameKey(spec.Name)})
		if err != nil {
			return "", classify(err)
		}
		for i := range list.Items {
			if c, ok := containerOf(&list.Items[i]); ok && c.Name == spec.Name {
				return "", sbxerr.Conflict("container name %q is taken", spec.Name)
			}
		}
	}
	id := newID()
	k.mu.Lock()
	agentImage := k.cfg.AgentImage
	k.mu.Unlock()
	pod, err := k.podFor(id, spec, agentImage, k.agentHostDir(ctx, agentVolumeName(spec)))
	if err != nil {
		return "", err
	}
	var np *networkingv1.NetworkPolicy
	if spec.NetworkMode != "" || len(spec.EgressAllow) > 0 {
		if np, err = k.podPolicy(id, spec, k.clusterNets(ctx)); err != nil {
			return "", err
		}
	}
	if np != nil {
		pod.Labels[labelOwnPolicy] = "true"
		if err := k.createPolicy(ctx, np); err != nil {
			return "", fmt.Errorf("network policy: %w", err)
		}
	}
	made, err := k.cs.CoreV1().Pods(k.cfg.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		if np != nil {
			k.dropPolicy(context.WithoutCancel(ctx), np.Name)
		}
		return "", classify(err)
	}
	if np != nil {
		if err := k.ownPolicy(ctx, made); err != nil {
			cctx := context.WithoutCancel(ctx)
			k.cs.CoreV1().Pods(k.cfg.Namespace).Delete(cctx, made.Name, metav1.DeleteOptions{})
			k.dropPolicy(cctx, np.Name)
			return "", fmt.Errorf("network policy: %w", err)
		}
	}
	return id, nil
}

// get reads the pod of container id.
func (k *Kube) get(ctx context.Context, id string) (*corev1.Pod, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	p, err := k.cs.CoreV1().Pods(k.cfg.Namespace).Get(ctx, podName(id), metav1.GetOptions{})
	if err != nil {
		return nil, classify(err)
	}
	if p.Annotations[annID] != id || p.Labels[labelSandbox] != "true" {
		return nil, sbxerr.NotFound("container %s", id)
	}
	return p, nil
}

// Start waits until the pod of container id runs its container, watching
// it (a poll would add its interval to every create). A pod that ran and
// ended cannot run again (ErrUnsupported); an image that cannot be had is
// ErrImageNotFound.
func (k *Kube) Start(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, k.cfg.StartTimeout)
	defer cancel()
	p, err := k.get(ctx, id)
	if err == nil && p.Annotations[annHalted] != "" {
		if st, _ := stateOf(p); st.Halted {
			return k.unhalt(ctx, p, id)
		}
	}
	var probed <-chan struct{}
	if err == nil && p.Annotations[annAgent] != "" {
		if done, _ := startedOrFailed(p); !done {
			probed = k.probeUntilRunning(ctx, id, p.Annotations[annAgent])
		}
	}
	for err == nil {
		var done bool
		if done, err = startedOrFailed(p); done || err != nil {
			break
		}
		var w watch.Interface
		w, err = k.cs.CoreV1().Pods(k.cfg.Namespace).Watch(ctx, metav1.ListOptions{
			FieldSelector: "metadata.name=" + podName(id), ResourceVersion: p.ResourceVersion})
		if err != nil {
			err = classify(err)
			break
		}
		p, err = k.watchStart(ctx, w, p, probed)
		w.Stop()
		if errors.Is(err, errWatchEnded) {
			p, err = k.get(ctx, id) // the watch ended early: look again
		}
	}
	if errors.Is(err, context.DeadlineExceeded) && p != nil {
		return fmt.Errorf("pod %s did not run within %s (phase %s): %w", p.Name, k.cfg.StartTimeout, p.Status.Phase, err)
	}
	if errors.Is(err, errStarted) {
		return nil
	}
	return err
}

// probeEvery is how often Start tries an exec in a pod that does not run
// yet; probeSlots bounds the pods probed at once (a pool refilling by the
// dozen must not flood the API server with execs).
const (
	probeEvery = 100 * time.Millisecond
	probeSlots = 4
)

// probeUntilRunning tries, every probeEvery until ctx ends, to exec the
// agent's `version` in the pod's container; the channel closes once one
// succeeds. The kubelet reports a container that runs only on its next
// relist of the runtime (up to a second later), while an exec reaches the
// runtime at once: so a Start sees the container run as soon as it does.
func (k *Kube) probeUntilRunning(ctx context.Context, id, agent string) <-chan struct{} {
	probed := make(chan struct{})
	go func() {
		t := time.NewTicker(probeEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			select {
			case k.probes <- struct{}{}:
			default:
				continue // enough pods are probed: this one waits for its watch
			}
			ok := k.probe(ctx, id, agent)
			<-k.probes
			if ok {
				k.markRunning(id)
				close(probed)
				return
			}
		}
	}()
	return probed
}

// probe reports whether an exec of `agent version` in the pod's container
// succeeds: the container runs.
func (k *Kube) probe(ctx context.Context, id, agent string) bool {
	x, err := k.Exec(ctx, id, engine.ExecSpec{Cmd: []string{agent, "version"}})
	if err != nil {
		return false
	}
	stop := context.AfterFunc(ctx, func() { x.Close() })
	defer stop()
	defer x.Close()
	if err := x.Output(io.Discard, io.Discard); err != nil {
		return false
	}
	st, err := k.ExecInspect(ctx, x.ID())
	return err == nil && !st.Running && st.ExitCode == 0
}

// seenFor is how long a probe's word that a container runs stands in for
// the API's (which follows within a relist, about a second).
const seenFor = 30 * time.Second

// markRunning records that a probe saw id's container run.
func (k *Kube) markRunning(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now()
	for x, t := range k.seen {
		if now.Sub(t) > seenFor {
			delete(k.seen, x)
		}
	}
	k.seen[id] = now
}

// overlay reports c as running when a probe saw it run and the API, a
// relist behind, still says created; once the API says anything else, its
// word is taken.
func (k *Kube) overlay(c *engine.Container) {
	k.mu.Lock()
	defer k.mu.Unlock()
	t, ok := k.seen[c.ID]
	switch {
	case !ok:
	case c.State.Status == "created" && time.Since(t) <= seenFor:
		c.State.Status, c.State.Running = "running", true
		if c.State.StartedAt.IsZero() {
			c.State.StartedAt = t
		}
	default:
		delete(k.seen, c.ID)
	}
}

// errStarted ends a watch whose pod runs; errWatchEnded one that closed.
var (
	errStarted    = errors.New("started")
	errWatchEnded = errors.New("watch ended")
)

// watchStart follows w until the pod runs (errStarted; also when probed
// closes), fails, is deleted or the watch ends (errWatchEnded); it returns
// the last pod seen.
func (k *Kube) watchStart(ctx context.Context, w watch.Interface, last *corev1.Pod, probed <-chan struct{}) (*corev1.Pod, error) {
	for {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-probed:
			return last, errStarted
		case ev, ok := <-w.ResultChan():
			if !ok {
				return last, errWatchEnded
			}
			switch ev.Type {
			case watch.Deleted:
				return last, sbxerr.NotFound("pod %s was deleted while it started", last.Name)
			case watch.Error:
				return last, errWatchEnded
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod {
				continue
			}
			last = p
			done, err := startedOrFailed(p)
			if err != nil {
				return last, err
			}
			if done {
				return last, errStarted
			}
		}
	}
}

// startedOrFailed reports whether pod p runs its container, or why it never
// will.
func startedOrFailed(p *corev1.Pod) (bool, error) {
	st, _ := stateOf(p)
	switch st.Status {
	case "running":
		return true, nil
	case "exited", "removing":
		if st.StartedAt.IsZero() {
			return false, fmt.Errorf("the pod ended before it ran: %s", p.Status.Message)
		}
		return false, unsupported("starting a sandbox that stopped")
	}
	return false, waitingProblem(p)
}

// Stop stops a running sandbox while its Pod runs on (a Pod cannot stop
// and start again): the agent ends every process of the sandbox but its
// own, its main command too (SIGTERM, then SIGKILL after timeout), and
// refuses commands; the annotation annHalted records it, so that Inspect
// and List report the container exited (ContainerState.Halted) and Start
// runs it again, from any Manager. The file system stays, as a stopped
// Docker container's does, and the agent still serves it. Stopping a
// halted sandbox ends what runs again, so a Stop that halted the sandbox but
// failed to write the annotation (the API server away) is completed by the
// caller's next Stop.
func (k *Kube) Stop(ctx context.Context, id string, timeout time.Duration) error {
	p, agent, err := k.agentPod(ctx, id)
	if err != nil {
		return err
	}
	if err := k.runAgent(ctx, id, agent, "halt", "-grace", max(timeout, 0).String()); err != nil {
		return fmt.Errorf("stop pod %s: %w", p.Name, err)
	}
	if p.Annotations[annHalted] != "" {
		return nil
	}
	return k.annotate(ctx, p.Name, annHalted, time.Now().UTC().Format(time.RFC3339Nano))
}

// Restart stops (like Stop) and starts (like Start) a sandbox.
func (k *Kube) Restart(ctx context.Context, id string, timeout time.Duration) error {
	if err := k.Stop(ctx, id, timeout); err != nil {
		return err
	}
	return k.Start(ctx, id)
}

// unhalt runs a halted sandbox again (Start): the agent starts the main
// command anew, then the annotation goes.
func (k *Kube) unhalt(ctx context.Context, p *corev1.Pod, id string) error {
	agent := p.Annotations[annAgent]
	if agent == "" {
		return unsupported("starting a sandbox without an agent")
	}
	if err := k.runAgent(ctx, id, agent, "unhalt"); err != nil {
		return fmt.Errorf("start pod %s: %w", p.Name, err)
	}
	return k.annotate(ctx, p.Name, annHalted, "")
}

// agentPod reads the pod of a sandbox whose agent runs, and the agent's
// path in it.
func (k *Kube) agentPod(ctx context.Context, id string) (*corev1.Pod, string, error) {
	p, err := k.get(ctx, id)
	if err != nil {
		return nil, "", err
	}
	agent := p.Annotations[annAgent]
	if agent == "" {
		return nil, "", unsupported("stopping a sandbox without an agent")
	}
	st, _ := stateOf(p)
	c := engine.Container{ID: id, State: st}
	k.overlay(&c)
	if !c.State.Running && !c.State.Halted {
		return nil, "", sbxerr.Conflict("pod %s is %s: its agent does not run", p.Name, c.State.Status)
	}
	return p, agent, nil
}

// runAgent runs the agent's program in the pod with args and fails, with
// what it wrote to stderr, unless it exits 0.
func (k *Kube) runAgent(ctx context.Context, id, agent string, args ...string) error {
	x, err := k.Exec(ctx, id, engine.ExecSpec{Cmd: append([]string{agent}, args...)})
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { x.Close() })
	defer stop()
	defer x.Close()
	var stderr limitedBuffer
	if err := x.Output(io.Discard, &stderr); err != nil {
		return classify(err)
	}
	st, err := k.ExecInspect(ctx, x.ID())
	switch {
	case err != nil:
		return err
	case st.ExitCode == 3:
		return sbxerr.New(sbxerr.ErrUnsupported, "the agent: %s", stderr.String())
	case st.ExitCode != 0:
		return fmt.Errorf("the agent's %s exited with %d: %s", args[0], st.ExitCode, stderr.String())
	}
	return nil
}

// limitedBuffer keeps the first 4 KiB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4<<10 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(len(p), room)]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(bytes.TrimSpace(l.b)) }

// annotate sets annotation key of pod name to v, or removes it for "".
func (k *Kube) annotate(ctx context.Context, name, key, v string) error {
	var val any = v
	if v == "" {
		val = nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{key: val}}})
	if err != nil {
		return err
	}
	_, err = k.cs.CoreV1().Pods(k.cfg.Namespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	return classify(err)
}

// Pause is not supported: Kubernetes has no freezer API.
func (k *Kube) Pause(ctx context.Context, id string) error { return unsupported("pausing a sandbox") }

// Unpause is not supported.
func (k *Kube) Unpause(ctx context.Context, id string) error {
	return unsupported("resuming a sandbox")
}

// Rename changes the container's name (an annotation and its name key).
func (k *Kube) Rename(ctx context.Context, id, name string) error {
	if err := checkID(id); err != nil {
		return err
	}
	list, err := k.cs.CoreV1().Pods(k.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labelSandbox + "=true," + labelNameKey + "=" + nameKey(name)})
	if err != nil {
		return classify(err)
	}
	for i := range list.Items {
		if c, ok := containerOf(&list.Items[i]); ok && c.Name == name && c.ID != id {
			return sbxerr.Conflict("container name %q is taken", name)
		}
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{annName: name},
		"labels":      map[string]string{labelNameKey: nameKey(name)},
	}})
	if err != nil {
		return err
	}
	_, err = k.cs.CoreV1().Pods(k.cfg.Namespace).Patch(ctx, podName(id), types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	return classify(err)
}

// Update resizes the running container in place (the pod's resize
// subresource); a cluster that cannot answers ErrUnsupported.
func (k *Kube) Update(ctx context.Context, id string, r engine.Resources) error {
	if err := checkID(id); err != nil {
		return err
	}
	res := k.resources(r)
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"containers": []map[string]any{{
		"name": containerName, "resources": res,
	}}}})
	if err != nil {
		return err
	}
	_, err = k.cs.CoreV1().Pods(k.cfg.Namespace).Patch(ctx, podName(id), types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "resize")
	if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) || apierrors.IsInvalid(err) {
		if _, gerr := k.get(ctx, id); gerr != nil {
			return gerr
		}
		return sbxerr.New(sbxerr.ErrUnsupported, "resizing a sandbox in place: %v", err)
	}
	return classify(err)
}

// Remove deletes the pod at once and waits until it is gone.
func (k *Kube) Remove(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	k.mu.Lock()
	delete(k.seen, id)
	k.mu.Unlock()
	zero := int64(0)
	err := k.cs.CoreV1().Pods(k.cfg.Namespace).Delete(ctx, podName(id), metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil {
		return classify(err)
	}
	return poll.Until(ctx, poll.Backoff{Min: 10 * time.Millisecond, Max: 200 * time.Millisecond}, func() (bool, error) {
		_, err := k.cs.CoreV1().Pods(k.cfg.Namespace).Get(ctx, podName(id), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, classify(err)
	})
}

// Inspect describes a container.
func (k *Kube) Inspect(ctx context.Context, id string) (engine.Container, error) {
	p, err := k.get(ctx, id)
	if err != nil {
		return engine.Container{}, err
	}
	c, ok := containerOf(p)
	if !ok {
		return engine.Container{}, sbxerr.NotFound("container %s", id)
	}
	k.overlay(&c)
	if c.State.Status == "created" && p.Annotations[annAgent] != "" && p.Spec.NodeName != "" && initDone(p) {
		// The API may lag the runtime by a relist (or more, on a busy node)
		// for a pod another Start saw run: look for itself.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		running := k.probe(pctx, id, p.Annotations[annAgent])
		cancel()
		if running {
			k.markRunning(id)
			k.overlay(&c)
		}
	}
	return c, nil
}

// initDone reports whether every init container of p has finished well,
// so that its own container is the next to start (or runs).
func initDone(p *corev1.Pod) bool {
	if len(p.Status.InitContainerStatuses) < len(p.Spec.InitContainers) {
		return false
	}
	for _, s := range p.Status.InitContainerStatuses {
		if s.State.Terminated == nil || s.State.Terminated.ExitCode != 0 {
			return false
		}
	}
	return true
}

// List lists the containers carrying all labels.
func (k *Kube) List(ctx context.Context, labels map[string]string) ([]engine.Container, error) {
	var out []engine.Container
	opts := metav1.ListOptions{LabelSelector: selector(labels), Limit: 500}
	for {
		list, err := k.cs.CoreV1().Pods(k.cfg.Namespace).List(ctx, opts)
		if err != nil {
			return nil, classify(err)
		}
		for i := range list.Items {
			if c, ok := containerOf(&list.Items[i]); ok && matches(c.Labels, labels) {
				k.overlay(&c)
				out = append(out, c)
			}
		}
		if list.Continue == "" {
			return out, nil
		}
		opts.Continue = list.Continue
	}
}

// Stats is not supported: the agent reads the sandbox's cgroup.
func (k *Kube) Stats(ctx context.Context, id string, stream bool, fn func(engine.StatsSample) error) error {
	return unsupported("engine stats")
}

// Events watches the pods of containers carrying labels and reports what
// the Docker engine would: create, start, die, rename and destroy.
func (k *Kube) Events(ctx context.Context, labels map[string]string) (<-chan engine.Event, <-chan error) {
	evs := make(chan engine.Event, 64)
	errc := make(chan error, 1)
	go func() {
		defer close(evs)
		// Seed what is already there from one list and watch from its
		// resource version, so a (re)opened watch reports only what happens
		// from now on, as Docker's events do, and does not replay create.
		last := map[string]string{}  // pod name: status seen
		names := map[string]string{} // pod name: sandbox name seen
		list, err := k.cs.CoreV1().Pods(k.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: selector(labels)})
		if err != nil {
			errc <- classify(err)
			return
		}
		for i := range list.Items {
			if c, ok := containerOf(&list.Items[i]); ok && matches(c.Labels, labels) {
				last[list.Items[i].Name] = c.State.Status
				names[list.Items[i].Name] = c.Name
			}
		}
		w, err := k.cs.CoreV1().Pods(k.cfg.Namespace).Watch(ctx, metav1.ListOptions{LabelSelector: selector(labels), ResourceVersion: list.ResourceVersion})
		if err != nil {
			errc <- classify(err)
			return
		}
		defer w.Stop()
		send := func(c engine.Container, action string) bool {
			select {
			case evs <- engine.Event{ContainerID: c.ID, Action: action, Name: c.Name, Labels: c.Labels, Time: time.Now()}:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			select {
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					errc <- io.EOF
					return
				}
				p, isPod := ev.Object.(*corev1.Pod)
				if !isPod {
					if ev.Type == watch.Error {
						errc <- classify(apierrors.FromObject(ev.Object))
						return
					}
					continue
				}
				c, ok := containerOf(p)
				if !ok || !matches(c.Labels, labels) {
					continue
				}
				prev, seen := last[p.Name]
				var actions []string
				switch ev.Type {
				case watch.Added:
					if !seen {
						actions = append(actions, "create")
					}
				case watch.Deleted:
					if prev == "running" {
						actions = append(actions, "die")
					}
					actions = append(actions, "destroy")
					delete(last, p.Name)
					delete(names, p.Name)
				}
				if ev.Type != watch.Deleted {
					if name, ok := names[p.Name]; ok && name != c.Name {
						actions = append(actions, "rename") // a pool's sandbox adopted
					}
					names[p.Name] = c.Name
					cur := c.State.Status
					switch {
					case cur == "running" && prev != "running":
						actions = append(actions, "start")
					case prev == "running" && cur != "running":
						actions = append(actions, "die")
					}
					last[p.Name] = cur
				}
				for _, a := range actions {
					if !send(c, a) {
						errc <- ctx.Err()
						return
					}
				}
			}
		}
	}()
	return evs, errc
}

// StatPath is not supported: a sandbox's files go through its agent.
func (k *Kube) StatPath(ctx context.Context, id, path string) (engine.PathStat, error) {
	return engine.PathStat{}, unsupported("engine file access (files go through the agent, while the sandbox runs)")
}

// CopyFrom is not supported.
func (k *Kube) CopyFrom(ctx context.Context, id, path string) (io.ReadCloser, engine.PathStat, error) {
	return nil, engine.PathStat{}, unsupported("engine file access (files go through the agent, while the sandbox runs)")
}

// CopyTo is not supported.
func (k *Kube) CopyTo(ctx context.Context, id, dir string, r io.Reader) error {
	return unsupported("engine file access (files go through the agent, while the sandbox runs)")
}

// Images is not supported: the cluster's nodes pull for themselves.
func (k *Kube) Images(ctx context.Context) ([]engine.Image, error) {
	return nil, unsupported("the image API (the cluster's nodes pull images for themselves)")
}

// ImageInspect is not supported.
func (k *Kube) ImageInspect(ctx context.Context, ref string) (engine.Image, error) {
	return engine.Image{}, unsupported("the image API (the cluster's nodes pull images for themselves)")
}

// ImagePull is not supported.
func (k *Kube) ImagePull(ctx context.Context, ref string, auth *engine.RegistryAuth, fn func(engine.PullProgress)) error {
	return unsupported("the image API (the cluster's nodes pull images for themselves)")
}

// ImageRemove is not supported.
func (k *Kube) ImageRemove(ctx context.Context, ref string, force bool) error {
	return unsupported("the image API (the cluster's nodes pull images for themselves)")
}

// NetworkRemove is not supported.
func (k *Kube) NetworkRemove(ctx context.Context, name string) error {
	return unsupported("engine networks")
}

// Networks is not supported.
func (k *Kube) Networks(ctx context.Context, labels map[string]string) ([]engine.Network, error) {
	return nil, unsupported("engine networks")
}

// VolumeCreate is not supported.
func (k *Kube) VolumeCreate(ctx context.Context, name string, labels map[string]string) error {
	return unsupported("engine volumes")
}

// VolumeRemove is not supported.
func (k *Kube) VolumeRemove(ctx context.Context, name string) error {
	return unsupported("engine volumes")
}

// Volumes is not supported.
func (k *Kube) Volumes(ctx context.Context, labels map[string]string) ([]engine.Volume, error) {
	return nil, unsupported("engine volumes")
}

// keepEnded is how many finished execs ExecInspect still knows.
const keepEnded = 1024

// track remembers exec x until it has ended and keepEnded more have.
func (k *Kube) track(x *kubeExec) {
	k.mu.Lock()
	k.execs[x.id] = x
	k.mu.Unlock()
}

// ended moves exec x to the finished ones, forgetting the oldest.
func (k *Kube) ended(x *kubeExec) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.done = append(k.done, x.id)
	for len(k.done) > keepEnded {
		delete(k.execs, k.done[0])
		k.done = slices.Delete(k.done, 0, 1)
	}
}
