package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ModulePath is the module path of the opensbx repository.
const ModulePath = "github.com/opensbx/opensbx"

// buildModuleDir is the build module inside the repository.
const buildModuleDir = "internal/kubeenv/build"

// pausePackage is the pause program inside the repository.
const pausePackage = "./internal/kubeenv/cmd/kubepause"

// kubePackages are what the build module builds, in the build module.
var kubePackages = []string{
	"k8s.io/kubernetes/cmd/kube-apiserver",
	"k8s.io/kubernetes/cmd/kube-controller-manager",
	"k8s.io/kubernetes/cmd/kube-scheduler",
	"k8s.io/kubernetes/cmd/kubelet",
	"k8s.io/kubernetes/cmd/kubectl",
	"./etcd",
}

// kubeLDFlags strips the binaries and stamps the version the way
// Kubernetes' own build does (hack/lib/version.sh), so that /version, the
// node's kubelet version and `kubectl version` say v1.34.4.
func kubeLDFlags() string {
	flags := []string{"-s", "-w"}
	major, minor, _ := strings.Cut(strings.TrimPrefix(KubeVersion, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		for _, kv := range [][2]string{
			{"gitVersion", KubeVersion}, {"gitMajor", major}, {"gitMinor", minor},
			{"gitTreeState", "clean"}, {"buildDate", "1970-01-01T00:00:00Z"},
		} {
			flags = append(flags, "-X", pkg+"."+kv[0]+"="+kv[1])
		}
	}
	return strings.Join(flags, " ")
}

// FindRepo returns the root of the opensbx repository that contains dir:
// the nearest directory up from dir with a go.mod for [ModulePath].
func FindRepo(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("find repository: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && modulePathOf(b) == ModulePath {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("find repository: no go.mod for %s above %s", ModulePath, dir)
		}
	}
}

// modulePathOf returns the path on go.mod's module line.
func modulePathOf(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// buildHash identifies a build: the SHA-256 of the build module's go.mod
// and go.sum and of how they are built (packages and flags). The binaries
// are rebuilt when the stamp no longer matches it.
func buildHash(gomod, gosum []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "recipe %q %q\n", kubePackages, kubeLDFlags())
	fmt.Fprintf(h, "go.mod %d\n", len(gomod))
	h.Write(gomod)
	fmt.Fprintf(h, "go.sum %d\n", len(gosum))
	h.Write(gosum)
	return hex.EncodeToString(h.Sum(nil))
}

// binariesCurrent says whether every binary is in the cache and the stamp
// matches hash.
func binariesCurrent(l Layout, hash string) bool {
	stamp, err := os.ReadFile(l.Stamp())
	if err != nil || strings.TrimSpace(string(stamp)) != hash {
		return false
	}
	for _, name := range kubeBinaries {
		fi, err := os.Stat(l.Bin(name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// Build makes sure the cache holds the Kubernetes and etcd binaries of the
// build module (building them, niced, when they are missing or the stamp is
// stale) and builds the pause program. A cold build takes about 11
// minutes, a current cache a second.
func (c *Cluster) Build(ctx context.Context) error {
	l := c.Layout
	if c.Repo == "" {
		return errors.New("build: no repository")
	}
	modDir := filepath.Join(c.Repo, buildModuleDir)
	gomod, err := os.ReadFile(filepath.Join(modDir, "go.mod"))
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	gosum, err := os.ReadFile(filepath.Join(modDir, "go.sum"))
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	hash := buildHash(gomod, gosum)
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	if err := os.MkdirAll(l.BinDir(), 0o755); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	if binariesCurrent(l, hash) {
		c.logf("binaries in %s are current (stamp %.12s)", l.BinDir(), hash)
	} else {
		start := time.Now()
		c.logf("building Kubernetes %s and etcd %s into %s (cold build cache: 11-35 minutes; warm: about a minute)", KubeVersion, EtcdVersion, l.BinDir())
		tmp, err := os.MkdirTemp(l.CacheDir, "build-")
		if err != nil {
			return fmt.Errorf("build: %w", err)
		}
		defer os.RemoveAll(tmp)
		args := append([]string{"-n", "19", goBin, "build", "-buildvcs=false", "-ldflags=" + kubeLDFlags(), "-o", tmp + "/"}, kubePackages...)
		if err := c.run(ctx, modDir, []string{"CGO_ENABLED=0", "GOWORK=off"}, "nice", args...); err != nil {
			return fmt.Errorf("build kubernetes: %w", err)
		}
		os.Remove(l.Stamp())
		for _, name := range kubeBinaries {
			if err := os.Rename(filepath.Join(tmp, name), l.Bin(name)); err != nil {
				return fmt.Errorf("build: %w", err)
			}
		}
		if err := os.WriteFile(l.Stamp(), []byte(hash+"\n"), 0o644); err != nil {
			return fmt.Errorf("build: %w", err)
		}
		c.logf("built in %s", time.Since(start).Round(time.Second))
	}
	// The pause program is small and builds from the main module: always
	// rebuild it (the build cache makes that a second).
	err = c.run(ctx, c.Repo, []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"}, "nice",
		"-n", "19", goBin, "build", "-buildvcs=false", "-ldflags=-s -w", "-o", l.Bin(pauseBinary), pausePackage)
	if err != nil {
		return fmt.Errorf("build pause: %w", err)
	}
	return nil
}

// run runs a program in dir with extra environment, its output going to
// the log; on failure the error carries the output's tail.
func (c *Cluster) run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var tail tailBuffer
	var out io.Writer = &tail
	if c.Log != nil {
		out = io.MultiWriter(c.Log, &tail)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, tail.String())
	}
	return nil
}

// tailBuffer keeps the last 2 KiB written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 2048 {
		t.b = t.b[len(t.b)-2048:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(bytes.TrimSpace(t.b)) }
