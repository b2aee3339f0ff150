// Package preview serves the ports that sandboxes publish at preview URLs:
// a reverse proxy (an http.Handler on net/http/httputil) that routes each
// request by its Host header to a sandbox of one opensbx.Manager.
//
//	p, err := preview.New(m, preview.WithBaseURL("http://localhost:3000"))
//	if err != nil {
//		return err
//	}
//	defer p.Close() // after the server below has shut down
//	srv := &http.Server{Addr: "127.0.0.1:3000", Handler: p, ReadHeaderTimeout: 10 * time.Second}
//
// # Routes
//
// Under the base domain D of WithBaseURL (default "localhost", which
// browsers and curl resolve to loopback with no DNS at all):
//
//	<name>.D          the sandbox's main port: the first TCP port given at create
//	<port>-<name>.D   another TCP port the sandbox publishes, e.g. 8081-web.D
//
// The Host header is matched without regard to case and any port in it
// ("web.localhost:3000") is ignored. A label that starts with digits and a
// '-' is always a port prefix: a sandbox named "8080-app" is reached only
// as "<port>-8080-app.D" (its URL says so). Sandbox names may contain
// dots and underscores and keep them: "my.app" is "my.app.D"; such names
// work with curl and browsers on localhost, but a wildcard certificate for
// *.D covers only names without dots. Names with upper-case letters are
// reached in lower case ("MyApp" at "myapp.D"); when several sandboxes'
// names differ only in case, the one whose name is all lower case wins and
// the others have no preview. Only sandboxes of the Proxy's Manager are
// reachable; a Host not under D is answered 404.
//
// # Answers
//
// Requests the proxy cannot pass on get a short text/plain body saying
// why, and an X-Opensbx-Preview header naming the case, quickly and never
// with a 500:
//
//	404  not under D, no such sandbox, or a port it does not publish
//	401  a private sandbox without a valid token, cookie or link
//	503  the sandbox is stopped, paused or restarting; Docker unavailable
//	502  nothing listens on the port (connecting is bounded by WithDialTimeout)
//	504  no response headers within WithResponseTimeout
//
// # Passing through
//
// Responses are streamed: every write of the sandbox is flushed to the
// client at once (server-sent events, chunked responses, dev servers' hot
// reload). Upgrades (WebSocket or any other Upgrade) switch protocols
// end to end. Hop-by-hop headers are dropped; X-Forwarded-For (the
// client's address), X-Forwarded-Host and X-Forwarded-Proto are set, and
// the sandbox sees the client's own Host header. The proxy's token and
// cookie never reach the sandbox.
//
// Routes are learned from Manager.List and dropped on every event of the
// Manager (Subscribe), so a restarted sandbox is reachable on its new host
// ports at once; other changes are picked up within two seconds. A
// connection that fails on a route is never retried on the same route:
// the sandbox is looked up again by id first, because its old host port
// may belong to another sandbox by now.
//
// # Private previews
//
// A sandbox created with opensbx.CreateOptions.Private is served only to
// requests that carry its preview token (Token): as "Authorization:
// Bearer <token>", which the proxy takes off before passing the request
// on, or through a signed link (SignedURL) whose parameter LinkParam the
// proxy checks (it expires after WithLinkTTL) and exchanges for a cookie
// CookieName on that host, redirecting to the same address without it.
// Tokens, links and cookies are HMAC-SHA256 signatures over the sandbox id
// with the Proxy's secret (WithSecret, LoadOrCreateSecret): nothing is
// stored, they survive restarts, and a new sandbox of the same name has a
// new token. Comparisons are constant time. Never use the API key as the
// secret, or in a URL.
//
// Public is the default (WithPrivateByDefault turns it around) because
// the default proxy listens on loopback and Docker publishes every port
// on 127.0.0.1 as well: whoever can reach the proxy can reach the ports
// directly, so a token would protect nothing, while clients of the
// original API expect a url they can open as is. Make previews private
// by default as soon as the proxy is reachable from other machines.
package preview
