package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// apiClient is the little of the Kubernetes API that up and status need,
// over plain HTTPS with the admin certificate (no client-go in the main
// module).
type apiClient struct {
	hc   *http.Client
	base string
}

func newAPIClient(l Layout) (*apiClient, error) {
	caPEM, err := os.ReadFile(l.PKIFile("ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("api client: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("api client: no CA certificate")
	}
	cert, err := tls.LoadX509KeyPair(l.PKIFile(certAdmin+".crt"), l.PKIFile(certAdmin+".key"))
	if err != nil {
		return nil, fmt.Errorf("api client: %w", err)
	}
	tr := &http.Transport{
		Proxy:           nil, // never a proxy, whatever the environment says
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}
	return &apiClient{hc: &http.Client{Transport: tr, Timeout: 5 * time.Second}, base: l.APIServerURL()}, nil
}

func (a *apiClient) close() { a.hc.CloseIdleConnections() }

// get fetches path; out (if not nil) gets a JSON body of a 200 answer. It
// returns the status code.
func (a *apiClient) get(ctx context.Context, path string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("GET %s: %s: %.200s", path, resp.Status, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return resp.StatusCode, fmt.Errorf("GET %s: %w", path, err)
		}
	}
	return resp.StatusCode, nil
}

// node is the part of a Node object that readiness needs.
type node struct {
	Spec struct {
		Taints []struct {
			Key    string `json:"key"`
			Effect string `json:"effect"`
		} `json:"taints"`
	} `json:"spec"`
	Status struct {
		Conditions []struct {
			Type    string `json:"type"`
			Status  string `json:"status"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"conditions"`
	} `json:"status"`
}

// nodeReady says whether n is Ready and without taints (pods schedule at
// once); why says what is missing.
func nodeReady(n node) (ok bool, why string) {
	ready := false
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			if c.Status != "True" {
				return false, fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
			}
			ready = true
		}
	}
	if !ready {
		return false, "no Ready condition yet"
	}
	if len(n.Spec.Taints) > 0 {
		return false, "tainted " + n.Spec.Taints[0].Key
	}
	return true, ""
}

// clusterReady checks, once, what up waits for: apiserver ready, the node
// Ready and untainted, and the default namespace usable by pods (its
// default service account and kube-root-ca.crt exist).
func (a *apiClient) clusterReady(ctx context.Context, nodeName string) (ok bool, why string) {
	if _, err := a.get(ctx, "/readyz", nil); err != nil {
		return false, "apiserver: " + err.Error()
	}
	var n node
	if _, err := a.get(ctx, "/api/v1/nodes/"+nodeName, &n); err != nil {
		return false, "node: " + err.Error()
	}
	if ok, why := nodeReady(n); !ok {
		return false, "node " + nodeName + ": " + why
	}
	if _, err := a.get(ctx, "/api/v1/namespaces/default/serviceaccounts/default", nil); err != nil {
		return false, "service account: " + err.Error()
	}
	if _, err := a.get(ctx, "/api/v1/namespaces/default/configmaps/kube-root-ca.crt", nil); err != nil {
		return false, "root CA config map: " + err.Error()
	}
	return true, ""
}
