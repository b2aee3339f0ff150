package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Timeouts of up's waits (generous: the machine is shared with CI).
const (
	daemonReadyTimeout  = 2 * time.Minute
	clusterReadyTimeout = 3 * time.Minute
	ctrTimeout          = 2 * time.Minute
)

const (
	ctrBin      = "/usr/bin/ctr"
	ctrNS       = "k8s.io" // the CRI plugin's containerd namespace
	daemonsPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// packages are the Debian packages up needs, each with files that show it
// is installed.
var packages = []struct {
	name  string
	files []string
}{
	{"containerd", []string{"/usr/bin/containerd", ctrBin, "/usr/bin/containerd-shim-runc-v2"}},
	{"runc", []string{"/usr/sbin/runc"}},
	{"containernetworking-plugins", []string{"/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback"}},
	{"iptables", []string{"/usr/sbin/iptables", "/usr/sbin/iptables-save"}},
	{"iproute2", []string{"/usr/sbin/ip"}},
}

// Up starts the cluster and returns the admin kubeconfig's path once the
// node is Ready and the default namespace can run pods. When a healthy
// cluster is already up it only returns the path; an unhealthy one is an
// error (run Down). A failed Up tears down what it started, unless Keep.
func (c *Cluster) Up(ctx context.Context) (kubeconfig string, err error) {
	l := c.Layout
	if os.Geteuid() != 0 {
		return "", errors.New("up: must run as root")
	}
	unlock, err := lock(ctx, l.LockFile, func() { c.logf("waiting for another kubecluster command (%s)", l.LockFile) })
	if err != nil {
		return "", err
	}
	defer unlock()
	start := time.Now()

	switch st, err := loadState(l.StateFile()); {
	case err == nil:
		if ok, why := c.healthy(ctx, st); !ok {
			return "", fmt.Errorf("up: a cluster (phase %s, started %s) is not healthy: %s; run kubecluster down first",
				st.Phase, st.StartedAt.Format(time.RFC3339), why)
		}
		c.logf("already up")
		return st.Layout.AdminKubeconfig(), nil
	case !errors.Is(err, errNoState):
		return "", err
	}

	if err := c.Build(ctx); err != nil {
		return "", err
	}
	if err := c.ensurePackages(ctx); err != nil {
		return "", err
	}
	if err := c.preflight(); err != nil {
		return "", err
	}
	st := &State{Layout: l, StartedAt: start, Phase: phaseStarting}
	if err := c.recordHost(ctx, st); err != nil {
		return "", err
	}
	defer func() {
		if err == nil {
			return
		}
		if c.Keep {
			c.logf("up failed; kept what it started (kubecluster down removes it)")
			return
		}
		c.logf("up failed: tearing down (logs stay in %s)", l.LogDir)
		if derr := c.down(context.WithoutCancel(ctx), st); derr != nil {
			err = errors.Join(err, fmt.Errorf("teardown: %w", derr))
			return
		}
		os.Remove(l.LockFile) // still held, as in Down
	}()

	if err := c.writeConfig(); err != nil {
		return "", err
	}
	c.logf("configuration and certificates in %s", l.StateDir)

	daemons := map[string]Daemon{}
	for _, d := range Daemons(l) {
		daemons[d.Name] = d
	}
	var running []*runningDaemon
	startOne := func(name string) (*runningDaemon, error) {
		rd, err := startDaemon(daemons[name], l.Log(name))
		if err != nil {
			return nil, err
		}
		st.Procs = append(st.Procs, rd.proc)
		running = append(running, rd)
		return rd, st.save()
	}

	if _, err := startOne(daemonContainerd); err != nil {
		return "", err
	}
	err = c.waitFor(ctx, "containerd", daemonReadyTimeout, running, func(ctx context.Context) (bool, string) {
		if _, err := c.ctr(ctx, "version"); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	if err != nil {
		return "", err
	}
	if err := c.importPause(ctx); err != nil {
		return "", err
	}

	if _, err := startOne(daemonEtcd); err != nil {
		return "", err
	}
	etcdHealth := fmt.Sprintf("http://127.0.0.1:%d/health", l.EtcdClientPort)
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	err = c.waitFor(ctx, "etcd", daemonReadyTimeout, running, func(ctx context.Context) (bool, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, etcdHealth, nil)
		resp, err := hc.Do(req)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	if err != nil {
		return "", err
	}

	if _, err := startOne(daemonAPIServer); err != nil {
		return "", err
	}
	api, err := newAPIClient(l)
	if err != nil {
		return "", err
	}
	defer api.close()
	err = c.waitFor(ctx, "kube-apiserver", daemonReadyTimeout, running, func(ctx context.Context) (bool, string) {
		if _, err := api.get(ctx, "/readyz", nil); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	if err != nil {
		return "", err
	}

	for _, name := range []string{daemonControllerManager, daemonScheduler, daemonKubelet} {
		if _, err := startOne(name); err != nil {
			return "", err
		}
	}
	err = c.waitFor(ctx, "a Ready node and the default service account", clusterReadyTimeout, running,
		func(ctx context.Context) (bool, string) { return api.clusterReady(ctx, l.NodeName) })
	if err != nil {
		return "", err
	}
	st.Phase = phaseReady
	if err := st.save(); err != nil {
		return "", err
	}
	c.logf("up in %s", time.Since(start).Round(100*time.Millisecond))
	return l.AdminKubeconfig(), nil
}

// ensurePackages installs the Debian packages that are missing.
func (c *Cluster) ensurePackages(ctx context.Context) error {
	var missing []string
	for _, p := range packages {
		for _, f := range p.files {
			if _, err := os.Stat(f); err != nil {
				missing = append(missing, p.name)
				break
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	c.logf("installing %s", strings.Join(missing, " "))
	env := []string{"DEBIAN_FRONTEND=noninteractive"}
	args := append([]string{"install", "-y", "--no-install-recommends"}, missing...)
	if err := c.run(ctx, "/", env, "apt-get", args...); err != nil {
		c.logf("apt-get install failed; updating the package lists and retrying")
		if err := c.run(ctx, "/", env, "apt-get", "update"); err != nil {
			return fmt.Errorf("install packages: %w", err)
		}
		if err := c.run(ctx, "/", env, "apt-get", args...); err != nil {
			return fmt.Errorf("install packages: %w", err)
		}
	}
	return nil
}

// preflight refuses to start where another cluster (or what is left of
// one) would clash, and removes leftovers of this tool's own directories.
func (c *Cluster) preflight() error {
	l := c.Layout
	ports := map[string]int{
		"etcd client": l.EtcdClientPort, "etcd peer": l.EtcdPeerPort, "kube-apiserver": l.APIServerPort,
		"kubelet": l.KubeletPort, "kubelet healthz": l.KubeletHealthzPort,
	}
	for what, p := range ports {
		if !portFree(p) {
			return fmt.Errorf("up: port 127.0.0.1:%d (%s) is in use: is another cluster running?", p, what)
		}
	}
	if entries, _ := os.ReadDir(kubeletRootDir); len(entries) > 0 {
		return fmt.Errorf("up: %s is not empty: another kubelet's state? (remove it when no kubelet runs)", kubeletRootDir)
	}
	if linkExists(l.Bridge) {
		return fmt.Errorf("up: network interface %s exists: left from another cluster? (ip link delete %s)", l.Bridge, l.Bridge)
	}
	if pids := cgroupPIDs("kubepods"); len(pids) > 0 {
		return fmt.Errorf("up: processes %v run in kubepods cgroups: another kubelet's pods?", pids)
	}
	if len(shimsOf(l.ContainerdSocket())) > 0 {
		return fmt.Errorf("up: containerd shims for %s are running: run kubecluster down", l.ContainerdSocket())
	}
	// Without a state file nothing of ours runs: what is left in our own
	// directories is garbage.
	for _, d := range []string{l.RunDir, l.StateDir} {
		if err := unmountUnder([]string{d}); err != nil {
			return fmt.Errorf("up: clean %s: %w", d, err)
		}
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("up: clean %s: %w", d, err)
		}
	}
	return nil
}

// recordHost fills st with the host's state before anything changes it
// and saves it.
func (c *Cluster) recordHost(ctx context.Context, st *State) error {
	st.Sysctls = map[string]string{}
	for _, name := range sysctls {
		v, err := readSysctl(name)
		if err != nil {
			continue // not on this kernel: nothing to restore
		}
		st.Sysctls[name] = v
	}
	for _, d := range hostDirs {
		entries, exists, err := listTree(d)
		if err != nil {
			return fmt.Errorf("up: %w", err)
		}
		st.HostDirs = append(st.HostDirs, HostDir{Path: d, Existed: exists, Entries: entries})
	}
	st.BridgeExisted = linkExists(c.Layout.Bridge)
	st.IptablesBefore = map[string]string{}
	for _, prog := range []string{"iptables-save", "ip6tables-save"} {
		out, err := output(ctx, 30*time.Second, prog)
		if err != nil {
			c.logf("%v (its rules will not be restored)", err)
			continue
		}
		st.IptablesBefore[prog] = out
	}
	return st.save()
}

// writeConfig writes the PKI, kubeconfigs and daemon configuration.
func (c *Cluster) writeConfig() error {
	l := c.Layout
	for _, d := range []string{l.StateDir, l.RunDir, l.CNIConfDir(), l.IPAMDir(), l.EtcdDataDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("up: %w", err)
		}
	}
	if err := os.MkdirAll(l.LogDir, 0o755); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	pki, err := NewPKI(l, time.Now())
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	if err := pki.Write(l.PKIDir()); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	files := map[string][]byte{}
	users := map[string]struct{ cert, path string }{
		"admin":                 {certAdmin, l.AdminKubeconfig()},
		daemonControllerManager: {certControllerManager, l.Kubeconfig(daemonControllerManager)},
		daemonScheduler:         {certScheduler, l.Kubeconfig(daemonScheduler)},
		daemonKubelet:           {certKubeletClient, l.Kubeconfig(daemonKubelet)},
	}
	for name, u := range users {
		kp := pki.Certs[u.cert]
		b, err := RenderKubeconfig(l.APIServerURL(), pki.CA.CertPEM, KubeconfigUser{Name: name, CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM})
		if err != nil {
			return fmt.Errorf("up: %w", err)
		}
		files[u.path] = b
	}
	cc, err := ContainerdConfig(l)
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	files[l.ContainerdConfigFile()] = []byte(cc)
	for reg, toml := range RegistryHosts() {
		files[filepath.Join(l.RegistryHostsDir(), reg, "hosts.toml")] = []byte(toml)
	}
	if files[filepath.Join(l.CNIConfDir(), "10-"+CNIConfigName+".conflist")], err = CNIConfList(l); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	if files[l.KubeletConfigFile()], err = KubeletConfig(l); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	for path, data := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return fmt.Errorf("up: %w", err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return fmt.Errorf("up: %w", err)
		}
	}
	return nil
}

// importPause imports the locally built pause program as the sandbox image.
func (c *Cluster) importPause(ctx context.Context) error {
	prog, err := os.ReadFile(c.Layout.Bin(pauseBinary))
	if err != nil {
		return fmt.Errorf("pause image: %w", err)
	}
	tarball, err := pauseImageTar(prog, c.Layout.PauseImage)
	if err != nil {
		return err
	}
	if err := c.ctrImport(ctx, bytes.NewReader(tarball)); err != nil {
		return fmt.Errorf("pause image: %w", err)
	}
	return nil
}

// runningDaemon is a daemon up started, with the outcome of its Wait.
type runningDaemon struct {
	proc   Proc
	log    string
	exited chan error // gets Wait's result when the process ends
}

// startDaemon starts d detached (its own session, stdin /dev/null, output
// to logPath, truncated).
func startDaemon(d Daemon, logPath string) (*runningDaemon, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", d.Name, err)
	}
	defer f.Close()
	fmt.Fprintf(f, "# kubecluster %s: %s %s\n", time.Now().Format(time.RFC3339), d.Path, strings.Join(d.Args, " "))
	cmd := exec.Command(d.Path, d.Args...)
	cmd.Env = append([]string{"PATH=" + daemonsPATH, "HOME=/root"}, d.Env...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", d.Name, err)
	}
	rd := &runningDaemon{log: logPath, exited: make(chan error, 1)}
	go func() { rd.exited <- cmd.Wait() }() // ends when the daemon does, or with this process
	p, err := procFor(d.Name, cmd.Process.Pid)
	if err != nil {
		// It is gone already: Wait tells why.
		return nil, fmt.Errorf("start %s: %w (log %s: %s)", d.Name, <-rd.exited, logPath, logTail(logPath))
	}
	rd.proc = p
	return rd, nil
}

// waitFor polls check until it says ok, a daemon of running exits, or
// timeout passes.
func (c *Cluster) waitFor(ctx context.Context, what string, timeout time.Duration, running []*runningDaemon,
	check func(context.Context) (bool, string)) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	why := ""
	for {
		for _, rd := range running {
			select {
			case err := <-rd.exited:
				rd.exited <- err
				return fmt.Errorf("wait for %s: %s exited (%v); log %s: %s", what, rd.proc.Name, err, rd.log, logTail(rd.log))
			default:
			}
		}
		ok, w := check(ctx)
		if ok {
			c.logf("%s ready after %s", what, time.Since(start).Round(10*time.Millisecond))
			return nil
		}
		why = w
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w; last: %s", what, context.Cause(ctx), why)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// logTail is the end of a log file, for error messages.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return strings.TrimSpace(string(b))
}

// ctr runs ctr against the cluster's containerd in the CRI namespace.
func (c *Cluster) ctr(ctx context.Context, args ...string) (string, error) {
	argv := append([]string{"--address", c.Layout.ContainerdSocket(), "--namespace", ctrNS}, args...)
	return output(ctx, ctrTimeout, ctrBin, argv...)
}

// ctrImport imports an image archive (docker save's format or OCI) read
// from r into the cluster's containerd.
func (c *Cluster) ctrImport(ctx context.Context, r io.Reader) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ctrBin, "--address", c.Layout.ContainerdSocket(), "--namespace", ctrNS,
		"images", "import", "-")
	cmd.Stdin = r
	var out tailBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ctr images import: %w: %s", err, out.String())
	}
	c.logf("%s", out.String())
	return nil
}

// healthy says whether the cluster of st runs: every daemon alive and the
// apiserver, node and default namespace ready.
func (c *Cluster) healthy(ctx context.Context, st *State) (bool, string) {
	if st.Phase != phaseReady {
		return false, "phase " + st.Phase
	}
	for _, p := range st.Procs {
		if !p.alive() {
			return false, p.Name + " is not running"
		}
	}
	api, err := newAPIClient(st.Layout)
	if err != nil {
		return false, err.Error()
	}
	defer api.close()
	return api.clusterReady(ctx, st.Layout.NodeName)
}
