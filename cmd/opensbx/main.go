// Command opensbx is the Opensbx server: the HTTP API v1 (docs/http.md) over
// a Manager on the local Docker engine, and the preview proxy (package
// preview) that serves every port a sandbox publishes at
// http://<name>.localhost:3000.
//
// Every setting is a flag and an environment variable of the same name in
// upper case with underscores (a flag wins over the variable):
//
//	-addr              ADDR               listen address (default 127.0.0.1:8080)
//	-api-key           API_KEY            comma-separated Bearer keys; empty = no auth
//	-base-domain       BASE_DOMAIN        preview URLs <name>.<domain> (default localhost)
//	-state-dir         STATE_DIR          state kept across restarts (default ./opensbx-data)
//	-namespace         NAMESPACE          sandboxes this server owns (default "default")
//	-default-timeout   DEFAULT_TIMEOUT    sandbox TTL: seconds or a Go duration (default 15m)
//	-default-memory-mb DEFAULT_MEMORY_MB  default memory limit
//	-default-cpus      DEFAULT_CPUS       default CPU limit
//	-max-memory-mb     MAX_MEMORY_MB      largest memory a sandbox may ask for
//	-max-cpus          MAX_CPUS           largest CPUs a sandbox may ask for
//	-docker-host       DOCKER_HOST        Docker engine address (default: the Docker client's)
//	-backend           BACKEND            docker (default) or kubernetes
//	-log-format        LOG_FORMAT         json or text (default json)
//	-log-level         LOG_LEVEL          debug, info, warn or error (default info)
//	-shutdown-timeout  SHUTDOWN_TIMEOUT   grace for in-flight requests on SIGINT/SIGTERM (default 15s)
//
// With BACKEND=kubernetes the sandboxes are Pods (opensbx.WithKubernetes):
//
//	-kubeconfig        KUBECONFIG         the cluster's kubeconfig (default: the in-cluster configuration)
//	-k8s-namespace     K8S_NAMESPACE      Kubernetes namespace of the Pods (default "default")
//	-k8s-agent-image   K8S_AGENT_IMAGE    image the agent is installed from (default opensbx-agent:<version>)
//	-k8s-pull-policy   K8S_PULL_POLICY    sandbox images' pull policy (default IfNotPresent)
//	-k8s-agent-host-dir K8S_AGENT_HOST_DIR the nodes' directory of the agent (default: the agent DaemonSet's, if
//	                                      the namespace has a ready one, else an init container installs it)
//	-k8s-agent-init    K8S_AGENT_INIT     true: always an init container, never the DaemonSet's directory
//	-k8s-ports         K8S_PORTS          pod-ip or agent: how ports are reached (default: pod-ip in the cluster, else agent)
//
// `opensbx agent-image [-arch ARCH] [-tag REF] > agent.tar` writes the agent
// image as a `docker save` archive, for `ctr -n k8s.io images import` on the
// nodes or `docker load` and a push to the cluster's registry.
// `opensbx agent-install DIR` writes the agent into a node's directory, for
// K8S_AGENT_HOST_DIR; `opensbx agent-daemonset -dir DIR | kubectl apply -f -`
// keeps it in that directory on every node (opensbx.AgentDaemonSet).
//
// The preview proxy:
//
//	-proxy-addr             PROXY_ADDR              listen address (default 127.0.0.1:3000; empty or "off": no proxy)
//	-preview-private        PREVIEW_PRIVATE         sandboxes private unless created with "private": false (default false)
//	-preview-secret-file    PREVIEW_SECRET_FILE     key of tokens and links, made on first start (default <state-dir>/preview-secret)
//	-proxy-dial-timeout     PROXY_DIAL_TIMEOUT      bound on connecting to a sandbox's port, then 502 (default 5s)
//	-proxy-response-timeout PROXY_RESPONSE_TIMEOUT  bound on a sandbox's response headers, then 504 (default 2m)
//	-preview-link-ttl       PREVIEW_LINK_TTL        validity of the signed link in create responses (default 1h)
//
// A local BASE_DOMAIN (localhost or *.localhost, which resolve to loopback
// without DNS) gives URLs http://<name>.<domain>:<proxy port>; any other
// gives https://<name>.<domain>, for a TLS terminator in front of the
// proxy; a BASE_DOMAIN starting with http:// or https:// (with an optional
// :port) is used as given. With the proxy off, sandboxes have no "url".
// The server warns when previews are public by default and the proxy is
// reachable beyond this machine.
//
// Prefer API_KEY over -api-key: flags are visible to other users in ps.
//
// On SIGINT or SIGTERM the server stops accepting connections on both
// listeners, lets requests in flight finish (streams still open after the
// shutdown timeout are cut; WebSockets through the proxy end once the
// other requests are done) and closes the Manager. Sandboxes are neither
// stopped nor deleted: they keep their deadlines in the state directory,
// and the next server on the same state directory and namespace picks
// them up.
//
// Exit codes: 0 after a clean shutdown, 2 for bad flags or settings, 3 when
// the Docker engine cannot be reached, 1 for anything else.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "opensbx:", err)
		}
		os.Exit(exitCode(err))
	}
}
