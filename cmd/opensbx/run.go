package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opensbx/opensbx"
	"github.com/opensbx/opensbx/httpapi"
	"github.com/opensbx/opensbx/preview"
)

// errUsage marks bad flags or settings (exit code 2); the message has been
// printed already by the flag package, or is in the error.
var errUsage = errors.New("usage")

func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, opensbx.ErrUnavailable):
		return 3
	default:
		return 1
	}
}

// config is the server's settings after flags and environment.
type config struct {
	addr            string
	apiKeys         []string
	baseDomain      string
	stateDir        string
	namespace       string
	defaultTTL      time.Duration
	defaults, max   opensbx.Resources
	dockerHost      string
	kube            *opensbx.KubernetesConfig // BACKEND=kubernetes
	logFormat       string
	logLevel        slog.Level
	shutdownTimeout time.Duration

	// Warm pool, quotas, runtime.
	pool         []opensbx.PoolTemplate
	poolMax      int
	maxSandboxes int
	maxPerKey    int
	maxCommands  int
	runtime      string
	allowedHosts []string

	// The preview proxy.
	proxyAddr       string // "" turns it off
	previewPrivate  bool
	secretFile      string
	dialTimeout     time.Duration
	responseTimeout time.Duration
	linkTTL         time.Duration
}

// parseConfig reads flags, falling back to the environment, then defaults.
// An empty environment variable counts as unset, except PROXY_ADDR, where
// empty turns the proxy off.
func parseConfig(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("opensbx", flag.ContinueOnError)
	fs.SetOutput(stderr)
	getenv := func(k string) string { v, _ := lookupEnv(k); return v }
	str := func(name, def, usage string) *string {
		env := strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		if v := getenv(env); v != "" {
			def = v
		}
		return fs.String(name, def, usage+" (env "+env+")")
	}
	addr := str("addr", "127.0.0.1:8080", "listen address")
	// Not str: the usage text would print the key from the environment.
	apiKey := fs.String("api-key", "", "comma-separated Bearer API keys; empty disables auth (env API_KEY, preferred)")
	baseDomain := str("base-domain", "localhost", "domain of preview URLs <name>.<domain>; a local one (localhost, *.localhost) gives http://<name>.<domain>:<proxy port>, another https://<name>.<domain>; a leading http:// or https:// (and a :port) is kept as given")
	stateDir := str("state-dir", "./opensbx-data", "directory of the state kept across restarts")
	namespace := str("namespace", opensbx.DefaultNamespace, "namespace of the sandboxes this server owns")
	defTimeout := str("default-timeout", "", "default sandbox TTL: seconds or a Go duration (default 15m)")
	defMem := str("default-memory-mb", "", "default memory limit in MiB")
	defCPUs := str("default-cpus", "", "default CPU limit")
	maxMem := str("max-memory-mb", "", "largest memory limit a sandbox may ask for, MiB")
	maxCPUs := str("max-cpus", "", "largest CPU limit a sandbox may ask for")
	dockerHost := str("docker-host", "", "Docker engine address (default: the Docker client's default)")
	backend := str("backend", "docker", "where sandboxes run: docker, or kubernetes (Pods on the cluster of KUBECONFIG)")
	kubeconfig := str("kubeconfig", "", "kubeconfig of the cluster with BACKEND=kubernetes (default: in-cluster configuration)")
	kubeNamespace := str("k8s-namespace", "default", "Kubernetes namespace of the sandboxes' Pods with BACKEND=kubernetes")
	kubeAgentImage := str("k8s-agent-image", "", "image the agent is installed from with BACKEND=kubernetes (default: opensbx-agent:<version>; `opensbx agent-image` writes it)")
	kubePull := str("k8s-pull-policy", "IfNotPresent", "pull policy of sandbox images with BACKEND=kubernetes: IfNotPresent, Always or Never")
	kubePorts := str("k8s-ports", "", "how sandbox ports are reached with BACKEND=kubernetes: pod-ip or agent (default: pod-ip in the cluster, agent with a kubeconfig)")
	kubeAgentDir := str("k8s-agent-host-dir", "", "directory on every node holding the agent (opensbx agent-install DIR) with BACKEND=kubernetes; default: from the nodes when the namespace holds a ready agent DaemonSet (opensbx agent-daemonset), else an init container installs it from the agent image")
	kubeAgentInit := str("k8s-agent-init", "false", "with BACKEND=kubernetes and no k8s-agent-host-dir: always install the agent with an init container, never look for the agent DaemonSet: true or false")
	logFormat := str("log-format", "json", "log format: json or text")
	logLevel := str("log-level", "info", "log level: debug, info, warn or error")
	shutdown := str("shutdown-timeout", "15s", "grace for requests in flight at shutdown: seconds or a Go duration")
	proxyDef := "127.0.0.1:3000"
	if v, ok := lookupEnv("PROXY_ADDR"); ok {
		proxyDef = v
	}
	proxyAddr := fs.String("proxy-addr", proxyDef, `listen address of the preview proxy; empty or "off" turns it off (env PROXY_ADDR)`)
	private := str("preview-private", "false", "make sandboxes private unless their create request says otherwise: true or false")
	secretFile := str("preview-secret-file", "", "file of the key preview tokens are signed with, made on first start, mode 0600 (default <state-dir>/preview-secret)")
	dialTimeout := str("proxy-dial-timeout", preview.DefaultDialTimeout.String(), "bound on connecting to a sandbox's port (then 502)")
	responseTimeout := str("proxy-response-timeout", preview.DefaultResponseTimeout.String(), "bound on waiting for a sandbox's response headers (then 504)")
	linkTTL := str("preview-link-ttl", preview.DefaultLinkTTL.String(), "how long the signed link of a private sandbox's create response stays valid")
	pool := str("pool", "", "warm pool: IMAGE[#PORT+PORT...]=SIZE, comma-separated (opensbx-test/busybox:1#8080=8)")
	poolMax := str("pool-max", "", "bound on the warm pool's ready sandboxes of all images together (default: the sum of the sizes)")
	maxSandboxes := str("max-sandboxes", "", "bound on this server's sandboxes, pool included (then 429)")
	maxCommands := str("max-commands", "", "bound on the commands running at once in one sandbox (then 429)")
	maxPerKey := str("max-sandboxes-per-key", "", "bound on the sandboxes each API key may have at once (then 429); needs API_KEY")
	runtime := str("runtime", "", "OCI runtime of every sandbox, e.g. runsc (gVisor), registered with the engine")
	allowedHosts := str("allowed-hosts", "", "comma-separated Host names accepted besides loopback ones when ADDR is a loopback address (DNS-rebinding guard), e.g. behind a local reverse proxy")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, err
		}
		return config{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if *apiKey == "" {
		*apiKey = getenv("API_KEY")
	}
	c := config{addr: *addr, baseDomain: *baseDomain, stateDir: *stateDir, namespace: *namespace, dockerHost: *dockerHost,
		proxyAddr: strings.TrimSpace(*proxyAddr), secretFile: *secretFile}
	if strings.EqualFold(c.proxyAddr, "off") {
		c.proxyAddr = ""
	}
	if c.secretFile == "" {
		c.secretFile = filepath.Join(c.stateDir, "preview-secret")
	}
	for _, k := range strings.Split(*apiKey, ",") {
		if k = strings.TrimSpace(k); k != "" {
			c.apiKeys = append(c.apiKeys, k)
		}
	}
	var errs []error
	bad := func(name string, err error) { errs = append(errs, fmt.Errorf("%s: %v", name, err)) }
	var err error
	if *defTimeout != "" {
		if c.defaultTTL, err = parseDuration(*defTimeout); err != nil || c.defaultTTL <= 0 {
			bad("default-timeout", fmt.Errorf("want positive seconds or a Go duration, got %q", *defTimeout))
		}
	}
	if c.shutdownTimeout, err = parseDuration(*shutdown); err != nil || c.shutdownTimeout < 0 {
		bad("shutdown-timeout", fmt.Errorf("want seconds or a Go duration, got %q", *shutdown))
	}
	positive := func(name, v string, dst *time.Duration) {
		if d, err := parseDuration(v); err != nil || d <= 0 {
			bad(name, fmt.Errorf("want positive seconds or a Go duration, got %q", v))
		} else {
			*dst = d
		}
	}
	positive("proxy-dial-timeout", *dialTimeout, &c.dialTimeout)
	positive("proxy-response-timeout", *responseTimeout, &c.responseTimeout)
	positive("preview-link-ttl", *linkTTL, &c.linkTTL)
	if c.previewPrivate, err = strconv.ParseBool(*private); err != nil {
		bad("preview-private", fmt.Errorf("want true or false, got %q", *private))
	}
	if c.proxyAddr != "" {
		if _, _, err := net.SplitHostPort(c.proxyAddr); err != nil {
			bad("proxy-addr", fmt.Errorf("want host:port, got %q", c.proxyAddr))
		}
	}
	intOpt := func(name, v string, dst *int64) {
		if v == "" {
			return
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			bad(name, fmt.Errorf("want a positive integer, got %q", v))
		}
		*dst = n
	}
	floatOpt := func(name, v string, dst *float64) {
		if v == "" {
			return
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0) {
			bad(name, fmt.Errorf("want a positive number, got %q", v))
		}
		*dst = f
	}
	if c.pool, err = parsePool(*pool); err != nil {
		bad("pool", err)
	}
	var n int64
	intOpt("pool-max", *poolMax, &n)
	c.poolMax = int(n)
	n = 0
	intOpt("max-sandboxes", *maxSandboxes, &n)
	c.maxSandboxes = int(n)
	n = 0
	intOpt("max-commands", *maxCommands, &n)
	c.maxCommands = int(n)
	n = 0
	intOpt("max-sandboxes-per-key", *maxPerKey, &n)
	c.maxPerKey = int(n)
	c.runtime = strings.TrimSpace(*runtime)
	switch strings.ToLower(*backend) {
	case "docker":
	case "kubernetes", "k8s":
		c.kube = &opensbx.KubernetesConfig{Kubeconfig: *kubeconfig, Namespace: *kubeNamespace, AgentImage: *kubeAgentImage, PullPolicy: *kubePull, AgentHostDir: *kubeAgentDir, Ports: *kubePorts}
		if c.kube.AgentInitContainer, err = strconv.ParseBool(*kubeAgentInit); err != nil {
			bad("k8s-agent-init", fmt.Errorf("want true or false, got %q", *kubeAgentInit))
		}
		if c.dockerHost != "" {
			bad("docker-host", fmt.Errorf("not with BACKEND=kubernetes"))
		}
	default:
		bad("backend", fmt.Errorf("want docker or kubernetes, got %q", *backend))
	}
	for _, h := range strings.Split(*allowedHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			c.allowedHosts = append(c.allowedHosts, h)
		}
	}
	intOpt("default-memory-mb", *defMem, &c.defaults.MemoryMB)
	floatOpt("default-cpus", *defCPUs, &c.defaults.CPUs)
	intOpt("max-memory-mb", *maxMem, &c.max.MemoryMB)
	floatOpt("max-cpus", *maxCPUs, &c.max.CPUs)
	switch c.logFormat = strings.ToLower(*logFormat); c.logFormat {
	case "json", "text":
	default:
		bad("log-format", fmt.Errorf("want json or text, got %q", *logFormat))
	}
	if err := c.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		bad("log-level", err)
	}
	if len(errs) > 0 {
		return config{}, fmt.Errorf("%w: %w", errUsage, errors.Join(errs...))
	}
	return c, nil
}

// parsePool reads POOL: IMAGE[#PORT+PORT...]=SIZE entries, comma-separated.
func parsePool(s string) ([]opensbx.PoolTemplate, error) {
	var out []opensbx.PoolTemplate
	for _, entry := range strings.Split(s, ",") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		spec, size, ok := strings.Cut(entry, "=")
		n, err := strconv.Atoi(size)
		if !ok || err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want IMAGE[#PORT+PORT...]=SIZE with a positive size", entry)
		}
		image, ports, _ := strings.Cut(spec, "#")
		t := opensbx.PoolTemplate{Image: image, Size: n}
		if ports != "" {
			t.Ports = strings.Split(ports, "+")
		}
		out = append(out, t)
	}
	return out, nil
}

// parseDuration takes seconds ("90", "1.5") or a Go duration ("2m").
func parseDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(f * float64(time.Second)), nil
	}
	return time.ParseDuration(s)
}

// isLoopback reports whether a listen address only accepts local clients.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isLocalDomain reports whether a base domain resolves to loopback by
// itself (RFC 6761: localhost and every name under it).
func isLocalDomain(domain string) bool {
	d := strings.TrimSuffix(strings.ToLower(domain), ".")
	return d == "localhost" || strings.HasSuffix(d, ".localhost")
}

// previewBaseURL is the base URL of preview links for BASE_DOMAIN domain
// and the proxy listening on addr: given as is with a scheme;
// http://<domain>:<port> for a local domain (no port for 80);
// https://<domain> for any other, which needs a TLS terminator in front.
func previewBaseURL(domain string, addr net.Addr) string {
	d := strings.TrimSpace(domain)
	if l := strings.ToLower(d); strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://") {
		return d
	}
	if !isLocalDomain(d) {
		return "https://" + d
	}
	_, port, _ := net.SplitHostPort(addr.String())
	if port == "80" {
		return "http://" + d
	}
	return "http://" + d + ":" + port
}

// newServer is one of the two servers (API and previews). Neither has a read or write
// timeout: uploads, log streams, server-sent events and WebSockets run
// for as long as they run; ReadHeaderTimeout stops clients that never
// finish a request, IdleTimeout frees idle keep-alive connections.
func newServer(h http.Handler, baseCtx context.Context, logs slog.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          slog.NewLogLogger(logs, slog.LevelWarn),
	}
}

// run is the whole server: it returns after ctx is cancelled and the
// shutdown has finished, or on a startup error.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "agent-image" {
		return agentImage(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "agent-install" {
		return agentInstall(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "agent-daemonset" {
		return agentDaemonSet(args[1:], stdout, stderr)
	}
	c, err := parseConfig(args, lookupEnv, stderr)
	if err != nil {
		return err
	}
	hopts := &slog.HandlerOptions{Level: c.logLevel}
	var h slog.Handler = slog.NewJSONHandler(stderr, hopts)
	if c.logFormat == "text" {
		h = slog.NewTextHandler(stderr, hopts)
	}
	log := slog.New(h)

	if len(c.apiKeys) == 0 && !isLoopback(c.addr) {
		log.Warn("NO API KEY: the API is open to anyone who can reach "+c.addr+"; set API_KEY", "addr", c.addr)
	}

	mopts := []opensbx.Option{opensbx.WithNamespace(c.namespace), opensbx.WithStateDir(c.stateDir), opensbx.WithLogger(log)}
	if c.dockerHost != "" {
		mopts = append(mopts, opensbx.WithDockerHost(c.dockerHost))
	}
	if c.kube != nil {
		mopts = append(mopts, opensbx.WithKubernetes(*c.kube))
	}
	if c.defaultTTL > 0 {
		mopts = append(mopts, opensbx.WithDefaultTTL(c.defaultTTL))
	}
	if c.max != (opensbx.Resources{}) {
		mopts = append(mopts, opensbx.WithMaxResources(c.max))
	}
	if c.defaults != (opensbx.Resources{}) {
		mopts = append(mopts, opensbx.WithDefaultResources(c.defaults))
	}
	if len(c.pool) > 0 {
		mopts = append(mopts, opensbx.WithPool(c.pool...))
	}
	if c.poolMax > 0 {
		mopts = append(mopts, opensbx.WithPoolMax(c.poolMax))
	}
	if c.maxSandboxes > 0 {
		mopts = append(mopts, opensbx.WithMaxSandboxes(c.maxSandboxes))
	}
	if c.maxCommands > 0 {
		mopts = append(mopts, opensbx.WithMaxCommands(c.maxCommands))
	}
	if c.runtime != "" {
		mopts = append(mopts, opensbx.WithRuntime(c.runtime))
	}
	m, err := opensbx.New(ctx, mopts...)
	if err != nil {
		if errors.Is(err, opensbx.ErrInvalid) || errors.Is(err, opensbx.ErrUnsupported) {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		if errors.Is(err, opensbx.ErrUnavailable) && c.kube != nil {
			return fmt.Errorf("the Kubernetes cluster is unreachable; check KUBECONFIG: %w", err)
		}
		if errors.Is(err, opensbx.ErrUnavailable) {
			host := c.dockerHost
			if host == "" {
				host = "the default (DOCKER_HOST unset)"
			}
			return fmt.Errorf("the Docker engine at %s is unreachable; start it or set DOCKER_HOST: %w", host, err)
		}
		return err
	}
	defer m.Close()

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	apiOpts := []httpapi.Option{httpapi.WithAPIKeys(c.apiKeys...), httpapi.WithLogger(log), httpapi.WithAllowedHosts(c.allowedHosts...),
		httpapi.WithMaxSandboxesPerKey(c.maxPerKey)}

	var (
		proxy   *preview.Proxy
		proxyLn net.Listener
		baseURL string
	)
	if c.proxyAddr != "" {
		if proxyLn, err = net.Listen("tcp", c.proxyAddr); err != nil {
			return fmt.Errorf("listen for previews: %w", err)
		}
		defer proxyLn.Close()
		baseURL = previewBaseURL(c.baseDomain, proxyLn.Addr())
		if proxy, err = newProxy(m, c, baseURL, log); err != nil {
			return err
		}
		defer proxy.Close()
		apiOpts = append(apiOpts, httpapi.WithPreview(proxy))
		if !c.previewPrivate && (!isLoopback(c.proxyAddr) || !isLocalDomain(c.baseDomain)) {
			log.Warn("previews are public by default: anyone who reaches the proxy reaches every sandbox's ports; set PREVIEW_PRIVATE=true",
				"proxy_addr", c.proxyAddr, "base_url", baseURL)
		}
	}

	// Requests get a context that outlives the shutdown grace only as
	// long as needed: it is cancelled when the grace is over, which ends
	// streams (logs, stats, waits, WebSockets) that would otherwise hold
	// the shutdown.
	baseCtx, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	servers := []*http.Server{newServer(httpapi.New(m, apiOpts...), baseCtx, h)}
	listeners := []net.Listener{ln}
	if proxy != nil {
		servers = append(servers, newServer(proxy, baseCtx, h))
		listeners = append(listeners, proxyLn)
	}
	serveErr := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { serveErr <- srv.Serve(listeners[i]) }()
	}
	attrs := []any{"addr", ln.Addr().String(), "namespace", c.namespace, "state_dir", c.stateDir, "auth", len(c.apiKeys) > 0}
	if proxy != nil {
		attrs = append(attrs, "proxy_addr", proxyLn.Addr().String(), "preview_base_url", baseURL, "preview_private", c.previewPrivate)
	}
	log.Info("listening", attrs...)

	var failed error
	pending := len(servers)
	select {
	case err := <-serveErr:
		failed, pending = fmt.Errorf("serve: %w", err), pending-1
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing requests in flight", "grace", c.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	var wg sync.WaitGroup
	var cut sync.Once
	for _, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(sctx); err != nil {
				cut.Do(func() { log.Warn("grace period over: cutting remaining requests", "err", err) })
				cancelBase()
				srv.Close()
			}
		}()
	}
	wg.Wait()
	cancel()
	for ; pending > 0; pending-- {
		<-serveErr
	}
	if proxy != nil {
		proxy.Close() // ends WebSockets, which Shutdown does not wait for
	}
	if err := m.Close(); err != nil {
		return errors.Join(failed, fmt.Errorf("close manager: %w", err))
	}
	if failed != nil {
		return failed
	}
	log.Info("stopped; sandboxes keep running with their deadlines")
	return nil
}

// newProxy makes the preview proxy of the server, with its secret from
// the secret file (made on first start).
func newProxy(m *opensbx.Manager, c config, baseURL string, log *slog.Logger) (*preview.Proxy, error) {
	secret, err := preview.LoadOrCreateSecret(c.secretFile)
	if err != nil {
		return nil, err
	}
	p, err := preview.New(m,
		preview.WithBaseURL(baseURL),
		preview.WithSecret(secret),
		preview.WithPrivateByDefault(c.previewPrivate),
		preview.WithDialTimeout(c.dialTimeout),
		preview.WithResponseTimeout(c.responseTimeout),
		preview.WithLinkTTL(c.linkTTL),
		preview.WithLogger(log))
	if errors.Is(err, opensbx.ErrInvalid) {
		return nil, fmt.Errorf("%w: base-domain: %w", errUsage, err)
	}
	return p, err
}

// agentImage writes the agent image archive to stdout (opensbx agent-image).
func agentImage(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("opensbx agent-image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	arch := fs.String("arch", "amd64", "CPU architecture of the nodes: amd64 or arm64")
	tag := fs.String("tag", "", "reference to tag the image with (default opensbx-agent:<version>)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if err := opensbx.WriteAgentImage(stdout, *arch, *tag); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return nil
}

// agentInstall writes the agent into a node's directory (opensbx
// agent-install DIR), for KubernetesConfig.AgentHostDir.
func agentInstall(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("opensbx agent-install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	arch := fs.String("arch", runtime.GOARCH, "CPU architecture of the node: amd64 or arm64")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() != 1 || !filepath.IsAbs(fs.Arg(0)) {
		return fmt.Errorf("%w: want one absolute directory", errUsage)
	}
	p, err := opensbx.InstallAgent(fs.Arg(0), *arch)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, p)
	return nil
}

// agentDaemonSet prints the DaemonSet that keeps the agent on every node
// (opensbx agent-daemonset -dir DIR | kubectl apply -f -), as JSON.
func agentDaemonSet(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("opensbx agent-daemonset", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "the nodes' directory of the agent (K8S_AGENT_HOST_DIR); required")
	ns := fs.String("namespace", "default", "namespace of the DaemonSet")
	arch := fs.String("arch", "amd64", "CPU architecture of the nodes: amd64 or arm64")
	img := fs.String("image", "", "the agent image (default opensbx-agent:<version>)")
	pull := fs.String("pull-policy", "", "the image's pull policy (default IfNotPresent)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	ds, err := opensbx.AgentDaemonSet(opensbx.AgentDaemonSetOptions{Namespace: *ns, HostDir: *dir, Arch: *arch, Image: *img, PullPolicy: *pull})
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	b, err := json.MarshalIndent(ds, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
}
