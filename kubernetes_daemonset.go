package opensbx

import (
	"path"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/opensbx/opensbx/internal/agent/bin"
	"github.com/opensbx/opensbx/internal/sbxerr"
)

// AgentDaemonSetOptions describe the DaemonSet that keeps the agent on
// every node (AgentDaemonSet).
type AgentDaemonSetOptions struct {
	// Namespace is the DaemonSet's namespace ("" is "default").
	Namespace string
	// HostDir is the node directory, the same as
	// KubernetesConfig.AgentHostDir: an absolute, clean path.
	HostDir string
	// Arch is the nodes' CPU architecture, "amd64" or "arm64"; the
	// DaemonSet runs only on nodes of that architecture ("" is "amd64").
	Arch string
	// Image is the agent image (default AgentImageRef(Arch)).
	Image string
	// PullPolicy is the installer's image pull policy ("" is IfNotPresent).
	PullPolicy string
}

// AgentDaemonSet returns a DaemonSet that installs the agent into HostDir
// on every node of one architecture and keeps it there: its pod copies the
// agent from the agent image into the subdirectory KubernetesConfig.
// AgentHostDir expects, is Ready once the agent is in place, and then
// idles (a few MiB of memory). Create it with client-go or print it with
// `opensbx agent-daemonset | kubectl apply -f -`; once it is ready, a
// Manager whose Pods live in its namespace starts sandboxes without an init
// container (it finds the DaemonSet), as does one configured with the same
// AgentHostDir in any namespace.
// Its pod runs as root with no capabilities, writing only the host
// directory. It tolerates every taint, so that no node that may run
// sandboxes lacks the agent.
func AgentDaemonSet(o AgentDaemonSetOptions) (*appsv1.DaemonSet, error) {
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.Arch == "" {
		o.Arch = "amd64"
	}
	if o.HostDir == "" || !path.IsAbs(o.HostDir) || path.Clean(o.HostDir) != o.HostDir || o.HostDir == "/" {
		return nil, sbxerr.Invalid("agent daemonset: host directory %q: want an absolute, clean path other than /", o.HostDir)
	}
	version, err := bin.Version(o.Arch)
	if err != nil {
		return nil, sbxerr.New(ErrUnsupported, "agent daemonset: %v", err)
	}
	if o.Image == "" {
		if o.Image, err = AgentImageRef(o.Arch); err != nil {
			return nil, err
		}
	}
	pull := corev1.PullPolicy(o.PullPolicy)
	switch pull {
	case "":
		pull = corev1.PullIfNotPresent
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return nil, sbxerr.Invalid("agent daemonset: pull policy %q (want Always, IfNotPresent or Never)", o.PullPolicy)
	}
	name := "opensbx-agent-" + o.Arch
	labels := map[string]string{
		"app.kubernetes.io/name":       "opensbx-agent",
		"app.kubernetes.io/component":  "agent-installer",
		"app.kubernetes.io/managed-by": "opensbx",
		"kubernetes.io/arch":           o.Arch,
	}
	dir := "/host/" + agentVolumeName(o.Arch, version)
	root := int64(0)
	no, yes := false, true
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	grace := int64(5)
	ds := &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: o.Namespace, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "opensbx-agent", "kubernetes.io/arch": o.Arch}},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptrTo(intstr.FromString("100%"))},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector:                  map[string]string{"kubernetes.io/arch": o.Arch, "kubernetes.io/os": "linux"},
					Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					AutomountServiceAccountToken:  &no,
					EnableServiceLinks:            &no,
					TerminationGracePeriodSeconds: &grace,
					Containers: []corev1.Container{{
						Name:            "install",
						Image:           o.Image,
						ImagePullPolicy: pull,
						Command:         []string{"/opensbx-agent", "install", "-mkdir", "-stay", dir},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/opensbx-agent", "install", "-check", dir}}},
							PeriodSeconds: 10,
						},
						StartupProbe: &corev1.Probe{
							ProbeHandler:     corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/opensbx-agent", "install", "-check", dir}}},
							PeriodSeconds:    1,
							FailureThreshold: 120,
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "host", MountPath: "/host"}},
						Resources: corev1.ResourceRequirements{
							Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("5m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
						},
						SecurityContext: &corev1.SecurityContext{
							RunAsUser:                &root,
							AllowPrivilegeEscalation: &no,
							ReadOnlyRootFilesystem:   &yes,
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
					Volumes: []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{
						HostPath: &corev1.HostPathVolumeSource{Path: o.HostDir, Type: &dirOrCreate}}}},
				},
			},
		},
	}
	return ds, nil
}

func ptrTo[T any](v T) *T { return &v }
