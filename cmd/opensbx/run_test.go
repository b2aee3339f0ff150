package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseConfigEnvAndFlags(t *testing.T) {
	is := is.New(t)
	env := envOf(map[string]string{
		"ADDR": "0.0.0.0:9000", "API_KEY": " a, b ,,", "BASE_DOMAIN": "sbx.example.com", "STATE_DIR": "/var/lib/x",
		"NAMESPACE": "prod", "DEFAULT_TIMEOUT": "90", "DEFAULT_MEMORY_MB": "256", "DEFAULT_CPUS": "0.5",
		"MAX_MEMORY_MB": "2048", "MAX_CPUS": "2", "DOCKER_HOST": "unix:///x.sock", "LOG_FORMAT": "text", "LOG_LEVEL": "debug",
	})
	c, err := parseConfig(nil, env, &bytes.Buffer{})
	is.NoErr(err)
	is.Equal(c.addr, "0.0.0.0:9000")
	is.Equal(c.apiKeys, []string{"a", "b"}) // comma-separated, trimmed, empties dropped
	is.Equal(c.baseDomain, "sbx.example.com")
	is.Equal(c.stateDir, "/var/lib/x")
	is.Equal(c.namespace, "prod")
	is.Equal(c.defaultTTL, 90*time.Second) // seconds
	is.Equal(c.defaults, opensbx.Resources{MemoryMB: 256, CPUs: 0.5})
	is.Equal(c.max, opensbx.Resources{MemoryMB: 2048, CPUs: 2})
	is.Equal(c.dockerHost, "unix:///x.sock")
	is.Equal(c.logFormat, "text")

	// Flags win over the environment; durations take Go syntax too.
	c, err = parseConfig([]string{"-addr", "127.0.0.1:1", "-default-timeout", "2m", "-api-key", "k"}, env, &bytes.Buffer{})
	is.NoErr(err)
	is.Equal(c.addr, "127.0.0.1:1")
	is.Equal(c.defaultTTL, 2*time.Minute)
	is.Equal(c.apiKeys, []string{"k"})

	// Defaults.
	c, err = parseConfig(nil, envOf(nil), &bytes.Buffer{})
	is.NoErr(err)
	is.Equal(c.addr, "127.0.0.1:8080")
	is.Equal(c.stateDir, "./opensbx-data")
	is.Equal(c.apiKeys, []string(nil)) // no auth
	is.Equal(c.shutdownTimeout, 15*time.Second)
	is.Equal(c.proxyAddr, "127.0.0.1:3000") // previews on by default
	is.Equal(c.baseDomain, "localhost")
	is.Equal(c.previewPrivate, false) // public by default
	is.Equal(c.secretFile, filepath.Join("opensbx-data", "preview-secret"))
	is.Equal(c.dialTimeout, 5*time.Second)
	is.Equal(c.responseTimeout, 2*time.Minute)
	is.Equal(c.linkTTL, time.Hour)
}

func TestParseConfigPreview(t *testing.T) {
	is := is.New(t)
	c, err := parseConfig(nil, envOf(map[string]string{
		"PROXY_ADDR": "0.0.0.0:8000", "BASE_DOMAIN": "sbx.example.com", "PREVIEW_PRIVATE": "true",
		"STATE_DIR": "/var/lib/x", "PROXY_DIAL_TIMEOUT": "2", "PROXY_RESPONSE_TIMEOUT": "5m", "PREVIEW_LINK_TTL": "24h",
	}), &bytes.Buffer{})
	is.NoErr(err)
	is.Equal(c.proxyAddr, "0.0.0.0:8000")
	is.Equal(c.baseDomain, "sbx.example.com")
	is.True(c.previewPrivate)
	is.Equal(c.secretFile, "/var/lib/x/preview-secret") // in the state directory
	is.Equal(c.dialTimeout, 2*time.Second)
	is.Equal(c.responseTimeout, 5*time.Minute)
	is.Equal(c.linkTTL, 24*time.Hour)

	// Empty PROXY_ADDR (set, not unset), "off" or an empty flag turn the proxy off.
	for _, env := range []map[string]string{{"PROXY_ADDR": ""}, {"PROXY_ADDR": "off"}, {"PROXY_ADDR": " OFF "}} {
		c, err = parseConfig(nil, envOf(env), &bytes.Buffer{})
		is.NoErr(err)
		is.Equal(c.proxyAddr, "") // off
	}
	c, err = parseConfig([]string{"-proxy-addr="}, envOf(map[string]string{"PROXY_ADDR": "127.0.0.1:1"}), &bytes.Buffer{})
	is.NoErr(err)
	is.Equal(c.proxyAddr, "") // the flag wins

	c, err = parseConfig([]string{"-preview-secret-file", "/run/secret"}, envOf(nil), &bytes.Buffer{})
	is.NoErr(err)
	is.Equal(c.secretFile, "/run/secret")
}

func TestPreviewBaseURL(t *testing.T) {
	addr := func(s string) net.Addr { a, _ := net.ResolveTCPAddr("tcp", s); return a }
	for _, c := range []struct {
		domain, addr, want string
	}{
		{"localhost", "127.0.0.1:3000", "http://localhost:3000"},
		{"dev.localhost", "0.0.0.0:4000", "http://dev.localhost:4000"},
		{"LOCALHOST", "127.0.0.1:80", "http://LOCALHOST"}, // port 80 left out
		{"sbx.example.com", "127.0.0.1:3000", "https://sbx.example.com"},
		{"http://sbx.example.com:3000", "127.0.0.1:3000", "http://sbx.example.com:3000"}, // as given
		{"https://sbx.example.com:8443", "127.0.0.1:3000", "https://sbx.example.com:8443"},
	} {
		if got := previewBaseURL(c.domain, addr(c.addr)); got != c.want {
			t.Errorf("previewBaseURL(%q, %s) = %q, want %q", c.domain, c.addr, got, c.want)
		}
	}
}

func TestParseConfigRejectsBadValues(t *testing.T) {
	for _, c := range []struct{ env, value string }{
		{"DEFAULT_TIMEOUT", "soon"}, {"DEFAULT_TIMEOUT", "-5"}, {"DEFAULT_MEMORY_MB", "1g"}, {"DEFAULT_CPUS", "-1"},
		{"MAX_MEMORY_MB", "0"}, {"MAX_CPUS", "NaN"}, {"LOG_FORMAT", "xml"}, {"LOG_LEVEL", "loud"}, {"SHUTDOWN_TIMEOUT", "x"},
		{"PROXY_ADDR", "3000"}, {"PREVIEW_PRIVATE", "maybe"}, {"PROXY_DIAL_TIMEOUT", "0"}, {"PROXY_RESPONSE_TIMEOUT", "soon"},
		{"PREVIEW_LINK_TTL", "-1h"},
	} {
		_, err := parseConfig(nil, envOf(map[string]string{c.env: c.value}), &bytes.Buffer{})
		if !errors.Is(err, errUsage) || exitCode(err) != 2 {
			t.Errorf("%s=%q: err %v", c.env, c.value, err)
		}
	}
	_, err := parseConfig([]string{"-nope"}, envOf(nil), &bytes.Buffer{})
	if exitCode(err) != 2 {
		t.Errorf("unknown flag: %v", err)
	}
	_, err = parseConfig([]string{"extra"}, envOf(nil), &bytes.Buffer{})
	if exitCode(err) != 2 {
		t.Errorf("positional argument: %v", err)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:80": true, "localhost:1": true,
		"0.0.0.0:8080": false, ":8080": false, "10.0.0.1:80": false, "example.com:80": false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v", addr, got)
		}
	}
}

func TestRunDockerUnreachable(t *testing.T) {
	is := is.New(t)
	var stderr bytes.Buffer
	err := run(context.Background(), nil, envOf(map[string]string{
		"DOCKER_HOST": "tcp://127.0.0.1:1", "STATE_DIR": t.TempDir(), "ADDR": "127.0.0.1:0",
	}), &bytes.Buffer{}, &stderr)
	is.True(err != nil)                                                       // fails
	is.True(errors.Is(err, opensbx.ErrUnavailable))                           // as unavailable
	is.Equal(exitCode(err), 3)                                                // with its own exit code
	is.True(bytes.Contains([]byte(err.Error()), []byte("tcp://127.0.0.1:1"))) // names the address
}

func TestParsePool(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []opensbx.PoolTemplate
		bad  bool
	}{
		{in: "", want: nil},
		{in: "img:1=8", want: []opensbx.PoolTemplate{{Image: "img:1", Size: 8}}},
		{in: "a:1=2, 127.0.0.1:5000/ns/b:2#8080+53/udp=3", want: []opensbx.PoolTemplate{
			{Image: "a:1", Size: 2}, {Image: "127.0.0.1:5000/ns/b:2", Ports: []string{"8080", "53/udp"}, Size: 3}}},
		{in: "img:1", bad: true},
		{in: "img:1=0", bad: true},
		{in: "img:1=x", bad: true},
	} {
		got, err := parsePool(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parsePool(%q): want an error", tc.in)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parsePool(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseConfigBackend(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		ok   bool
		kube bool
	}{
		{"default", nil, true, false},
		{"docker", map[string]string{"BACKEND": "docker"}, true, false},
		{"kubernetes", map[string]string{"BACKEND": "kubernetes", "KUBECONFIG": "/k", "K8S_NAMESPACE": "sbx", "K8S_PULL_POLICY": "Never"}, true, true},
		{"unknown", map[string]string{"BACKEND": "nomad"}, false, false},
		{"both", map[string]string{"BACKEND": "kubernetes", "DOCKER_HOST": "tcp://x:1"}, false, false},
		{"agent init not a bool", map[string]string{"BACKEND": "kubernetes", "K8S_AGENT_INIT": "maybe"}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(nil, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }, io.Discard)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v", err)
			}
			if tt.ok && (c.kube != nil) != tt.kube {
				t.Fatalf("kube = %+v", c.kube)
			}
			if tt.kube && (c.kube.Kubeconfig != "/k" || c.kube.Namespace != "sbx" || c.kube.PullPolicy != "Never") {
				t.Fatalf("kube = %+v", c.kube)
			}
		})
	}
}

// TestParseConfigAgentInit: K8S_AGENT_INIT reaches the Kubernetes
// configuration; without it the Manager looks for the agent DaemonSet.
func TestParseConfigAgentInit(t *testing.T) {
	for _, v := range []string{"", "true", "false"} {
		env := map[string]string{"BACKEND": "kubernetes"}
		if v != "" {
			env["K8S_AGENT_INIT"] = v
		}
		c, err := parseConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if c.kube.AgentInitContainer != (v == "true") {
			t.Fatalf("K8S_AGENT_INIT=%q: AgentInitContainer %v", v, c.kube.AgentInitContainer)
		}
	}
}

func TestAgentImageCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"agent-image"}, func(string) (string, bool) { return "", false }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if out.Len() < 1<<20 {
		t.Fatalf("archive of %d bytes", out.Len())
	}
	err := run(context.Background(), []string{"agent-image", "-arch", "mips"}, func(string) (string, bool) { return "", false }, io.Discard, io.Discard)
	if exitCode(err) != 2 {
		t.Fatalf("bad arch: %v", err)
	}
}

func TestAgentDaemonSetCommand(t *testing.T) {
	noEnv := func(string) (string, bool) { return "", false }
	var out bytes.Buffer
	if err := run(context.Background(), []string{"agent-daemonset", "-dir", "/var/lib/opensbx/agent", "-namespace", "sbx"}, noEnv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var ds struct {
		Kind     string
		Metadata struct{ Name, Namespace string }
		Spec     struct {
			Template struct {
				Spec struct {
					Volumes []struct {
						HostPath struct{ Path string }
					}
				}
			}
		}
	}
	if err := json.Unmarshal(out.Bytes(), &ds); err != nil {
		t.Fatalf("%v: %s", err, out.Bytes())
	}
	if ds.Kind != "DaemonSet" || ds.Metadata.Namespace != "sbx" || len(ds.Spec.Template.Spec.Volumes) != 1 || ds.Spec.Template.Spec.Volumes[0].HostPath.Path != "/var/lib/opensbx/agent" {
		t.Fatalf("daemonset %+v", ds)
	}
	for _, args := range [][]string{{"agent-daemonset"}, {"agent-daemonset", "-dir", "rel"}, {"agent-daemonset", "-dir", "/x", "-arch", "mips"}, {"agent-daemonset", "-dir", "/x", "extra"}} {
		if err := run(context.Background(), args, noEnv, io.Discard, io.Discard); exitCode(err) != 2 {
			t.Fatalf("%q: %v", args, err)
		}
	}
}
