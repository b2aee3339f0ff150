// Command opensbx-kube-bench measures a Manager on the Kubernetes backend
// next to client-go doing the same work on the same cluster, and prints one
// table: for each row the p50, p95 and max of both sides and the ratio of
// the p50s (manager / raw).
//
//	go run ./internal/kubeenv/cmd/kubecluster up      # the test cluster, or any cluster
//	go run ./cmd/opensbx-kube-bench -kubeconfig /var/lib/opensbx-kube/admin.kubeconfig
//
// Rows:
//
//	create       cold Create (returns once the Pod's container runs; its agent comes
//	             from an init container) vs client-go creating an equivalent Pod
//	             (no init container) and watching it until it runs
//	create-node  the same with the agent mounted from the node: the row applies the agent
//	             DaemonSet (opensbx.AgentDaemonSet, into a temporary directory of this
//	             machine, the test cluster's node), waits until it is ready, and a Manager
//	             with the default configuration finds it: no init container
//	pool-hit     Create served by the warm pool vs the same cold client-go Pod
//	exec         Run("true") over the agent's open session vs a client-go pod exec of true;
//	             each side's iterations in a row, after one untimed first call
//	pool-batch   -batch sandboxes created at once from a ready pool of as many, each until
//	             its first command answered, vs client-go creating as many Pods and
//	             waiting until all run
//
// Flags: -kubeconfig PATH, -namespace NS (Kubernetes, default "default"), -n N
// iterations of the latency rows (default 10), -batch N (default 50), -image
// REF (default the busybox test image), -import (load the test image and the
// agent image into the kubeenv test cluster first; default true), -rows LIST
// (a comma list of the rows to run; default all).
//
// Everything it makes carries the label opensbx-bench.run=<id> (raw Pods)
// or is in the Opensbx namespace kbench-<id> (the Managers' Pods); it
// removes all of it when it ends, also on failure and on SIGINT. The
// command reports; it never judges a figure.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/docker/docker/client"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/internal/kubeenv/cluster"
	"github.com/opensbx/opensbx/internal/testenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "opensbx-kube-bench:", err)
		os.Exit(1)
	}
}

type bench struct {
	cs      kubernetes.Interface
	rc      *rest.Config
	kcfg    opensbx.KubernetesConfig
	ns      string // Kubernetes namespace
	runID   string
	image   string
	n       int
	batch   int
	rawSeq  int
	created []string // raw pod names
	mu      sync.Mutex
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("opensbx-kube-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "the cluster's kubeconfig")
	ns := fs.String("namespace", "default", "Kubernetes namespace")
	n := fs.Int("n", 10, "iterations of the latency rows")
	batch := fs.Int("batch", 50, "sandboxes of the pool-batch row")
	image := fs.String("image", testenv.BusyboxImage, "sandbox image (present on the nodes)")
	doImport := fs.Bool("import", true, "load the image and the agent image into the kubeenv test cluster first")
	rowList := fs.String("rows", "", "comma-separated rows to run (create, create-node, pool-hit, exec, pool-batch); default all")
	if err := fs.Parse(args); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, r := range strings.Split(*rowList, ",") {
		switch r = strings.TrimSpace(r); r {
		case "":
		case "create", "create-node", "pool-hit", "exec", "pool-batch":
			want[r] = true
		default:
			return fmt.Errorf("unknown row %q (want create, create-node, pool-hit, exec or pool-batch)", r)
		}
	}
	runs := func(name string) bool { return len(want) == 0 || want[name] }
	if *kubeconfig == "" || *n < 1 || *batch < 1 {
		return errors.New("need -kubeconfig, -n >= 1, -batch >= 1")
	}
	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 200, 400
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	var b [6]byte
	rand.Read(b[:])
	bn := &bench{cs: cs, rc: rc, ns: *ns, runID: hex.EncodeToString(b[:]), image: *image, n: *n, batch: *batch,
		kcfg: opensbx.KubernetesConfig{Kubeconfig: *kubeconfig, Namespace: *ns, PullPolicy: "Never", AgentInitContainer: true}}
	if *doImport {
		if err := importImages(ctx, *image); err != nil {
			return fmt.Errorf("import: %w", err)
		}
	}
	defer bn.cleanup()
	type row struct {
		name     string
		mgr, raw []time.Duration
	}
	var rows []row
	add := func(name string, mgr, raw []time.Duration, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rows = append(rows, row{name, mgr, raw})
		fmt.Fprintf(stderr, "%s done\n", name)
		return nil
	}
	if runs("create") {
		mgr, raw, err := bn.createRow(ctx)
		if err := add("create", mgr, raw, err); err != nil {
			return err
		}
	}
	if runs("create-node") {
		dir, err := os.MkdirTemp("", "opensbx-kube-bench-agent-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		undo, err := bn.agentDaemonSet(ctx, dir)
		if err != nil {
			return fmt.Errorf("create-node: %w", err)
		}
		found := bn.kcfg
		found.AgentInitContainer = false // the default: the Manager finds the DaemonSet
		mgr, raw, err := bn.createRow(ctx, opensbx.WithKubernetes(found))
		undo()
		if err := add("create-node", mgr, raw, err); err != nil {
			return err
		}
	}
	if runs("pool-hit") {
		mgr, raw, err := bn.poolHitRow(ctx)
		if err := add("pool-hit", mgr, raw, err); err != nil {
			return err
		}
	}
	if runs("exec") {
		mgr, raw, err := bn.execRow(ctx)
		if err := add("exec", mgr, raw, err); err != nil {
			return err
		}
	}
	if runs("pool-batch") {
		mgr, raw, err := bn.poolBatchRow(ctx)
		if err := add(fmt.Sprintf("pool-batch (%d)", bn.batch), mgr, raw, err); err != nil {
			return err
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "row\tmanager p50\tp95\tmax\tclient-go p50\tp95\tmax\tratio\t")
	for _, r := range rows {
		m50, m95, mmax := stats(r.mgr)
		r50, r95, rmax := stats(r.raw)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t\n", r.name, ms(m50), ms(m95), ms(mmax), ms(r50), ms(r95), ms(rmax), float64(m50)/float64(r50))
	}
	return tw.Flush()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func stats(ds []time.Duration) (p50, p95, maxd time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.5), at(0.95), s[len(s)-1]
}

// importImages loads the agent image into Docker and both images into the
// kubeenv test cluster's containerd.
func importImages(ctx context.Context, image string) error {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	var buf bytes.Buffer
	if err := opensbx.WriteAgentImage(&buf, "amd64", ""); err != nil {
		return err
	}
	res, err := cli.ImageLoad(ctx, &buf, client.ImageLoadWithQuiet(true))
	if err != nil {
		return err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	ref, err := opensbx.AgentImageRef("amd64")
	if err != nil {
		return err
	}
	l, err := cluster.DefaultLayout()
	if err != nil {
		return err
	}
	return (&cluster.Cluster{Layout: l}).Import(ctx, []string{image, ref})
}

// manager makes a Manager of the run's namespace with extra options.
func (b *bench) manager(ctx context.Context, extra ...opensbx.Option) (*opensbx.Manager, error) {
	opts := append([]opensbx.Option{opensbx.WithKubernetes(b.kcfg), opensbx.WithNamespace("kbench-" + b.runID)}, extra...)
	return opensbx.New(ctx, opts...)
}

// rawPod creates a Pod like a sandbox's (same image, limits, a sleep as its
// keep-alive) with client-go and watches it until it runs.
func (b *bench) rawPod(ctx context.Context) (string, error) {
	b.mu.Lock()
	b.rawSeq++
	name := fmt.Sprintf("kbench-%s-%d", b.runID, b.rawSeq)
	b.created = append(b.created, name)
	b.mu.Unlock()
	zero, no := int64(0), false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"opensbx-bench.run": b.runID}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever, TerminationGracePeriodSeconds: &zero, AutomountServiceAccountToken: &no, EnableServiceLinks: &no,
			Containers: []corev1.Container{{Name: "sandbox", Image: b.image, Command: []string{"sleep", "3600"}, ImagePullPolicy: corev1.PullNever,
				Resources: corev1.ResourceRequirements{
					Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")},
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
				}}},
		},
	}
	w, err := b.cs.CoreV1().Pods(b.ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		return "", err
	}
	defer w.Stop()
	if _, err := b.cs.CoreV1().Pods(b.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	for ev := range w.ResultChan() {
		if ev.Type == watch.Error {
			return "", fmt.Errorf("watch error")
		}
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			continue
		}
		for _, st := range p.Status.ContainerStatuses {
			if st.State.Running != nil {
				return name, nil
			}
		}
	}
	return "", errors.New("watch ended")
}

func (b *bench) deleteRaw(ctx context.Context, name string) {
	zero := int64(0)
	b.cs.CoreV1().Pods(b.ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
}

func (b *bench) createRow(ctx context.Context, extra ...opensbx.Option) (mgr, raw []time.Duration, err error) {
	m, err := b.manager(ctx, extra...)
	if err != nil {
		return nil, nil, err
	}
	defer m.Close()
	for i := 0; i < b.n; i++ {
		start := time.Now()
		res, err := m.Create(ctx, opensbx.CreateOptions{Image: b.image})
		if err != nil {
			return nil, nil, err
		}
		mgr = append(mgr, time.Since(start))
		m.Delete(ctx, res.ID)
		start = time.Now()
		name, err := b.rawPod(ctx)
		if err != nil {
			return nil, nil, err
		}
		raw = append(raw, time.Since(start))
		b.deleteRaw(ctx, name)
	}
	return mgr, raw, nil
}

func (b *bench) poolHitRow(ctx context.Context) (mgr, raw []time.Duration, err error) {
	m, err := b.manager(ctx, opensbx.WithPool(opensbx.PoolTemplate{Image: b.image, Size: 2}))
	if err != nil {
		return nil, nil, err
	}
	defer m.Close()
	for i := 0; i < b.n; i++ {
		if err := waitPool(ctx, m, 2); err != nil {
			return nil, nil, err
		}
		start := time.Now()
		res, err := m.Create(ctx, opensbx.CreateOptions{Image: b.image})
		if err != nil {
			return nil, nil, err
		}
		mgr = append(mgr, time.Since(start))
		m.Delete(ctx, res.ID)
		start = time.Now()
		name, err := b.rawPod(ctx)
		if err != nil {
			return nil, nil, err
		}
		raw = append(raw, time.Since(start))
		b.deleteRaw(ctx, name)
	}
	return mgr, raw, nil
}

func waitPool(ctx context.Context, m *opensbx.Manager, ready int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for {
		if st := m.Pool(); len(st) == 1 && st[0].Ready >= ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the pool did not fill: %v", m.Pool())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (b *bench) execRow(ctx context.Context) (mgr, raw []time.Duration, err error) {
	m, err := b.manager(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer m.Close()
	res, err := m.Create(ctx, opensbx.CreateOptions{Image: b.image})
	if err != nil {
		return nil, nil, err
	}
	defer m.Delete(context.WithoutCancel(ctx), res.ID)
	name, err := b.rawPod(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer b.deleteRaw(context.WithoutCancel(ctx), name)
	if _, err := m.Run(ctx, res.ID, opensbx.ExecOptions{Command: "true"}); err != nil { // the session opened
		return nil, nil, err
	}
	// Each side runs its n in a row, not alternating: a client-go exec
	// leaves runc, containerd and the kubelet busy for a while after it
	// returns, so a Run right after one measures that too.
	for i := 0; i < b.n; i++ {
		start := time.Now()
		if _, err := m.Run(ctx, res.ID, opensbx.ExecOptions{Command: "true"}); err != nil {
			return nil, nil, err
		}
		mgr = append(mgr, time.Since(start))
	}
	if err := b.rawExec(ctx, name); err != nil { // its first exec, like the Run above
		return nil, nil, err
	}
	for i := 0; i < b.n; i++ {
		start := time.Now()
		if err := b.rawExec(ctx, name); err != nil {
			return nil, nil, err
		}
		raw = append(raw, time.Since(start))
	}
	return mgr, raw, nil
}

// rawExec runs true in pod name over a client-go pod exec stream.
func (b *bench) rawExec(ctx context.Context, name string) error {
	req := b.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(b.ns).Name(name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: "sandbox", Command: []string{"true"}, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ex, err := remotecommand.NewWebSocketExecutor(b.rc, "GET", req.URL().String())
	if err != nil {
		return err
	}
	return ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard, Stderr: io.Discard})
}

func (b *bench) poolBatchRow(ctx context.Context) (mgr, raw []time.Duration, err error) {
	m, err := b.manager(ctx, opensbx.WithPool(opensbx.PoolTemplate{Image: b.image, Size: b.batch}))
	if err != nil {
		return nil, nil, err
	}
	defer m.Close()
	if err := waitPool(ctx, m, b.batch); err != nil {
		return nil, nil, err
	}
	ids := make([]string, b.batch)
	errs := make([]error, b.batch)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range b.batch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := m.Create(ctx, opensbx.CreateOptions{Image: b.image})
			if err == nil {
				ids[i] = res.ID
				_, err = m.Run(ctx, res.ID, opensbx.ExecOptions{Command: "true"})
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	mgr = append(mgr, time.Since(start))
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	hits := m.Pool()[0].Hits
	for _, id := range ids {
		m.Delete(ctx, id)
	}
	if hits < uint64(b.batch) {
		return nil, nil, fmt.Errorf("only %d of %d creates came from the pool", hits, b.batch)
	}
	names := make([]string, b.batch)
	start = time.Now()
	for i := range b.batch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			names[i], errs[i] = b.rawPod(ctx)
		}()
	}
	wg.Wait()
	raw = append(raw, time.Since(start))
	return mgr, raw, errors.Join(errs...)
}

// agentDaemonSet applies the agent DaemonSet writing into dir and waits
// until it is ready; undo deletes it. A DaemonSet of that name the
// namespace holds already is used as it is and kept.
func (b *bench) agentDaemonSet(ctx context.Context, dir string) (undo func(), err error) {
	ds, err := opensbx.AgentDaemonSet(opensbx.AgentDaemonSetOptions{Namespace: b.ns, HostDir: dir, Arch: "amd64", PullPolicy: "Never"})
	if err != nil {
		return nil, err
	}
	ds.Labels["opensbx-bench.run"] = b.runID
	undo = func() {}
	switch _, err := b.cs.AppsV1().DaemonSets(b.ns).Create(ctx, ds, metav1.CreateOptions{}); {
	case apierrors.IsAlreadyExists(err):
	case err != nil:
		return nil, err
	default:
		undo = func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			b.cs.AppsV1().DaemonSets(b.ns).Delete(dctx, ds.Name, metav1.DeleteOptions{})
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		got, err := b.cs.AppsV1().DaemonSets(b.ns).Get(wctx, ds.Name, metav1.GetOptions{})
		if err == nil && got.Status.ObservedGeneration >= got.Generation && got.Status.DesiredNumberScheduled > 0 &&
			got.Status.NumberReady == got.Status.DesiredNumberScheduled && got.Status.UpdatedNumberScheduled == got.Status.DesiredNumberScheduled {
			return undo, nil
		}
		select {
		case <-wctx.Done():
			undo()
			return nil, fmt.Errorf("the agent DaemonSet was not ready: %v", wctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// cleanup removes the raw Pods and every sandbox of the run's namespace.
func (b *bench) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	zero := int64(0)
	b.cs.CoreV1().Pods(b.ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{LabelSelector: "opensbx-bench.run=" + b.runID})
	b.cs.AppsV1().DaemonSets(b.ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "opensbx-bench.run=" + b.runID})
	m, err := b.manager(ctx)
	if err != nil {
		return
	}
	defer m.Close()
	list, _ := m.List(ctx)
	for _, sb := range list {
		m.Delete(ctx, sb.ID)
	}
}
