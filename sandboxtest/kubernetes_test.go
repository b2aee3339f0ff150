package sandboxtest_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/internal/kubeenv"
	"github.com/opensbx/opensbx/sandboxtest"
)

// TestKubernetesParallelLeavesNothing: the helpers on a Manager of the
// Kubernetes backend (the test cluster; skipped without one). Parallel
// tests each get a sandbox that answers its first command, and none is left
// once they are done.
func TestKubernetesParallelLeavesNothing(t *testing.T) {
	kubeconfig := kubeenv.Kubeconfig(t)
	is := is.New(t)
	cli := engine(t)
	kubeenv.ImportAgent(t, cli)
	kubeenv.Import(t, busybox)

	ctx := context.Background()
	ns := "sandboxtest-kube-" + strings.ToLower(sandboxtest.NewRunID())
	m, err := opensbx.New(ctx,
		opensbx.WithKubernetes(opensbx.KubernetesConfig{Kubeconfig: kubeconfig, PullPolicy: "Never"}),
		opensbx.WithNamespace(ns), opensbx.WithDeleteOnExpiry(true))
	is.NoErr(err)
	t.Cleanup(func() { m.Close() })

	var mu sync.Mutex
	var ids []string
	t.Run("parallel", func(t *testing.T) {
		for i := range 6 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				sb := sandboxtest.New(t, busybox, sandboxtest.WithManager(m),
					sandboxtest.WaitFor(sandboxtest.ForExec(opensbx.ExecOptions{Command: "true"})))
				out, _, code := sb.Exec("echo", fmt.Sprint("sandbox ", i))
				if code != 0 || out != fmt.Sprintf("sandbox %d\n", i) {
					t.Errorf("exit %d, output %q", code, out)
				}
				mu.Lock()
				ids = append(ids, sb.ID())
				mu.Unlock()
			})
		}
	})
	is.Equal(len(ids), 6)
	list, err := m.List(ctx)
	is.NoErr(err)
	is.Equal(len(list), 0) // every sandbox removed by its test's cleanup
	for _, id := range ids {
		_, err := m.Get(ctx, id)
		is.True(err != nil) // gone
	}
}
