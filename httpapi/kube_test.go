package httpapi_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"github.com/matryer/is"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/internal/kubeenv"
	"github.com/opensbx/opensbx/internal/testenv"
	"github.com/opensbx/opensbx/preview"
)

// TestKubernetesHTTP drives the API over a Manager on the Kubernetes
// backend (the test cluster): the same routes work, and what a cluster
// cannot do answers 422 UNSUPPORTED.
func TestKubernetesHTTP(t *testing.T) {
	is := is.New(t)
	m := kubeHTTPManager(t, "")
	a := newAPI(t, m)
	id := a.createBusybox(map[string]any{"ports": []string{"8080"}})["id"].(string)

	for _, op := range []string{"pause", "resume"} {
		want(t, a.call("POST", "/v1/sandboxes/"+id+"/"+op, nil), http.StatusUnprocessableEntity, "UNSUPPORTED")
	}
	for _, step := range []struct{ op, state string }{{"stop", "stopped"}, {"start", "running"}, {"restart", "running"}} {
		r := a.call("POST", "/v1/sandboxes/"+id+"/"+step.op, nil)
		want(t, r, 200, "")
		is.Equal(r.json(t)["state"], step.state) // the Pod runs on; its agent stops and starts the sandbox
	}
	want(t, a.call("POST", "/v1/sandboxes/"+id+"/start", nil), http.StatusConflict, "CONFLICT")
	want(t, a.call("GET", "/v1/images", nil), http.StatusUnprocessableEntity, "UNSUPPORTED")
	want(t, a.call("GET", "/v1/images/"+testenv.BusyboxImage, nil), http.StatusUnprocessableEntity, "UNSUPPORTED")
	want(t, a.call("POST", "/v1/sandboxes", map[string]any{"image": testenv.BusyboxImage, "keep_image_command": true}), http.StatusUnprocessableEntity, "UNSUPPORTED")

	c := a.run(id, map[string]any{"command": "sh", "args": []string{"-c", "echo hi from $(hostname)"}})
	r := a.call("GET", cmdURL(id, "/", c["id"].(string), "?wait=true"), nil)
	want(t, r, 200, "")
	r = a.call("GET", cmdURL(id, "/", c["id"].(string), "/logs"), nil)
	want(t, r, 200, "")
	is.True(bytes.HasPrefix([]byte(r.json(t)["stdout"].(string)), []byte("hi from sbx-"))) // the Pod's name

	want(t, a.call("PUT", filesURL(id, "/tmp/k.txt"), map[string]any{"content": "on a pod"}), 200, "")
	r = a.call("GET", filesURL(id, "/tmp/k.txt"), nil)
	want(t, r, 200, "")
	is.Equal(r.json(t)["content"], "on a pod")

	r = a.call("GET", "/v1/sandboxes/"+id+"/network", nil)
	want(t, r, 200, "")
	netw := r.json(t)
	is.Equal(netw["via"], "agent") // a Manager outside the cluster
	is.Equal(netw["ports_map"], map[string]any{"8080/tcp": "8080"})

	// The preview proxy reaches the port through the agent.
	want(t, a.call("PUT", filesURL(id, "/tmp/www/index.html"), map[string]any{"content": "previewed"}), 200, "")
	a.run(id, map[string]any{"command": "httpd", "args": []string{"-f", "-p", "8080", "-h", "/tmp/www"}})
	name := a.call("GET", "/v1/sandboxes/"+id, nil).json(t)["name"].(string)
	is.Equal(previewGet(t, m, name, "/index.html"), "previewed")

	r = a.call("GET", "/v1/sandboxes/"+id+"/stats", nil)
	want(t, r, 200, "")
	want(t, a.call("DELETE", "/v1/sandboxes/"+id, nil), http.StatusNoContent, "")
	want(t, a.call("GET", "/v1/sandboxes/"+id, nil), http.StatusNotFound, "NOT_FOUND")
}

// TestKubernetesPreviewPodIP: with Ports "pod-ip" (a Manager in the
// cluster; this machine is the test cluster's node, so it reaches Pod IPs)
// /network says so and the preview proxy dials the Pod's address.
func TestKubernetesPreviewPodIP(t *testing.T) {
	is := is.New(t)
	m := kubeHTTPManager(t, opensbx.NetworkViaPodIP)
	a := newAPI(t, m)
	id := a.createBusybox(map[string]any{"ports": []string{"8080"}})["id"].(string)
	r := a.call("GET", "/v1/sandboxes/"+id+"/network", nil)
	want(t, r, 200, "")
	netw := r.json(t)
	is.Equal(netw["via"], opensbx.NetworkViaPodIP)
	is.True(netw["host_ip"] != "") // the Pod's address
	want(t, a.call("PUT", filesURL(id, "/tmp/www/index.html"), map[string]any{"content": "on the pod's address"}), 200, "")
	a.run(id, map[string]any{"command": "httpd", "args": []string{"-f", "-p", "8080", "-h", "/tmp/www"}})
	name := a.call("GET", "/v1/sandboxes/"+id, nil).json(t)["name"].(string)
	is.Equal(previewGet(t, m, name, "/index.html"), "on the pod's address")
}

// kubeHTTPManager is a Manager on the test cluster (skipped without one)
// reaching ports as ports says ("" for the default), with the test images
// and the agent image in the cluster; its sandboxes go when the test ends.
func kubeHTTPManager(t *testing.T, ports string) *opensbx.Manager {
	t.Helper()
	kubeconfig := kubeenv.Kubeconfig(t)
	is := is.New(t)
	ctx := context.Background()
	cli := testenv.Engine(t)
	testenv.Images(t, cli)
	var buf bytes.Buffer
	is.NoErr(opensbx.WriteAgentImage(&buf, "amd64", ""))
	res, err := cli.ImageLoad(ctx, &buf, client.ImageLoadWithQuiet(true))
	is.NoErr(err)
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	ref, err := opensbx.AgentImageRef("amd64")
	is.NoErr(err)
	kubeenv.Import(t, testenv.BusyboxImage, ref)

	ns := "h" + testRun + "-k" + randomHex(4)
	m, err := opensbx.New(ctx, opensbx.WithKubernetes(opensbx.KubernetesConfig{Kubeconfig: kubeconfig, PullPolicy: "Never", Ports: ports}),
		opensbx.WithNamespace(ns), opensbx.WithLabels(map[string]string{testRunLabel: testRun}))
	is.NoErr(err)
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, _ := m.List(cctx)
		for _, sb := range list {
			if err := m.Delete(cctx, sb.ID); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		m.Close()
	})
	return m
}

// previewGet fetches path of sandbox name's first port through a preview
// proxy on m, waiting up to 30 s for the server in the sandbox to answer.
func previewGet(t *testing.T, m *opensbx.Manager, name, path string) string {
	t.Helper()
	p, err := preview.New(m, preview.WithBaseURL("http://localhost:3000"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ps := httptest.NewServer(p)
	defer ps.Close()
	var body string
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequest("GET", ps.URL+path, nil)
		req.Host = name + ".localhost:3000"
		res, err := ps.Client().Do(req)
		if err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			body = string(b)
			if res.StatusCode == 200 {
				return body
			}
		}
		if time.Now().After(end) {
			t.Fatalf("no preview: %v %s", err, body)
		}
	}
}
