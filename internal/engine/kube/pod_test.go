package kube

import (
	"testing"
	"time"

	"github.com/matryer/is"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/opensbx/opensbx/internal/engine"
)

func testKube(t *testing.T) *Kube {
	t.Helper()
	k, err := New(Config{Rest: &rest.Config{Host: "https://127.0.0.1:1"}, Namespace: "sbx"})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestPodRoundTrip(t *testing.T) {
	is := is.New(t)
	k := testKube(t)
	id := newID()
	spec := engine.ContainerSpec{
		Name:        "opensbx-ns-happy-raven",
		Image:       "busybox:1",
		Entrypoint:  []string{"/.opensbx/opensbx-agent", "serve"},
		Env:         []string{"A=1", "B=x=y"},
		Labels:      map[string]string{"org.opensbx.managed": "true", "org.opensbx.agent": "0123456789012345678901234567890123456789012345678901234567890123", "note": "has spaces, not a label value"},
		WorkingDir:  "/work",
		User:        "0",
		Ports:       []string{"8080/tcp", "53/udp"},
		Resources:   engine.Resources{MemoryBytes: 512 << 20, NanoCPUs: 1.5e9},
		Init:        true,
		SecurityOpt: []string{"no-new-privileges:true"},
		CapDrop:     []string{"ALL"},
		CapAdd:      []string{"CHOWN", "CAP_KILL"},
		Mounts:      []engine.Mount{{Volume: "opensbx-agent", Target: "/.opensbx", ReadOnly: true, Agent: true}, {Target: "/tmp"}},
	}
	p, err := k.podFor(id, spec, "opensbx-agent:0123", "")
	is.NoErr(err)
	is.Equal(p.Name, podName(id))
	is.Equal(p.Namespace, "sbx")
	is.Equal(p.Labels["org.opensbx.managed"], "true")
	_, long := p.Labels["org.opensbx.agent"]
	is.True(!long) // 64 characters: not a label value, kept in the annotation only
	_, spaced := p.Labels["note"]
	is.True(!spaced)
	is.Equal(p.Spec.RestartPolicy, corev1.RestartPolicyNever)
	is.True(*p.Spec.ShareProcessNamespace) // the infrastructure process reaps, like an init
	is.True(!*p.Spec.AutomountServiceAccountToken)
	is.Equal(len(p.Spec.InitContainers), 1)
	is.Equal(p.Spec.InitContainers[0].Image, "opensbx-agent:0123")
	is.Equal(p.Spec.InitContainers[0].Command, []string{"/opensbx-agent", "install", "/.opensbx"})
	c := p.Spec.Containers[0]
	is.Equal(c.Command, spec.Entrypoint)
	is.Equal(*c.SecurityContext.RunAsUser, int64(0))
	is.True(!*c.SecurityContext.AllowPrivilegeEscalation)
	is.Equal(c.SecurityContext.Capabilities.Add, []corev1.Capability{"CHOWN", "KILL"})
	is.Equal(c.Resources.Limits.Cpu().MilliValue(), int64(1500))
	is.Equal(c.Resources.Requests.Cpu().MilliValue(), int64(10)) // small requests: packed by use
	is.Equal(c.Resources.Limits.Memory().Value(), int64(512<<20))
	is.Equal(c.Resources.Requests.Memory().Value(), int64(16<<20))
	is.Equal(len(c.Ports), 2)
	is.Equal(c.Ports[1].Protocol, corev1.ProtocolUDP)
	is.Equal(len(c.VolumeMounts), 2)
	is.True(c.VolumeMounts[0].ReadOnly)

	// What the API server gives back reads as the container made.
	p.CreationTimestamp = metav1.NewTime(time.Unix(1700000000, 0))
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.7", ContainerStatuses: []corev1.ContainerStatus{{
		Name: containerName, ImageID: "sha256:abc",
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(time.Unix(1700000001, 0))}},
	}}}
	got, ok := containerOf(p)
	is.True(ok)
	is.Equal(got.ID, id)
	is.Equal(got.Name, spec.Name)
	is.Equal(got.Labels, spec.Labels) // all of them, from the annotation
	is.Equal(got.Env, spec.Env)
	is.Equal(got.User, "0")
	is.Equal(got.IPs["pod"], "10.244.0.7")
	is.Equal(got.ImageID, "sha256:abc")
	is.True(got.State.Running)
	is.Equal(got.State.Status, "running")
}

func TestPodForRefuses(t *testing.T) {
	k := testKube(t)
	for name, spec := range map[string]engine.ContainerSpec{
		"no image":     {Name: "a"},
		"user name":    {Name: "a", Image: "x", User: "nobody"},
		"engine mount": {Name: "a", Image: "x", Mounts: []engine.Mount{{Volume: "data", Target: "/data"}}},
		"bad port":     {Name: "a", Image: "x", Ports: []string{"http"}},
		"agent, none":  {Name: "a", Image: "x", Mounts: []engine.Mount{{Target: "/.opensbx", Agent: true}}},
	} {
		t.Run(name, func(t *testing.T) {
			img := "agent:1"
			if name == "agent, none" {
				img = ""
			}
			if _, err := k.podFor(newID(), spec, img, ""); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestContainerOfForeignPods(t *testing.T) {
	is := is.New(t)
	id := newID()
	for name, p := range map[string]*corev1.Pod{
		"no id":        {ObjectMeta: metav1.ObjectMeta{Name: podName(id)}},
		"other name":   {ObjectMeta: metav1.ObjectMeta{Name: "web-1", Annotations: map[string]string{annID: id, annLabels: "{}"}}},
		"short id":     {ObjectMeta: metav1.ObjectMeta{Name: "sbx-abc", Annotations: map[string]string{annID: "abc", annLabels: "{}"}}},
		"broken label": {ObjectMeta: metav1.ObjectMeta{Name: podName(id), Annotations: map[string]string{annID: id, annLabels: "{"}}},
	} {
		_, ok := containerOf(p)
		is.True(!ok) // not one of ours
		_ = name
	}
}

func TestStateOf(t *testing.T) {
	now := metav1.NewTime(time.Unix(1700000000, 0))
	tests := []struct {
		name   string
		status corev1.PodStatus
		del    bool
		want   string
		code   int
	}{
		{"pending", corev1.PodStatus{Phase: corev1.PodPending}, false, "created", 0},
		{"waiting", corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: containerName, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}}, false, "created", 0},
		{"running", corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: containerName, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}}, false, "running", 0},
		{"exited", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{Name: containerName, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}}}}, false, "exited", 137},
		{"failed before running", corev1.PodStatus{Phase: corev1.PodFailed}, false, "exited", 0},
		{"deleting", corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: containerName, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}}, true, "removing", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			p := &corev1.Pod{Status: tt.status}
			if tt.del {
				p.DeletionTimestamp = &now
			}
			st, _ := stateOf(p)
			is.Equal(st.Status, tt.want)
			is.Equal(st.ExitCode, tt.code)
			is.Equal(st.Running, tt.want == "running")
		})
	}
}

func TestWaitingProblem(t *testing.T) {
	is := is.New(t)
	waiting := func(reason string) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			Name: containerName, Image: "nope:1", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}}}}
	}
	is.NoErr(waitingProblem(waiting("ContainerCreating"))) // may still start
	is.True(waitingProblem(waiting("ErrImageNeverPull")) != nil)
	is.True(waitingProblem(waiting("CreateContainerError")) != nil)
}

func TestSelectorAndMatches(t *testing.T) {
	is := is.New(t)
	f := map[string]string{"org.opensbx.managed": "true", "org.opensbx.volume": "", "odd key!": "v"}
	sel := selector(f)
	is.True(sel != "")
	is.True(matches(map[string]string{"org.opensbx.managed": "true", "org.opensbx.volume": "x", "odd key!": "v"}, f))
	is.True(!matches(map[string]string{"org.opensbx.managed": "true", "odd key!": "v"}, f)) // a key asked for is missing
	is.True(!matches(map[string]string{"org.opensbx.managed": "false", "org.opensbx.volume": "", "odd key!": "v"}, f))
	for k, want := range map[string]bool{"team": true, "org.opensbx.ns": true, "kubernetes.io/x": false, "opensbx.org/id": false, "a b": false} {
		is.Equal(isLabel(k, "v"), want)
	}
	is.True(!isLabel("team", "has space"))
}

func TestPodForAgentHostDir(t *testing.T) {
	is := is.New(t)
	k := testKube(t)
	p, err := k.podFor(newID(), engine.ContainerSpec{Name: "a", Image: "x", Mounts: []engine.Mount{{Volume: "opensbx-agent-amd64-0123456789abcdef", Target: "/.opensbx", Agent: true}}}, "agent:1", "/var/lib/opensbx/agent")
	is.NoErr(err)
	is.Equal(len(p.Spec.InitContainers), 0) // nothing to install
	is.Equal(p.Spec.Volumes[0].HostPath.Path, "/var/lib/opensbx/agent/opensbx-agent-amd64-0123456789abcdef")
	is.True(p.Spec.Containers[0].VolumeMounts[0].ReadOnly)
	for _, bad := range []string{"", "..", "a/b", "../etc"} {
		_, err := k.podFor(newID(), engine.ContainerSpec{Name: "a", Image: "x", Mounts: []engine.Mount{{Volume: bad, Target: "/.opensbx", Agent: true}}}, "agent:1", "/var/lib/opensbx/agent")
		is.True(err != nil) // never a path out of the directory
	}
}

// FuzzContainerOf: whatever a pod's annotations hold (the cluster's
// answer is not trusted), reading it back never panics, and what is read
// as ours has a full id matching the pod's name.
func FuzzContainerOf(f *testing.F) {
	id := newID()
	f.Add(id, podName(id), `{"a":"b"}`, "name")
	f.Add("x", "sbx-x", "{", "")
	f.Add(id, podName(id), "null", "\x00")
	f.Fuzz(func(t *testing.T, annID_, name, labels, cname string) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{annID: annID_, annLabels: labels, annName: cname}}}
		c, ok := containerOf(p)
		if ok && (!engine.IsFullID(c.ID) || podName(c.ID) != name || c.Labels == nil) {
			t.Fatalf("accepted %+v", c)
		}
		_ = selector(map[string]string{labels: cname})
	})
}

// TestHaltedState: a pod Stop halted reports a stopped container whose
// agent runs on, also while the API still calls it created; one that ended
// by itself, or goes, is not halted.
func TestHaltedState(t *testing.T) {
	at := "2026-12-02T08:00:00.5Z"
	running := corev1.ContainerStatus{Name: containerName, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}
	ended := corev1.ContainerStatus{Name: containerName, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}
	gone := metav1.Now()
	for _, tc := range []struct {
		name     string
		statuses []corev1.ContainerStatus
		deleting bool
		status   string
		halted   bool
	}{
		{"running", []corev1.ContainerStatus{running}, false, "exited", true},
		{"created", nil, false, "exited", true},
		{"ended by itself", []corev1.ContainerStatus{ended}, false, "exited", false},
		{"removing", []corev1.ContainerStatus{running}, true, "removing", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{annHalted: at}}, Status: corev1.PodStatus{ContainerStatuses: tc.statuses}}
			if tc.deleting {
				p.DeletionTimestamp = &gone
			}
			st, _ := stateOf(p)
			is.Equal(st.Status, tc.status)
			is.Equal(st.Halted, tc.halted)
			is.True(!st.Running)
			if tc.halted {
				is.Equal(st.ExitCode, 143)
				is.Equal(st.FinishedAt.Format(time.RFC3339Nano), at)
			}
		})
	}
}
