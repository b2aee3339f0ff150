package main

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/opensbx/opensbx"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
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
}

func TestParseConfigRejectsBadValues(t *testing.T) {
	for _, c := range []struct{ env, value string }{
		{"DEFAULT_TIMEOUT", "soon"}, {"DEFAULT_TIMEOUT", "-5"}, {"DEFAULT_MEMORY_MB", "1g"}, {"DEFAULT_CPUS", "-1"},
		{"MAX_MEMORY_MB", "0"}, {"MAX_CPUS", "NaN"}, {"LOG_FORMAT", "xml"}, {"LOG_LEVEL", "loud"}, {"SHUTDOWN_TIMEOUT", "x"},
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
