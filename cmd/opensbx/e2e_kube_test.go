package main

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/internal/kubeenv"
	"github.com/opensbx/opensbx/internal/testenv"
)

// TestEndToEndKubernetes runs the built server with BACKEND=kubernetes
// against the test cluster (skipped without one) and drives a sandbox over
// HTTP: create, the network mode, a command, files, stop and start, what a
// cluster cannot do (422), stats, delete, and a clean SIGTERM.
func TestEndToEndKubernetes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server")
	}
	is := is.New(t)
	kubeconfig := kubeenv.Kubeconfig(t)
	cli := testenv.Engine(t)
	testenv.Images(t, cli)
	kubeenv.ImportAgent(t, cli)
	kubeenv.Import(t, testenv.BusyboxImage)

	dir := t.TempDir()
	bin := filepath.Join(dir, "opensbx")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ns := "e2e-kube-" + randomHex(4)
	t.Cleanup(func() { removeKubeNamespace(t, kubeconfig, ns) })
	key := "key-" + randomHex(8)
	env := append(os.Environ(),
		"BACKEND=kubernetes", "KUBECONFIG="+kubeconfig, "K8S_PULL_POLICY=Never",
		"ADDR=127.0.0.1:0", "PROXY_ADDR=127.0.0.1:0", "STATE_DIR="+filepath.Join(dir, "state"), "NAMESPACE="+ns,
		"API_KEY="+key, "LOG_FORMAT=json", "DEFAULT_TIMEOUT=10m", "SHUTDOWN_TIMEOUT=5s")
	srv := startServer(t, bin, env, key)

	sb := srv.call("POST", "/v1/sandboxes", map[string]any{"image": testenv.BusyboxImage, "timeout": 900, "ports": []string{"8080"}}, http.StatusCreated)
	id := sb["id"].(string)
	got := srv.call("GET", "/v1/sandboxes/"+id, nil, http.StatusOK)
	is.Equal(got["state"], "running")
	netw := srv.call("GET", "/v1/sandboxes/"+id+"/network", nil, http.StatusOK)
	is.Equal(netw["via"], "agent") // a server with a kubeconfig reaches ports through the agent

	cmd := srv.call("POST", "/v1/sandboxes/"+id+"/cmd", map[string]any{"command": "sh", "args": []string{"-c", "echo out; echo err >&2; exit 3"}}, http.StatusOK)["command"].(map[string]any)
	cmdID := cmd["id"].(string)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c := srv.call("GET", "/v1/sandboxes/"+id+"/cmd/"+cmdID, nil, http.StatusOK)["command"].(map[string]any)
		if c["state"] != "running" {
			is.Equal(c["state"], "finished")
			is.Equal(c["exit_code"], 3.0)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the command did not finish")
		}
		time.Sleep(50 * time.Millisecond)
	}
	logs := srv.call("GET", "/v1/sandboxes/"+id+"/cmd/"+cmdID+"/logs", nil, http.StatusOK)
	is.Equal(logs["stdout"], "out\n")
	is.Equal(logs["stderr"], "err\n")

	srv.call("PUT", "/v1/sandboxes/"+id+"/files?path="+url.QueryEscape("/tmp/kept"), map[string]any{"content": "kept"}, http.StatusOK)
	is.Equal(srv.call("GET", "/v1/sandboxes/"+id+"/files?path=/tmp/kept", nil, http.StatusOK)["content"], "kept")

	is.Equal(srv.call("POST", "/v1/sandboxes/"+id+"/stop", nil, http.StatusOK)["status"], "stopped")
	is.Equal(srv.call("GET", "/v1/sandboxes/"+id, nil, http.StatusOK)["state"], "stopped")
	srv.call("POST", "/v1/sandboxes/"+id+"/cmd", map[string]any{"command": "true"}, http.StatusConflict)
	is.Equal(srv.call("POST", "/v1/sandboxes/"+id+"/start", nil, http.StatusOK)["state"], "running")
	is.Equal(srv.call("GET", "/v1/sandboxes/"+id+"/files?path=/tmp/kept", nil, http.StatusOK)["content"], "kept") // files outlive a stop

	e := srv.call("POST", "/v1/sandboxes/"+id+"/pause", nil, http.StatusUnprocessableEntity)
	is.Equal(e["code"], "UNSUPPORTED")
	e = srv.call("GET", "/v1/images", nil, http.StatusUnprocessableEntity)
	is.Equal(e["code"], "UNSUPPORTED")
	st := srv.call("GET", "/v1/sandboxes/"+id+"/stats", nil, http.StatusOK)
	is.True(st["memory"].(map[string]any)["usage"].(float64) > 0)

	srv.call("DELETE", "/v1/sandboxes/"+id, nil, http.StatusNoContent)
	srv.call("GET", "/v1/sandboxes/"+id, nil, http.StatusNotFound)
	is.Equal(len(srv.call("GET", "/v1/sandboxes", nil, http.StatusOK)["sandboxes"].([]any)), 0)
	srv.stop()
}

// removeKubeNamespace deletes what is left of Opensbx namespace ns on the
// test cluster (a test that failed half-way).
func removeKubeNamespace(t *testing.T, kubeconfig, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := opensbx.New(ctx, opensbx.WithKubernetes(opensbx.KubernetesConfig{Kubeconfig: kubeconfig, PullPolicy: "Never"}), opensbx.WithNamespace(ns))
	if err != nil {
		t.Errorf("cleanup %s: %v", ns, err)
		return
	}
	defer m.Close()
	list, err := m.List(ctx)
	if err != nil {
		t.Errorf("cleanup %s: %v", ns, err)
		return
	}
	for _, sb := range list {
		if err := m.Delete(ctx, sb.ID); err != nil {
			t.Errorf("cleanup %s: delete %s: %v", ns, sb.ID, err)
		}
	}
}
