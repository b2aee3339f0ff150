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
	m, err := opensbx.New(ctx, opensbx.WithKubernetes(opensbx.KubernetesConfig{Kubeconfig: kubeconfig, PullPolicy: "Never"}),
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
	p, err := preview.New(m, preview.WithBaseURL("http://localhost:3000"))
	is.NoErr(err)
	defer p.Close()
	ps := httptest.NewServer(p)
	defer ps.Close()
	name := a.call("GET", "/v1/sandboxes/"+id, nil).json(t)["name"].(string)
	var body string
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequest("GET", ps.URL+"/index.html", nil)
		req.Host = name + ".localhost:3000"
		res, err := ps.Client().Do(req)
		if err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			body = string(b)
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(end) {
			t.Fatalf("no preview: %v %s", err, body)
		}
	}
	is.Equal(body, "previewed")

	r = a.call("GET", "/v1/sandboxes/"+id+"/stats", nil)
	want(t, r, 200, "")
	want(t, a.call("DELETE", "/v1/sandboxes/"+id, nil), http.StatusNoContent, "")
	want(t, a.call("GET", "/v1/sandboxes/"+id, nil), http.StatusNotFound, "NOT_FOUND")
}
