// Package kubeenv is the one place tests get the throw-away Kubernetes
// cluster from.
//
// Tests call [Kubeconfig] for the admin kubeconfig's path (skipped when
// OPENSBX_KUBECONFIG is unset) and [Import] to make local Docker images
// available to pods (which must use imagePullPolicy Never: nothing is
// pulled). The cluster itself is started and stopped outside the tests:
//
//	go run ./internal/kubeenv/cmd/kubecluster up     # prints the kubeconfig path
//	export OPENSBX_KUBECONFIG=/var/lib/opensbx-kube/admin.kubeconfig
//	go test ./...
//	go run ./internal/kubeenv/cmd/kubecluster down
//
// See docs/kubernetes-cluster.md.
package kubeenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/opensbx/opensbx/internal/agent/image"
	"github.com/opensbx/opensbx/internal/kubeenv/cluster"
)

const (
	// EnvKubeconfig names the environment variable that holds the path of
	// the test cluster's kubeconfig.
	EnvKubeconfig = "OPENSBX_KUBECONFIG"

	// DefaultKubeconfig is where `kubecluster up` writes the admin
	// kubeconfig.
	DefaultKubeconfig = "/var/lib/opensbx-kube/admin.kubeconfig"

	// ContainerdSocket is the cluster's own containerd (namespace k8s.io).
	ContainerdSocket = "/run/opensbx-kube/containerd.sock"

	// UpCommand is the command that starts the cluster.
	UpCommand = "go run ./internal/kubeenv/cmd/kubecluster up"
)

// skipMessage is what Kubeconfig skips with when no cluster is configured.
func skipMessage() string {
	return EnvKubeconfig + " is not set: start the test cluster with `" + UpCommand +
		"` (as root) and set " + EnvKubeconfig + "=" + DefaultKubeconfig
}

// Kubeconfig returns the path of the test cluster's kubeconfig from
// OPENSBX_KUBECONFIG. When it is unset the test is skipped, saying how to
// start the cluster; when it names no readable file the test fails.
func Kubeconfig(t testing.TB) string {
	t.Helper()
	path, err := kubeconfigFrom(os.Getenv)
	if errors.Is(err, errUnset) {
		t.Skip(skipMessage())
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// errUnset means OPENSBX_KUBECONFIG is unset or empty.
var errUnset = errors.New(EnvKubeconfig + " is not set")

// kubeconfigFrom is Kubeconfig's logic with the environment injected.
func kubeconfigFrom(getenv func(string) string) (string, error) {
	path := getenv(EnvKubeconfig)
	if path == "" {
		return "", errUnset
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%s=%s: %w (is the cluster up? %s)", EnvKubeconfig, path, err, UpCommand)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s=%s: not a regular file", EnvKubeconfig, path)
	}
	return path, nil
}

// Import copies local Docker images into the test cluster's containerd (as
// `kubecluster import` does), failing the test on error. It needs root and
// a cluster that is up; call it after Kubeconfig.
func Import(t testing.TB, images ...string) {
	t.Helper()
	l, err := cluster.DefaultLayout()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := &cluster.Cluster{Layout: l}
	if err := c.Import(ctx, images); err != nil {
		t.Fatalf("import %v into the test cluster: %v", images, err)
	}
}

// ImportAgent puts the agent image of this build (amd64) into the test
// cluster, loading it into the Docker engine cli first (from where Import
// takes it), and returns its reference.
func ImportAgent(t testing.TB, cli *client.Client) string {
	t.Helper()
	ref, err := image.Ref("amd64")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := image.WriteArchive(&buf, "amd64", ""); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := cli.ImageLoad(ctx, &buf, client.ImageLoadWithQuiet(true))
	if err != nil {
		t.Fatalf("load the agent image: %v", err)
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("load the agent image: %v", err)
	}
	Import(t, ref)
	return ref
}
