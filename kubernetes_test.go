package opensbx

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"github.com/matryer/is"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/opensbx/opensbx/internal/agent/bin"
	"github.com/opensbx/opensbx/internal/engine/kube"
	"github.com/opensbx/opensbx/internal/kubeenv"
	"github.com/opensbx/opensbx/internal/kubeenv/cluster"
	"github.com/opensbx/opensbx/internal/testenv"
)

// kubeBackend is the Kubernetes backend of the test cluster, with the test
// images in it; the test is skipped when no cluster is configured.
func kubeBackend(t *testing.T) backend {
	t.Helper()
	kubeconfig := kubeenv.Kubeconfig(t)
	cli := testenv.Engine(t)
	testenv.Images(t, cli)
	kubeImportOnce(t, cli)
	b := backend{name: "kubernetes", ns: testNamespace(), opts: []Option{WithKubernetes(KubernetesConfig{Kubeconfig: kubeconfig, PullPolicy: "Never"})}}
	t.Cleanup(func() { b.sweep(t) })
	return b
}

// kubeImportOnce puts the test images and the agent image into the test
// cluster, once per test binary.
func kubeImportOnce(t *testing.T, cli *client.Client) {
	t.Helper()
	kubeImages.once.Do(func() {
		kubeImages.err = errors.New("importing the images into the test cluster failed (see the first test that tried)")
		kubeenv.ImportAgent(t, cli)                                   // fails t (and leaves err) on error
		kubeenv.Import(t, testenv.BusyboxImage, testenv.NoShellImage) // likewise
		kubeImages.err = nil
	})
	if kubeImages.err != nil {
		t.Fatal(kubeImages.err)
	}
}

// TestKubernetesUnsupported: what a cluster cannot do is ErrUnsupported
// (422 over HTTP), never a fake success, and leaves the sandbox as it was.
func TestKubernetesUnsupported(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	b := kubeBackend(t)
	m := b.manager(t)
	sb := createConf(t, m)
	for name, call := range map[string]func() error{
		"pause":  func() error { _, err := m.Pause(ctx, sb.ID); return err },
		"resume": func() error { _, err := m.Resume(ctx, sb.ID); return err },
		"images": func() error { _, err := m.Images(ctx); return err },
		"image":  func() error { _, err := m.Image(ctx, testenv.BusyboxImage); return err },
		"pull":   func() error { _, err := m.PullImage(ctx, "127.0.0.1:5000/x:1", PullOptions{}); return err },
		"rmi":    func() error { return m.RemoveImage(ctx, testenv.BusyboxImage, false) },
		"keep image command": func() error {
			_, err := m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, KeepImageCommand: true})
			return err
		},
	} {
		err := call()
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", name, err)
		}
	}
	got, err := m.Get(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(got.State, StateRunning) // untouched
	list, err := m.List(ctx)
	is.NoErr(err)
	is.Equal(len(list), 1) // the refused creates made nothing

	_, err = New(ctx, append([]Option{WithAgent(false)}, b.opts...)...)
	is.True(errors.Is(err, ErrUnsupported)) // sandboxes on a cluster need the agent
	_, err = New(ctx, append([]Option{WithPidsLimit(64)}, b.opts...)...)
	is.True(errors.Is(err, ErrUnsupported)) // a Pod's process bound is its node's
}

// TestKubernetesNodeBoundsPods: the test cluster's kubelet bounds a Pod's
// processes as a Docker sandbox's are, which confLimits relies on.
func TestKubernetesNodeBoundsPods(t *testing.T) {
	if cluster.PodPidsLimit != DefaultPidsLimit {
		t.Fatalf("the test cluster's podPidsLimit is %d, a Docker sandbox's bound %d", cluster.PodPidsLimit, DefaultPidsLimit)
	}
}

// TestKubernetesMissingImage: an image the node does not have (and may not
// pull) fails Create with ErrImageNotFound and leaves no Pod.
func TestKubernetesMissingImage(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m := kubeBackend(t).manager(t)
	_, err := m.Create(ctx, CreateOptions{Image: "opensbx-test/not-there:1"})
	is.True(errors.Is(err, ErrImageNotFound))
	list, err := m.List(ctx)
	is.NoErr(err)
	is.Equal(len(list), 0)
}

// TestKubernetesPortOnPodIP: a sandbox's port is reached on its Pod's
// address, which Network reports (via pod-ip).
func TestKubernetesPortOnPodIP(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	b := kubeBackend(t)
	b.opts = []Option{WithKubernetes(KubernetesConfig{Kubeconfig: kubeenv.Kubeconfig(t), PullPolicy: "Never", Ports: NetworkViaPodIP})}
	m := b.manager(t)
	sb := createConf(t, m, func(o *CreateOptions) { o.Ports = []string{"8080"} })
	is.NoErr(m.WriteFile(ctx, sb.ID, "/tmp/www/index.html", []byte("from the pod"), 0o644))
	_, err := m.Exec(ctx, sb.ID, ExecOptions{Command: "httpd", Args: []string{"-f", "-p", "8080", "-h", "/tmp/www"}})
	is.NoErr(err)
	n, err := m.Network(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(n.Via, NetworkViaPodIP)
	is.Equal(n.Ports["8080/tcp"], "8080")
	is.True(strings.HasPrefix(n.HostIP, "10.244.")) // the test cluster's pod network
	url := "http://" + net.JoinHostPort(n.HostIP, n.Ports["8080/tcp"]) + "/index.html"
	var body string
	waitFor(t, 30*time.Second, "httpd to answer", func() bool {
		res, err := (&http.Client{Timeout: 2 * time.Second}).Get(url)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		body = string(b)
		return res.StatusCode == http.StatusOK
	})
	is.Equal(body, "from the pod")
}

// TestKubernetesStats: the agent reads the sandbox's cgroup.
func TestKubernetesStats(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m := kubeBackend(t).manager(t)
	sb := createConf(t, m, func(o *CreateOptions) { o.Resources = Resources{MemoryMB: 300, CPUs: 1} })
	st, err := m.Stats(ctx, sb.ID)
	is.NoErr(err)
	is.True(st.MemoryUsage > 0)
	is.Equal(st.MemoryLimit, uint64(300<<20)) // the Pod's limit

	// The stream: the agent's samples, a second apart, until the caller
	// stops (nil) or the sandbox stops (ErrConflict).
	var got []Stats
	sctx, cancel := context.WithCancel(ctx)
	err = m.StatsStream(sctx, sb.ID, func(s Stats) error {
		got = append(got, s)
		if len(got) == 2 {
			cancel()
		}
		return nil
	})
	cancel()
	is.NoErr(err)
	is.Equal(len(got), 2)
	is.True(got[1].Time.Sub(got[0].Time) > 500*time.Millisecond)
	is.Equal(got[1].MemoryLimit, uint64(300<<20))
	stopped := make(chan error, 1)
	go func() { stopped <- m.StatsStream(ctx, sb.ID, func(Stats) error { return nil }) }()
	time.Sleep(1500 * time.Millisecond)
	_, err = m.Stop(ctx, sb.ID)
	is.NoErr(err)
	select {
	case err := <-stopped:
		is.True(errors.Is(err, ErrConflict)) // the sandbox stopped
	case <-time.After(30 * time.Second):
		t.Fatal("the stream did not end when the sandbox stopped")
	}
}

// TestKubernetesAgentFromNode: with AgentHostDir the agent is mounted from
// the node's directory (InstallAgent wrote it; the test cluster's node is
// this machine) and the Pod has no init container.
func TestKubernetesAgentFromNode(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	b := kubeBackend(t)
	dir := t.TempDir()
	prog, err := InstallAgent(dir, "amd64")
	is.NoErr(err)
	again, err := InstallAgent(dir, "amd64")
	is.NoErr(err)
	is.Equal(again, prog) // idempotent
	b.opts = []Option{WithKubernetes(KubernetesConfig{Kubeconfig: kubeenv.Kubeconfig(t), PullPolicy: "Never", AgentHostDir: dir})}
	m := b.manager(t)
	sb := createConf(t, m)
	r, err := m.Run(ctx, sb.ID, ExecOptions{Command: "echo", Args: []string{"from the node's agent"}})
	is.NoErr(err)
	is.Equal(string(r.Stdout), "from the node's agent\n")
	_, err = New(ctx, WithKubernetes(KubernetesConfig{Kubeconfig: "x", AgentHostDir: "relative/dir"}))
	is.True(errors.Is(err, ErrInvalid))
}

// TestKubernetesAgentDaemonSet: the DaemonSet of AgentDaemonSet puts the
// agent into a node directory (the test cluster's node is this machine) and
// is Ready once it is there; a Manager using that directory runs sandboxes
// without an init container.
func TestKubernetesAgentDaemonSet(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := kubeBackend(t)
	dir := t.TempDir()
	kubeconfig := kubeenv.Kubeconfig(t)
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	is.NoErr(err)
	cs, err := kubernetes.NewForConfig(rc)
	is.NoErr(err)
	ns := "opensbx-ds-" + strings.ToLower(newCommandID()[4:14])
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{testRunLabel: testRun}}}, metav1.CreateOptions{})
	is.NoErr(err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete namespace %s: %v", ns, err)
		}
	})

	ds, err := AgentDaemonSet(AgentDaemonSetOptions{Namespace: ns, HostDir: dir, Arch: "amd64", PullPolicy: "Never"})
	is.NoErr(err)
	_, err = cs.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{})
	is.NoErr(err)
	for {
		got, err := cs.AppsV1().DaemonSets(ns).Get(ctx, ds.Name, metav1.GetOptions{})
		is.NoErr(err)
		if got.Status.DesiredNumberScheduled > 0 && got.Status.NumberReady == got.Status.DesiredNumberScheduled {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the DaemonSet was not ready: %+v", got.Status)
		case <-time.After(200 * time.Millisecond):
		}
	}
	matches, err := filepath.Glob(filepath.Join(dir, "opensbx-agent-amd64-*", "opensbx-agent"))
	is.NoErr(err)
	is.Equal(len(matches), 1) // installed where AgentHostDir looks
	want, err := InstallAgent(t.TempDir(), "amd64")
	is.NoErr(err)
	is.Equal(filepath.Base(filepath.Dir(matches[0])), filepath.Base(filepath.Dir(want))) // this Manager's agent version

	b.opts = []Option{WithKubernetes(KubernetesConfig{Kubeconfig: kubeconfig, PullPolicy: "Never", AgentHostDir: dir})}
	m := b.manager(t)
	sb := createConf(t, m)
	r, err := m.Run(ctx, sb.ID, ExecOptions{Command: "echo", Args: []string{"installed by the DaemonSet"}})
	is.NoErr(err)
	is.Equal(string(r.Stdout), "installed by the DaemonSet\n")

	// Without AgentHostDir, a Manager whose namespace holds the ready
	// DaemonSet mounts the agent from the nodes all the same, and one
	// told to use an init container does.
	podOf := func(m *Manager) *corev1.Pod {
		t.Helper()
		res, err := m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage})
		is.NoErr(err)
		t.Cleanup(func() { m.Delete(context.Background(), res.ID) })
		r, err := m.Run(ctx, res.ID, ExecOptions{Command: "echo", Args: []string{"ok"}})
		is.NoErr(err)
		is.Equal(string(r.Stdout), "ok\n")
		pod, err := cs.CoreV1().Pods(ns).Get(ctx, "sbx-"+res.ID[:48], metav1.GetOptions{})
		is.NoErr(err)
		return pod
	}
	found := KubernetesConfig{Kubeconfig: kubeconfig, PullPolicy: "Never", Namespace: ns}
	b.opts = []Option{WithKubernetes(found)}
	pod := podOf(b.manager(t))
	is.Equal(len(pod.Spec.InitContainers), 0) // nothing installed: the agent comes from the node
	var hostPath string
	for _, v := range pod.Spec.Volumes {
		if v.HostPath != nil {
			hostPath = v.HostPath.Path
		}
	}
	is.Equal(hostPath, filepath.Dir(matches[0])) // the DaemonSet's directory of this agent version

	initc := KubernetesConfig{Kubeconfig: kubeconfig, PullPolicy: "Never", Namespace: ns, AgentInitContainer: true}
	b.opts = []Option{WithKubernetes(initc)}
	pod = podOf(b.manager(t))
	is.Equal(len(pod.Spec.InitContainers), 1) // told not to look
}

// TestAgentDaemonSetIsFound needs no cluster: the DaemonSet AgentDaemonSet
// makes, once ready, is the one a Manager without AgentHostDir finds for
// its agent version (and only for it), at the directory it was given.
func TestAgentDaemonSetIsFound(t *testing.T) {
	is := is.New(t)
	ds, err := AgentDaemonSet(AgentDaemonSetOptions{Namespace: "sbx", HostDir: "/var/lib/opensbx/agent", Arch: "amd64"})
	is.NoErr(err)
	version, err := bin.Version("amd64")
	is.NoErr(err)
	vol := agentVolumeName("amd64", version)
	is.Equal(kube.AgentSetDir(ds, vol), "") // not ready yet
	ds.Status = appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, NumberReady: 2, UpdatedNumberScheduled: 2}
	is.Equal(kube.AgentSetDir(ds, vol), "/var/lib/opensbx/agent")
	is.Equal(kube.AgentSetDir(ds, agentVolumeName("arm64", version)), "")            // another architecture's
	is.Equal(kube.AgentSetDir(ds, agentVolumeName("amd64", "0000000000000000")), "") // another version's
	sel, err := labels.Parse(kube.AgentSetSelector)
	is.NoErr(err)
	is.True(sel.Matches(labels.Set(ds.Labels))) // the lookup's selector lists it
}

// TestAgentDaemonSetRefusesBadOptions needs no cluster: the options are
// checked before anything is made.
func TestAgentDaemonSetRefusesBadOptions(t *testing.T) {
	for _, tc := range []struct {
		o    AgentDaemonSetOptions
		want error
	}{
		{AgentDaemonSetOptions{}, ErrInvalid},
		{AgentDaemonSetOptions{HostDir: "relative"}, ErrInvalid},
		{AgentDaemonSetOptions{HostDir: "/"}, ErrInvalid},
		{AgentDaemonSetOptions{HostDir: "/a/../b"}, ErrInvalid},
		{AgentDaemonSetOptions{HostDir: "/x", Arch: "sparc"}, ErrUnsupported},
		{AgentDaemonSetOptions{HostDir: "/x", PullPolicy: "Sometimes"}, ErrInvalid},
	} {
		if _, err := AgentDaemonSet(tc.o); !errors.Is(err, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.o, err, tc.want)
		}
	}
	ds, err := AgentDaemonSet(AgentDaemonSetOptions{HostDir: "/var/lib/opensbx/agent", Arch: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Namespace != "default" || ds.Spec.Template.Spec.NodeSelector["kubernetes.io/arch"] != "arm64" || ds.Spec.Template.Spec.Volumes[0].HostPath.Path != "/var/lib/opensbx/agent" {
		t.Fatalf("daemonset %+v", ds)
	}
}

// TestKubernetesPoolResize: a pool hit asking for other limits than the
// template's gets them in place (the Pod's resize subresource); the
// sandbox's cgroup shows the new memory limit.
func TestKubernetesPoolResize(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m := kubeBackend(t).manager(t, WithPool(PoolTemplate{Image: testenv.BusyboxImage, Size: 1}))
	waitFor(t, 2*time.Minute, "the pool to fill", func() bool { return m.Pool()[0].Ready == 1 })
	res, err := m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, Resources: Resources{MemoryMB: 300, CPUs: 0.5}})
	is.NoErr(err)
	is.Equal(m.Pool()[0].Hits, uint64(1)) // from the pool
	is.Equal(res.Resources.MemoryMB, int64(300))
	waitFor(t, time.Minute, "the new memory limit in the sandbox's cgroup", func() bool {
		r, err := m.Run(ctx, res.ID, ExecOptions{Command: "cat", Args: []string{"/sys/fs/cgroup/memory/memory.limit_in_bytes"}})
		return err == nil && strings.TrimSpace(string(r.Stdout)) == "314572800"
	})
}

// TestKubernetesPortViaAgent: a Manager with a kubeconfig (not in the
// cluster) reaches ports through the agent's session.
func TestKubernetesPortViaAgent(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx := context.Background()
	m := kubeBackend(t).manager(t)
	sb := createConf(t, m, func(o *CreateOptions) { o.Ports = []string{"8080"} })
	n, err := m.Network(ctx, sb.ID)
	is.NoErr(err)
	is.Equal(n.Via, NetworkViaAgent)
	is.Equal(n.HostIP, "")
	is.Equal(n.Ports["8080/tcp"], "8080")
	dialPortCase(t, m, sb.ID)
}

func TestWithKubernetesRejectsBadValues(t *testing.T) {
	for name, c := range map[string]KubernetesConfig{
		"pull policy":       {PullPolicy: "Sometimes"},
		"namespace":         {Namespace: "Not_A_Label"},
		"namespace dash":    {Namespace: "-x"},
		"ports":             {Ports: "host"},
		"relative host dir": {AgentHostDir: "agent"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(context.Background(), WithKubernetes(c))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%+v: %v, want ErrInvalid", c, err)
			}
		})
	}
}

// TestKubernetesNetworkPolicy: the Manager keeps the namespace's isolation
// policy; a sandbox without a network or with an egress allow-list gets a
// policy of its own, in place before its Pod and removed with it. (The test
// cluster's bridge plugin does not enforce policies, so this reads back the
// policies made; what a policy means is the network plugin's.)
func TestKubernetesNetworkPolicy(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := kubeBackend(t)
	m := b.manager(t)
	rc, err := clientcmd.BuildConfigFromFlags("", kubeenv.Kubeconfig(t))
	is.NoErr(err)
	cs, err := kubernetes.NewForConfig(rc)
	is.NoErr(err)
	policies := cs.NetworkingV1().NetworkPolicies("default")

	iso := m.Isolation()
	is.Equal(iso.Network, kube.IsolationPolicy)
	is.True(iso.HostRules)
	np, err := policies.Get(ctx, kube.IsolationPolicy, metav1.GetOptions{})
	is.NoErr(err)
	is.Equal(np.Spec.PodSelector.MatchLabels["opensbx.org/sandbox"], "true")
	is.Equal(len(np.Spec.Ingress), 1)
	is.Equal(len(np.Spec.Egress), 1)

	own := func(id string) *networkingv1.NetworkPolicy {
		t.Helper()
		pod, err := cs.CoreV1().Pods("default").Get(ctx, "sbx-"+id[:48], metav1.GetOptions{})
		is.NoErr(err)
		is.Equal(pod.Labels["opensbx.org/own-policy"], "true") // so the namespace's policy leaves it out
		np, err := policies.Get(ctx, pod.Name, metav1.GetOptions{})
		is.NoErr(err)
		is.Equal(np.Spec.PodSelector.MatchLabels, map[string]string{"opensbx.org/pod": pod.Name})
		is.Equal(len(np.OwnerReferences), 1)
		is.Equal(np.OwnerReferences[0].UID, pod.UID) // goes with the pod
		return np
	}
	gone := func(id string) {
		t.Helper()
		for {
			_, err := policies.Get(ctx, "sbx-"+id[:48], metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return
			}
			is.NoErr(err)
			select {
			case <-ctx.Done():
				t.Fatalf("the policy of %s outlived its sandbox", id)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}

	closed := createConf(t, m, func(o *CreateOptions) { o.Network = "none" })
	np = own(closed.ID)
	is.Equal(len(np.Spec.PolicyTypes), 2)
	is.Equal(len(np.Spec.Ingress)+len(np.Spec.Egress), 0) // nothing in, nothing out
	r, err := m.Run(ctx, closed.ID, ExecOptions{Command: "echo", Args: []string{"served"}})
	is.NoErr(err)
	is.Equal(string(r.Stdout), "served\n") // the agent's channel is the exec stream, not the pod network

	allow := createConf(t, m, func(o *CreateOptions) { o.Egress = []string{"10.1.2.3/24", "169.254.169.254"} })
	np = own(allow.ID)
	is.Equal(len(np.Spec.Egress), 1)
	is.Equal(len(np.Spec.Egress[0].To), 1) // the metadata address is not allowed
	is.Equal(np.Spec.Egress[0].To[0].IPBlock.CIDR, "10.1.2.0/24")
	is.Equal(len(np.Spec.Ingress), 1)

	plain := createConf(t, m)
	_, err = policies.Get(ctx, "sbx-"+plain.ID[:48], metav1.GetOptions{})
	is.True(apierrors.IsNotFound(err)) // the namespace's policy covers it

	_, err = m.Create(ctx, CreateOptions{Image: testenv.BusyboxImage, Egress: []string{"2001:db8::/32"}})
	is.True(errors.Is(err, ErrInvalid))

	is.NoErr(m.Delete(ctx, allow.ID))
	gone(allow.ID)
	is.NoErr(m.Delete(ctx, closed.ID))
	gone(closed.ID)
}
