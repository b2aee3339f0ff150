package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/opensbx/opensbx/internal/engine"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// How a sandbox's container is written onto a Pod. The engine's labels (any
// keys and values a Docker label may have) are kept whole, as JSON, in one
// annotation; those that are valid Kubernetes labels are labels too, so that
// a listing is filtered by the API server. The container's id and name are
// annotations; the pod's name derives from the id, and a hash of the
// container name is a label, so that both are found by one request.
const (
	annID        = "opensbx.org/id"
	annName      = "opensbx.org/name"
	annLabels    = "opensbx.org/labels"
	annAgent     = "opensbx.org/agent"  // the agent program's path in the container, for Start's probe
	annHalted    = "opensbx.org/halted" // when Stop halted the sandbox (its Pod runs on); Start removes it
	labelNameKey = "opensbx.org/name-key"
	labelSandbox = "opensbx.org/sandbox" // "true" on every pod this engine makes

	// containerName is the name of the sandbox's container in its pod.
	containerName = "sandbox"
	// agentInit is the init container that installs the agent.
	agentInit = "opensbx-agent"
	// agentVolume is the pod volume the agent is installed into.
	agentVolume = "opensbx-agent"
)

// podName is the pod of container id: "sbx-" and 48 of the id's 64 hex
// digits (192 bits), a valid DNS label.
func podName(id string) string { return "sbx-" + id[:48] }

// nameKey is the label value that finds a container by name.
func nameKey(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:20])
}

// isLabel reports whether k=v can be a Kubernetes label of ours: valid, and
// not in the namespaces Kubernetes keeps for itself.
func isLabel(k, v string) bool {
	if len(validation.IsQualifiedName(k)) > 0 || len(validation.IsValidLabelValue(v)) > 0 {
		return false
	}
	if prefix, _, ok := strings.Cut(k, "/"); ok {
		if prefix == "kubernetes.io" || prefix == "k8s.io" || strings.HasSuffix(prefix, ".kubernetes.io") ||
			strings.HasSuffix(prefix, ".k8s.io") || strings.HasPrefix(prefix, "opensbx.org") {
			return false
		}
	}
	return true
}

// selector is the label selector for containers carrying labels (a value
// of "" asks only for the key, like the Docker engine's label filter), as
// far as the API server can filter; matches checks the rest.
func selector(labels map[string]string) string {
	parts := []string{labelSandbox + "=true"}
	for k, v := range labels {
		if !isLabel(k, v) {
			continue
		}
		if v == "" {
			parts = append(parts, k)
		} else {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, ",")
}

// matches reports whether a container's labels carry all of filter.
func matches(have, filter map[string]string) bool {
	for k, v := range filter {
		got, ok := have[k]
		if !ok || (v != "" && got != v) {
			return false
		}
	}
	return true
}

// podFor writes the pod of a new container id made to spec.
func (k *Kube) podFor(id string, spec engine.ContainerSpec, agentImage, agentDir string) (*corev1.Pod, error) {
	if spec.Image == "" {
		return nil, sbxerr.Invalid("no image")
	}
	labelJSON, err := json.Marshal(spec.Labels)
	if err != nil {
		return nil, sbxerr.Invalid("labels: %v", err)
	}
	labels := map[string]string{labelSandbox: "true", labelNameKey: nameKey(spec.Name), labelPod: podName(id)}
	for key, v := range spec.Labels {
		if isLabel(key, v) {
			labels[key] = v
		}
	}
	c := corev1.Container{
		Name:            containerName,
		Image:           spec.Image,
		Command:         spec.Entrypoint,
		Args:            spec.Cmd,
		WorkingDir:      spec.WorkingDir,
		ImagePullPolicy: k.cfg.PullPolicy,
		Resources:       k.resources(spec.Resources),
		SecurityContext: &corev1.SecurityContext{},
	}
	if spec.Entrypoint != nil && len(spec.Entrypoint) == 0 {
		c.Command = nil
		if len(spec.Cmd) > 0 {
			c.Command, c.Args = spec.Cmd[:1], spec.Cmd[1:]
		}
	}
	for _, kv := range spec.Env {
		name, value, _ := strings.Cut(kv, "=")
		c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
	}
	if spec.User != "" {
		uid, gid, hasGID := strings.Cut(spec.User, ":")
		u, err := strconv.ParseInt(uid, 10, 64)
		if err != nil {
			return nil, sbxerr.New(sbxerr.ErrUnsupported, "user %q: a Kubernetes sandbox takes a numeric uid[:gid] (the image's user names are not known to the cluster)", spec.User)
		}
		c.SecurityContext.RunAsUser = &u
		if hasGID {
			g, err := strconv.ParseInt(gid, 10, 64)
			if err != nil {
				return nil, sbxerr.New(sbxerr.ErrUnsupported, "user %q: a Kubernetes sandbox takes a numeric uid[:gid]", spec.User)
			}
			c.SecurityContext.RunAsGroup = &g
		}
	}
	for _, o := range spec.SecurityOpt {
		if o == "no-new-privileges:true" || o == "no-new-privileges" {
			f := false
			c.SecurityContext.AllowPrivilegeEscalation = &f
		}
	}
	if len(spec.CapDrop) > 0 || len(spec.CapAdd) > 0 {
		caps := &corev1.Capabilities{}
		for _, d := range spec.CapDrop {
			caps.Drop = append(caps.Drop, corev1.Capability(strings.TrimPrefix(d, "CAP_")))
		}
		for _, a := range spec.CapAdd {
			caps.Add = append(caps.Add, corev1.Capability(strings.TrimPrefix(a, "CAP_")))
		}
		c.SecurityContext.Capabilities = caps
	}
	if spec.ReadonlyRootfs {
		t := true
		c.SecurityContext.ReadOnlyRootFilesystem = &t
	}
	for _, p := range spec.Ports {
		port, proto, _ := strings.Cut(p, "/")
		n, err := strconv.ParseInt(port, 10, 32)
		if err != nil {
			return nil, sbxerr.Invalid("port %q", p)
		}
		cp := corev1.ContainerPort{ContainerPort: int32(n), Protocol: corev1.ProtocolTCP}
		if strings.EqualFold(proto, "udp") {
			cp.Protocol = corev1.ProtocolUDP
		}
		c.Ports = append(c.Ports, cp)
	}
	no, yes := false, true
	grace := int64(1)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        podName(id),
			Namespace:   k.cfg.Namespace,
			Labels:      labels,
			Annotations: map[string]string{annID: id, annName: spec.Name, annLabels: string(labelJSON)},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			TerminationGracePeriodSeconds: &grace,
		},
	}
	if spec.Init {
		// The pod's infrastructure process is the pid 1 of its processes and
		// reaps them, as the engine's init does in a Docker sandbox.
		pod.Spec.ShareProcessNamespace = &yes
	}
	if spec.Runtime != "" {
		rc := spec.Runtime
		pod.Spec.RuntimeClassName = &rc
	}
	for i, mt := range spec.Mounts {
		name := fmt.Sprintf("scratch-%d", i)
		if mt.Agent {
			pod.Annotations[annAgent] = path.Join(mt.Target, "opensbx-agent")
		}
		switch {
		case mt.Agent && agentDir != "":
			name = agentVolume
			if !validVolumeName(mt.Volume) {
				return nil, sbxerr.Invalid("agent volume name %q", mt.Volume)
			}
			dir := corev1.HostPathDirectory
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: path.Join(agentDir, mt.Volume), Type: &dir}}})
			mt.ReadOnly = true
		case mt.Agent:
			name = agentVolume
			if agentImage == "" {
				return nil, sbxerr.New(sbxerr.ErrUnsupported, "no agent image")
			}
			pod.Spec.InitContainers = append(pod.Spec.InitContainers, agentInstaller(agentImage, mt.Target))
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		case mt.Volume == "":
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		default:
			return nil, sbxerr.New(sbxerr.ErrUnsupported, "volume %q: a Kubernetes sandbox mounts no engine volumes", mt.Volume)
		}
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: name, MountPath: mt.Target, ReadOnly: mt.ReadOnly})
	}
	i := 0
	for target, opts := range spec.Tmpfs {
		name := fmt.Sprintf("tmpfs-%d", i)
		i++
		ed := &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}
		for _, o := range strings.Split(opts, ",") {
			if v, ok := strings.CutPrefix(o, "size="); ok {
				if q, err := resource.ParseQuantity(v); err == nil {
					ed.SizeLimit = &q
				}
			}
		}
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: ed}})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: name, MountPath: target})
	}
	if spec.StorageSize != "" {
		q, err := resource.ParseQuantity(spec.StorageSize)
		if err != nil {
			return nil, sbxerr.Invalid("storage size %q", spec.StorageSize)
		}
		c.Resources.Limits[corev1.ResourceEphemeralStorage] = q
	}
	pod.Spec.Containers = []corev1.Container{c}
	return pod, nil
}

// validVolumeName reports whether s is a plain file name (a subdirectory
// of the agent's host directory, never a path out of it).
func validVolumeName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00")
}

// agentInstaller is the init container that copies the agent from the
// agent image into the pod's agent volume, mounted at dir.
func agentInstaller(image, dir string) corev1.Container {
	no := false
	root := int64(0)
	return corev1.Container{
		Name:            agentInit,
		Image:           image,
		Command:         []string{"/opensbx-agent", "install", dir},
		ImagePullPolicy: corev1.PullIfNotPresent,
		VolumeMounts:    []corev1.VolumeMount{{Name: agentVolume, MountPath: dir}},
		Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                &root,
			AllowPrivilegeEscalation: &no,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// resources maps a container's limits to the pod's: limits as asked, and
// small requests, so that the scheduler packs sandboxes by what they use
// rather than by their ceilings (as Docker does on one machine).
func (k *Kube) resources(r engine.Resources) corev1.ResourceRequirements {
	out := corev1.ResourceRequirements{Limits: corev1.ResourceList{}, Requests: corev1.ResourceList{}}
	if r.NanoCPUs > 0 {
		out.Limits[corev1.ResourceCPU] = *resource.NewMilliQuantity(max(r.NanoCPUs/1e6, 1), resource.DecimalSI)
		out.Requests[corev1.ResourceCPU] = *resource.NewMilliQuantity(min(max(r.NanoCPUs/1e6, 1), k.cfg.CPURequestMilli), resource.DecimalSI)
	}
	if r.MemoryBytes > 0 {
		out.Limits[corev1.ResourceMemory] = *resource.NewQuantity(r.MemoryBytes, resource.BinarySI)
		out.Requests[corev1.ResourceMemory] = *resource.NewQuantity(min(r.MemoryBytes, k.cfg.MemoryRequestBytes), resource.BinarySI)
	}
	return out
}

// containerOf reads a pod of ours back as a container; ok is false for a
// pod that is not one.
func containerOf(p *corev1.Pod) (engine.Container, bool) {
	id := p.Annotations[annID]
	if !engine.IsFullID(id) || p.Name != podName(id) {
		return engine.Container{}, false
	}
	var labels map[string]string
	if err := json.Unmarshal([]byte(p.Annotations[annLabels]), &labels); err != nil {
		return engine.Container{}, false
	}
	c := engine.Container{
		ID:      id,
		Name:    p.Annotations[annName],
		Labels:  labels,
		Created: p.CreationTimestamp.Time,
		Ports:   map[string]string{},
		IPs:     map[string]string{},
	}
	if labels == nil {
		c.Labels = map[string]string{}
	}
	for _, ct := range p.Spec.Containers {
		if ct.Name != containerName {
			continue
		}
		c.Image = ct.Image
		c.WorkingDir = ct.WorkingDir
		for _, e := range ct.Env {
			c.Env = append(c.Env, e.Name+"="+e.Value)
		}
		if sc := ct.SecurityContext; sc != nil && sc.RunAsUser != nil {
			c.User = strconv.FormatInt(*sc.RunAsUser, 10)
			if sc.RunAsGroup != nil {
				c.User += ":" + strconv.FormatInt(*sc.RunAsGroup, 10)
			}
		}
	}
	if p.Status.PodIP != "" {
		c.IPs["pod"] = p.Status.PodIP
	}
	c.State, c.StatusText = stateOf(p)
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == containerName {
			c.ImageID = cs.ImageID
		}
	}
	return c, true
}

// stateOf maps a pod's phase and its container's state to the engine's
// container states: created (pending), running, exited, removing.
func stateOf(p *corev1.Pod) (engine.ContainerState, string) {
	st := engine.ContainerState{Status: "created"}
	text := string(p.Status.Phase)
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name != containerName {
			continue
		}
		switch {
		case cs.State.Running != nil:
			st.Status, st.Running = "running", true
			st.StartedAt = cs.State.Running.StartedAt.Time
			text = "Up since " + st.StartedAt.UTC().Format(time.RFC3339)
		case cs.State.Terminated != nil:
			t := cs.State.Terminated
			st.Status, st.ExitCode = "exited", int(t.ExitCode)
			st.StartedAt, st.FinishedAt = t.StartedAt.Time, t.FinishedAt.Time
			st.OOMKilled = t.Reason == "OOMKilled"
			text = fmt.Sprintf("Exited (%d) %s", t.ExitCode, t.Reason)
		case cs.State.Waiting != nil:
			text = "Waiting: " + cs.State.Waiting.Reason
		}
	}
	if st.Status == "created" && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed) {
		st.Status = "exited"
	}
	if t := p.Annotations[annHalted]; t != "" && (st.Status == "running" || st.Status == "created") {
		// Stopped by the agent, its Pod running on: exited, as a stopped
		// Docker container, by SIGTERM. (Stop saw the agent run, so a pod
		// the API still calls created, a relist behind, runs too.)
		st.Status, st.Running, st.Halted, st.ExitCode = "exited", false, true, 143
		st.FinishedAt, _ = time.Parse(time.RFC3339Nano, t)
		text = "Stopped " + t + " (the Pod and its agent run on)"
	}
	if p.DeletionTimestamp != nil {
		st.Status, st.Running, st.Halted = "removing", false, false
	}
	return st, text
}

// waitingProblem is the error of a container that cannot start, from its
// waiting reason, or nil while it may still start.
func waitingProblem(p *corev1.Pod) error {
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, cs := range list {
			w := cs.State.Waiting
			if w == nil {
				continue
			}
			switch w.Reason {
			case "ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName":
				return sbxerr.New(sbxerr.ErrImageNotFound, "image %q of container %s: %s: %s", cs.Image, cs.Name, w.Reason, w.Message)
			case "CreateContainerConfigError", "CreateContainerError", "RunContainerError", "CrashLoopBackOff":
				return sbxerr.Invalid("container %s: %s: %s", cs.Name, w.Reason, w.Message)
			}
		}
	}
	for _, cs := range p.Status.InitContainerStatuses {
		if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
			return fmt.Errorf("init container %s exited with %d: %s %s", cs.Name, t.ExitCode, t.Reason, t.Message)
		}
	}
	if p.Status.Phase == corev1.PodPending {
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
				return nil // may fit later; the start timeout decides
			}
		}
	}
	return nil
}
