package kube

import (
	"context"
	"testing"
	"time"

	"github.com/matryer/is"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/opensbx/opensbx/internal/engine"
)

const testVol = "opensbx-agent-amd64-0123456789abcdef"

// agentSet is a DaemonSet shaped like opensbx.AgentDaemonSet's, ready.
func agentSet(ns, hostDir, vol string) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "opensbx-agent-amd64", Namespace: ns, Generation: 2,
			Labels: map[string]string{"app.kubernetes.io/name": "opensbx-agent", "app.kubernetes.io/component": "agent-installer"}},
		Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "install", Command: []string{"/opensbx-agent", "install", "-mkdir", "-stay", "/host/" + vol},
				VolumeMounts: []corev1.VolumeMount{{Name: "host", MountPath: "/host"}}}},
			Volumes: []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir}}}},
		}}},
		Status: appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 3, NumberReady: 3, UpdatedNumberScheduled: 3},
	}
}

func TestAgentSetDir(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(ds *appsv1.DaemonSet)
		want string
	}{
		{"ready", func(*appsv1.DaemonSet) {}, "/var/lib/opensbx/agent"},
		{"another version", func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.Containers[0].Command[4] = "/host/opensbx-agent-amd64-ffffffffffffffff"
		}, ""},
		{"another architecture", func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.Containers[0].Command[4] = "/host/opensbx-agent-arm64-0123456789abcdef"
		}, ""},
		{"a pod not ready", func(ds *appsv1.DaemonSet) { ds.Status.NumberReady = 2 }, ""},
		{"a pod of the old template", func(ds *appsv1.DaemonSet) { ds.Status.UpdatedNumberScheduled = 2 }, ""},
		{"a change not yet seen", func(ds *appsv1.DaemonSet) { ds.Status.ObservedGeneration = 1 }, ""},
		{"no node", func(ds *appsv1.DaemonSet) {
			ds.Status.DesiredNumberScheduled, ds.Status.NumberReady, ds.Status.UpdatedNumberScheduled = 0, 0, 0
		}, ""},
		{"not a host path", func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.Volumes[0].VolumeSource = corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
		}, ""},
		{"a sub path", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Containers[0].VolumeMounts[0].SubPath = "x" }, ""},
		{"mounted elsewhere", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Containers[0].VolumeMounts[0].MountPath = "/other" }, ""},
		{"relative host dir", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Volumes[0].HostPath.Path = "var/lib" }, ""},
		{"unclean host dir", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Volumes[0].HostPath.Path = "/var/../etc" }, ""},
		{"the root", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Volumes[0].HostPath.Path = "/" }, ""},
		{"no command", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.Containers[0].Command = nil }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ds := agentSet("sbx", "/var/lib/opensbx/agent", testVol)
			tc.edit(ds)
			is.New(t).Equal(AgentSetDir(ds, testVol), tc.want)
		})
	}
}

// TestAgentHostDirDiscovery: with DiscoverAgent, a create finds the ready
// DaemonSet of its namespace, caches the answer (found or not) for a
// while, and the pod mounts the agent from the node; a configured
// AgentHostDir is never looked up.
func TestAgentHostDirDiscovery(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	k := testKube(t)
	k.cfg.DiscoverAgent = true
	cs := fake.NewClientset(agentSet("other", "/elsewhere", testVol))
	k.cs = cs
	lists := func() int {
		n := 0
		for _, a := range cs.Actions() {
			if a.GetVerb() == "list" && a.GetResource().Resource == "daemonsets" {
				n++
			}
		}
		return n
	}
	is.Equal(k.agentHostDir(ctx, testVol), "") // only the namespace's own DaemonSets count
	is.Equal(k.agentHostDir(ctx, testVol), "") // cached
	is.Equal(lists(), 1)

	_, err := cs.AppsV1().DaemonSets("sbx").Create(ctx, agentSet("sbx", "/var/lib/opensbx/agent", testVol), metav1.CreateOptions{})
	is.NoErr(err)
	k.dirs[testVol] = agentDirEntry{at: time.Now().Add(-agentDirTTL)} // the negative answer expires
	is.Equal(k.agentHostDir(ctx, testVol), "/var/lib/opensbx/agent")
	is.Equal(lists(), 2)

	spec := engine.ContainerSpec{Name: "a", Image: "x", Mounts: []engine.Mount{{Volume: testVol, Target: "/.opensbx", Agent: true}}}
	p, err := k.podFor(newID(), spec, "agent:1", k.agentHostDir(ctx, agentVolumeName(spec)))
	is.NoErr(err)
	is.Equal(len(p.Spec.InitContainers), 0)
	is.Equal(p.Spec.Volumes[0].HostPath.Path, "/var/lib/opensbx/agent/"+testVol)
	is.Equal(lists(), 2) // from the cache

	k.cfg.DiscoverAgent = false
	is.Equal(k.agentHostDir(ctx, testVol), "") // not asked to look
	k.cfg.AgentHostDir = "/configured"
	k.cfg.DiscoverAgent = true
	is.Equal(k.agentHostDir(ctx, testVol), "/configured")
	is.Equal(lists(), 2)
}
